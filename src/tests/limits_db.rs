//! PostgreSQL limits over real nodes: `statement_timeout` on every pooled session (a
//! request stuck behind a lock is cancelled, not left hanging; migrations are exempt), and
//! search terms too short for the trigram index answered by a bounded scan.

use std::time::Duration;

use uuid::Uuid;

use super::http_api::Api;
use super::http_search::search_caught_up;
use super::realtime::{Cluster, befriend, send_text, uuid_of};
use crate::store::search::SHORT_TERM_SCAN_PER_CONVERSATION;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pooled_session_has_the_statement_timeout() {
    let env = super::harness::TestEnv::new().await;
    // Options in the URL are kept; the timeout is added to them.
    let url = format!("{}?options=-c%20work_mem%3D7MB", env.database_url);
    let store =
        crate::store::Store::with_statement_timeout(&url, 2, Duration::from_millis(1234)).unwrap();
    for _ in 0..3 {
        let conn = store.conn().await.unwrap();
        let row = conn
            .query_one(
                "SELECT current_setting('statement_timeout'), current_setting('work_mem')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (row.get::<_, String>(0), row.get::<_, String>(1)),
            ("1234ms".into(), "7MB".into())
        );
        let e = conn.query_one("SELECT pg_sleep(3)", &[]).await.unwrap_err();
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
            "{e}"
        );
    }
    // Zero: no timeout.
    let store = crate::store::Store::with_statement_timeout(&url, 1, Duration::ZERO).unwrap();
    let conn = store.conn().await.unwrap();
    let row = conn
        .query_one("SELECT current_setting('statement_timeout')", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stuck_behind_a_lock_is_cancelled_by_the_timeout() {
    // Migrations run under SET LOCAL statement_timeout = 0, so a short timeout starts fine.
    let c = Cluster::start(1, &[("DB_STATEMENT_TIMEOUT_MS", "500")]).await;
    let api = Api::new(&c, 0, Uuid::new_v4());
    assert_eq!(api.get("/conversations").await.0, 200);
    let mut db = c.env.db().await;
    let tx = db.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE conversation_members IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Without the timeout this request would wait for the lock as long as it is held.
    let (status, body) = api.get("/conversations").await;
    assert!(status == 500 || status == 503, "{status}: {body}");
    tx.rollback().await.unwrap();
    let (status, body) = api.get("/conversations").await;
    assert_eq!(status, 200, "{body}");
    c.stop().await;
}

/// `term` percent-encoded for a query string.
fn enc(term: &str) -> String {
    term.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_search_terms_are_a_bounded_scan_of_the_newest_messages() {
    let c = Cluster::start(1, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(0).await;
    let conv = befriend(&mut a, &mut b).await;
    let m = send_text(&mut a, Some(conv), None, "你好吗").await;
    let id = uuid_of(&m["id"]);
    search_caught_up(&c).await;
    let api = Api::new(&c, 0, a.user);
    let found = |body: &serde_json::Value| {
        body["data"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == m["id"])
    };
    // One- and two-character terms are answered (no 400), like longer ones.
    for q in ["你好", "好", "你好吗"] {
        let (status, body) = api.get(&format!("/messages/search?q={}", enc(q))).await;
        assert_eq!(status, 200, "{q}: {body}");
        assert!(found(&body), "{q}: {body}");
    }
    // Push the message out of the short-term window: as many newer indexed messages in its
    // conversation as the scan reads (rows of the search table alone: they match nothing).
    let db = c.env.db().await;
    db.execute(
        "UPDATE message_search SET created_at = created_at - interval '1 hour' WHERE message_id = $1",
        &[&id],
    )
    .await
    .unwrap();
    db.execute(
        "INSERT INTO message_search (message_id, conversation_id, created_at, content)
         SELECT gen_random_uuid(), $1,
                (SELECT created_at FROM message_search WHERE message_id = $2)
                    + g * interval '1 millisecond',
                'filler'
         FROM generate_series(1, $3::int8) g",
        &[&conv, &id, &SHORT_TERM_SCAN_PER_CONVERSATION],
    )
    .await
    .unwrap();
    for q in [
        format!("/messages/search?q={}", enc("你好")),
        format!("/messages/search?q={}&conversation_id={conv}", enc("你好")),
    ] {
        let (status, body) = api.get(&q).await;
        assert_eq!(status, 200, "{q}: {body}");
        assert!(!found(&body), "beyond the bounded scan: {q}: {body}");
    }
    // A term the trigram index serves still finds it anywhere in the history.
    let (status, body) = api
        .get(&format!("/messages/search?q={}", enc("你好吗")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(found(&body), "{body}");
    c.stop().await;
}
