//! The writer's two paths (domain/writer): a batch whose conversations the writer knows is
//! written by one statement that verifies that knowledge under the row locks; anything the
//! writer's memory got wrong must make it fall back to the careful path and give the same
//! answer as if it had never remembered anything. Each test first makes the sending node's
//! writer know the conversation, then changes it behind that node's back (through another
//! node or HTTP) and sends again.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::http_api::Api;
use super::realtime::{Cluster, befriend, send_text, uuid_of};
use super::ws_client::Ws;

/// The value of a counter (summed over its labels matching `label`) on node `i`.
async fn counter(c: &Cluster, i: usize, name: &str, label: &str) -> f64 {
    let a = super::client::send("GET", &format!("{}/metrics", c.nodes[i].url()), &[], None)
        .await
        .unwrap();
    String::from_utf8_lossy(&a.body)
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The next `error` frame's code.
async fn error_code(ws: &mut Ws) -> String {
    ws.expect("error").await["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Seqs of the conversation in PostgreSQL, in order.
async fn seqs(c: &Cluster, conv: Uuid) -> Vec<i64> {
    c.env
        .db()
        .await
        .query(
            "SELECT seq FROM messages WHERE conversation_id = $1 ORDER BY seq",
            &[&conv],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_conversations_take_one_statement_and_stale_views_are_caught() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let fast_before = counter(&c, 0, "dinq_writer_batches_total", "path=\"fast\"").await;
    for i in 0..5 {
        send_text(&mut a, Some(conv), None, &format!("a{i}")).await;
    }
    let fast_after = counter(&c, 0, "dinq_writer_batches_total", "path=\"fast\"").await;
    // The first of the five goes the careful way: node 0 last saw A speak first with no
    // reply (B's reply went through node 1), and a refusal is never decided on memory.
    assert!(
        fast_after >= fast_before + 4.0,
        "node 0 knows the conversation: {fast_before} → {fast_after}"
    );
    // Both nodes write the same conversation in turn: each node's view of the counters is
    // right (the statement bumps them), so seqs stay contiguous whoever writes.
    for i in 0..6 {
        send_text(&mut a, Some(conv), None, &format!("x{i}")).await;
        send_text(&mut b, Some(conv), None, &format!("y{i}")).await;
    }
    let got = seqs(&c, conv).await;
    assert_eq!(got, (1..=got.len() as i64).collect::<Vec<_>>());
    assert_eq!(got.len(), 2 + 5 + 12);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_made_elsewhere_stops_the_next_send() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    send_text(&mut a, Some(conv), None, "known now").await;
    b.expect("message").await;
    // B blocks A through the other node; A's node still remembers a free conversation.
    let (status, body) = Api::new(&c, 1, b.user)
        .post("/relationships/block", json!({"target_user_id": a.user}))
        .await;
    assert_eq!(status, 200, "{body}");
    a.text_to(Some(conv), None, "after the block").await;
    assert_eq!(error_code(&mut a).await, "blocked");
    b.expect_no("message", Duration::from_millis(500)).await;
    assert_eq!(seqs(&c, conv).await.len(), 3, "nothing stored");
    let stale = counter(&c, 0, "dinq_writer_stale_total", "").await;
    assert!(stale >= 1.0, "the statement caught the stale view");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_elsewhere_cannot_send_and_gets_nothing() {
    let c = Cluster::start(2, &[]).await;
    let mut owner = c.user(0).await;
    let mut m = c.user(0).await;
    let mut other = c.user(1).await;
    let api = Api::new(&c, 1, owner.user);
    let group = api.group("g", &[m.user, other.user]).await;
    // Make node 0's writer know the group with m in it.
    send_text(&mut m, Some(group), None, "hello all").await;
    send_text(&mut owner, Some(group), None, "hi").await;
    other.drain(Duration::from_millis(300)).await;
    let (status, body) = api
        .post(
            &format!("/conversations/{group}/members/remove"),
            json!({"user_id": m.user}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    m.drain(Duration::from_millis(200)).await;
    m.text_to(Some(group), None, "still here?").await;
    assert_eq!(error_code(&mut m).await, "not_member");
    other.expect_no("message", Duration::from_millis(500)).await;
    // The remaining members keep writing through the same node.
    let e = send_text(&mut owner, Some(group), None, "after").await;
    assert_eq!(other.expect("message").await["id"], e["id"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_and_bad_replies_in_a_known_conversation() {
    let c = Cluster::start(1, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(0).await;
    let conv = befriend(&mut a, &mut b).await;
    let other = befriend(&mut a, &mut c.user(0).await).await;
    let foreign = send_text(&mut a, Some(other), None, "elsewhere").await;
    let send = |cmid: &str, text: &str, reply: Option<&Value>| {
        json!({"type": "message", "data": {
            "conversation_id": conv, "message_type": "text", "content": text,
            "client_msg_id": cmid, "reply_to_message_id": reply,
        }})
    };
    a.send(send("k1", "first", None)).await;
    let first = a.expect("message").await;
    // The same key again: the original, nothing stored.
    a.send(send("k1", "first again", None)).await;
    let again = a.expect("message").await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["content"], "first");
    // A reply to a message of another conversation is refused; a good one is stored.
    a.send(send("k2", "bad reply", Some(&foreign["id"]))).await;
    assert_eq!(error_code(&mut a).await, "invalid_reply");
    a.send(send("k3", "good reply", Some(&first["id"]))).await;
    let good = a.expect("message").await;
    assert_eq!(good["reply_to_message_id"], first["id"]);
    let got = seqs(&c, conv).await;
    assert_eq!(got, (1..=got.len() as i64).collect::<Vec<_>>(), "no hole");
    assert_eq!(good["seq"], json!(got.len()));
    let _ = uuid_of(&good["id"]);
    c.stop().await;
}
