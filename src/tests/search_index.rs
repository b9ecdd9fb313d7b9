//! The cluster's search indexer and the unindexed tail: a message is found while the
//! indexer is held off, a send transaction open longer than the indexer's time guard is
//! neither skipped by the high-water mark nor left to the straggler sweep, and a pass
//! catches up slice by slice, stops after one slice while sends wait, and claims the
//! straggler sweep once per period.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_catches_up_slice_by_slice_and_yields_to_a_backlogged_writer() {
    let env = super::harness::TestEnv::new().await;
    {
        let (mut client, conn) = tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        crate::store::migrate::run(&mut client).await.unwrap();
    }
    let db = env.db().await;
    // Twenty seconds of messages, one every half second, the mark just before them.
    let conv = Uuid::new_v4();
    let user = Uuid::new_v4();
    db.batch_execute(&format!(
        "INSERT INTO conversations (id, conversation_type, last_seq, last_message_at)
             VALUES ('{conv}', 'group', 40, now() - interval '3 seconds');
         INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, created_at, bucket)
             SELECT gen_random_uuid(), '{conv}', i, '{user}', 'text', 'line ' || i,
                    now() - interval '23 seconds' + i * interval '500 milliseconds', msg_bucket('{conv}')
             FROM generate_series(1, 40) i;
         UPDATE search_progress SET indexed_until = now() - interval '23 seconds';"
    ))
    .await
    .unwrap();
    let start: crate::model::Timestamp = db
        .query_one("SELECT indexed_until FROM search_progress", &[])
        .await
        .unwrap()
        .get(0);
    // (the mark's distance from the start in seconds, from now() in seconds, rows indexed)
    let mark = || async {
        let row = db
            .query_one(
                "SELECT extract(epoch FROM indexed_until - $1)::float8,
                        extract(epoch FROM now() - indexed_until)::float8,
                        (SELECT count(*) FROM message_search)
                 FROM search_progress",
                &[&start],
            )
            .await
            .unwrap();
        (
            row.get::<_, f64>(0),
            row.get::<_, f64>(1),
            row.get::<_, i64>(2),
        )
    };
    let store = crate::store::Store::new(&env.database_url, 2).unwrap();
    use crate::domain::search_index::pass;

    // Sends waiting: one slice (5 s of messages) and no more.
    let first = pass(&store, || true).await.unwrap();
    assert_eq!(first.indexed, 10);
    assert_eq!(
        first.sweep_from, None,
        "no straggler sweep while sends wait"
    );
    let (moved, _, rows) = mark().await;
    assert_eq!(rows, 10);
    assert_eq!(moved, 5.0, "the mark moved one slice");

    // No backlog: the rest in one pass, up to the guard.
    let second = pass(&store, || false).await.unwrap();
    assert_eq!(second.indexed, 30);
    assert!(second.sweep_from.is_some(), "the sweep is due: claimed");
    let (moved, behind, rows) = mark().await;
    assert_eq!(rows, 40);
    assert!(moved >= 20.0, "past the last message: {moved}");
    assert!(behind >= 2.0, "not past the guard: {behind}");

    // Nothing new: a pass does nothing, and the sweep is not claimed twice in a period.
    let third = pass(&store, || false).await.unwrap();
    assert_eq!(third.indexed, 0);
    assert_eq!(third.sweep_from, None);
}
