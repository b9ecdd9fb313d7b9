//! Admission control (issue 16): a send the node cannot write in time is refused at once
//! with a retryable `overloaded` error naming the refused `client_msg_id`, the connection
//! stays open, and a retry with the same key is stored exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::realtime::{Cluster, befriend};
use super::ws_client::Seen;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_refused_at_once_and_retries_are_stored_once() {
    // A deadline this short refuses most of a burst: the jobs waiting behind a batch are
    // past it when their batch starts.
    let c = Cluster::start(
        2,
        &[
            ("SEND_DEADLINE_MS", "25"),
            ("SEND_QUEUE_TARGET_MS", "5"),
            ("SEND_BURST_MS", "0"),
        ],
    )
    .await;
    c.set("max_messages_per_second", "0").await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let msg = |key: &str| {
        json!({"type": "message", "data": {
            "conversation_id": conv, "message_type": "text", "content": key, "client_msg_id": key,
        }})
    };
    let keys: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
    let mut pending: BTreeSet<String> = keys.iter().cloned().collect();
    let mut echoes: BTreeMap<String, String> = BTreeMap::new();
    let mut refused = 0;
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(
            rounds < 200,
            "still refused after {rounds} rounds: {}",
            pending.len()
        );
        for k in &pending {
            a.send(msg(k)).await;
        }
        let mut answered = 0;
        let mut wait_ms = 0u64;
        while answered < pending.len() {
            match a.next(Duration::from_secs(10)).await {
                Some(Seen::Event(v)) if v["type"] == "message" => {
                    let d = &v["data"];
                    let Some(k) = d["client_msg_id"].as_str() else {
                        continue;
                    };
                    if let Some(first) = echoes.get(k) {
                        assert_eq!(
                            first,
                            d["id"].as_str().unwrap(),
                            "a retry returns the original"
                        );
                    }
                    echoes.insert(k.to_string(), d["id"].as_str().unwrap().to_string());
                    answered += 1;
                }
                Some(Seen::Event(v)) if v["type"] == "error" => {
                    let d = &v["data"];
                    assert_eq!(d["code"], "overloaded", "{v}");
                    let after = d["retry_after_ms"].as_u64().expect("retry_after_ms");
                    assert!((50..=2000).contains(&after), "{v}");
                    assert!(
                        d["client_msg_id"].is_string(),
                        "the refusal names its send: {v}"
                    );
                    wait_ms = wait_ms.max(after);
                    refused += 1;
                    answered += 1;
                }
                Some(Seen::Event(_)) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
        pending.retain(|k| !echoes.contains_key(k));
        tokio::time::sleep(Duration::from_millis(wait_ms.min(200))).await;
    }
    assert!(refused > 0, "the burst was refused in part");
    // Stored exactly once each, in one gapless sequence, and delivered once each.
    let db = c.env.db().await;
    let rows = db
        .query(
            "SELECT client_msg_id, seq FROM messages WHERE conversation_id = $1 AND client_msg_id IS NOT NULL ORDER BY seq",
            &[&conv],
        )
        .await
        .unwrap();
    let stored: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(stored.len(), keys.len());
    assert_eq!(stored.iter().collect::<BTreeSet<_>>().len(), keys.len());
    let seqs: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(seqs, (3..3 + keys.len() as i64).collect::<Vec<_>>());
    let mut got = BTreeSet::new();
    while got.len() < keys.len() {
        let m = b.expect("message").await;
        assert!(
            got.insert(m["id"].as_str().unwrap().to_string()),
            "duplicate {m}"
        );
    }
    b.expect_no("message", Duration::from_millis(300)).await;
    let _ = Uuid::nil();
    c.stop().await;
}
