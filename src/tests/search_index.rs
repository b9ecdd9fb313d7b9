//! The cluster's search indexer and the unindexed tail: a message is found while the
//! indexer is held off, and a send transaction open longer than the indexer's time guard
//! is neither skipped by the high-water mark nor left to the straggler sweep.

use std::time::Duration;

use uuid::Uuid;

use super::http_api::Api;
use super::http_search::search_caught_up;
use super::realtime::{Cluster, befriend};

/// The indexer held off: this test holds the advisory lock every indexing pass takes,
/// until [`Paused::resume`]. A pass running when it is taken finishes first.
pub struct Paused {
    db: tokio_postgres::Client,
}

/// Holds off every node's search indexer.
pub async fn pause_indexer(c: &Cluster) -> Paused {
    let db = c.env.db().await;
    db.batch_execute(&format!(
        "BEGIN; SELECT pg_advisory_xact_lock({})",
        crate::domain::search_index::INDEXER_LOCK
    ))
    .await
    .unwrap();
    Paused { db }
}

impl Paused {
    /// Lets the indexer go on.
    pub async fn resume(self) {
        self.db.batch_execute("COMMIT").await.unwrap();
    }
}

/// How many stored messages with text the search table lacks.
async fn unindexed(c: &Cluster) -> i64 {
    c.env
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM messages m WHERE m.content IS NOT NULL AND m.content <> ''
               AND NOT EXISTS (SELECT 1 FROM message_search s WHERE s.message_id = m.id)",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn found(api: &Api, word: &str) -> Vec<String> {
    let (status, body) = api.get(&format!("/messages/search?q={word}")).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_indexer_has_not_reached_are_found_and_indexed_later() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let paused = pause_indexer(&c).await;
    for i in 0..3 {
        super::realtime::send_text(&mut a, Some(conv), None, &format!("tail needle {i}")).await;
    }
    let db = c.env.db().await;
    let indexed: i64 = db
        .query_one(
            "SELECT count(*) FROM message_search WHERE content LIKE 'tail needle%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexed, 0, "nothing indexed while held off");
    // B searches on the other node: found from `messages` directly, newest first.
    let api = Api::new(&c, 1, b.user);
    let all = ["tail needle 2", "tail needle 1", "tail needle 0"];
    assert_eq!(found(&api, "needle").await, all);
    paused.resume().await;
    search_caught_up(&c).await;
    assert_eq!(unindexed(&c).await, 0);
    // The same answer from the search table.
    assert_eq!(found(&api, "needle").await, all);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_transaction_longer_than_the_guard_is_not_passed_by_the_mark() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    search_caught_up(&c).await;

    // Another role holds the conversation's row lock, so the writer's transaction (which
    // has started: its `now()` is the message's created_at) waits behind it. The indexer
    // does not see the holder's transaction (it only waits for its own role's), only the
    // writer's.
    let db = c.env.db().await;
    let role = format!("holder_{}", Uuid::new_v4().simple());
    db.batch_execute(&format!(
        "CREATE ROLE {role} LOGIN; GRANT SELECT, UPDATE ON conversations TO {role}"
    ))
    .await
    .unwrap();
    let holder_url =
        c.env
            .database_url
            .replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    assert_ne!(
        holder_url, c.env.database_url,
        "the test URL names its user"
    );
    let (holder, conn) = tokio_postgres::connect(&holder_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM conversations WHERE id = '{conv}' FOR UPDATE"
        ))
        .await
        .unwrap();
    a.text_to(Some(conv), None, "late committer").await;
    // Longer than the guard, and several indexing passes.
    tokio::time::sleep(Duration::from_secs(4)).await;
    holder.batch_execute("COMMIT").await.unwrap();
    let echo = loop {
        let v = a.expect("message").await;
        if v["content"] == "late committer" {
            break v;
        }
    };
    // Searchable at once, on the other node...
    let api = Api::new(&c, 1, b.user);
    let (status, body) = api.get("/messages/search?q=late%20committer").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["messages"][0]["id"], echo["id"], "{body}");
    // ...and indexed by the indexer itself: the last straggler sweep (at start-up; the
    // next is minutes away) ran before the message existed.
    search_caught_up(&c).await;
    let id = super::realtime::uuid_of(&echo["id"]);
    let sweep_before: bool = db
        .query_one(
            "SELECT p.swept_at < m.created_at FROM search_progress p, messages m WHERE m.id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(sweep_before, "the sweep did not add it");

    drop(holder);
    let _ = conn.await;
    db.batch_execute(&format!(
        "REVOKE ALL ON conversations FROM {role}; DROP ROLE {role}"
    ))
    .await
    .unwrap();
    c.stop().await;
}
