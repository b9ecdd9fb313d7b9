//! Limits over WebSocket, against real nodes: the first-message limit and blocks (error,
//! socket stays usable), the 64 KiB inbound limit (close 1009), the per-user rate limit
//! (`rate_limited`, socket stays open) and the 18-device limit.

use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload};
use serde_json::json;
use uuid::Uuid;

use super::realtime::{Cluster, befriend, send_text, uuid_of};
use super::ws_client::{Seen, Ws};
use super::ws_errors::{Checker, message_where, msg, pair};

/// A valid text `message` frame to `conv`, padded (in metadata) to exactly `len` bytes.
fn padded_message(conv: Uuid, content: &str, len: usize) -> Vec<u8> {
    let frame = |pad: usize| {
        json!({"type": "message", "data": {"conversation_id": conv, "message_type": "text",
            "content": content, "metadata": {"pad": "p".repeat(pad)}}})
        .to_string()
    };
    let overhead = frame(0).len();
    let out = frame(len - overhead).into_bytes();
    assert_eq!(out.len(), len);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_closes_1009() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let k = Checker::new(&c, conv).await;
    // Exactly 64 KiB is accepted.
    a.send_raw(&padded_message(conv, "at the limit", 64 * 1024))
        .await;
    assert_eq!(a.expect("message").await["content"], "at the limit");
    assert_eq!(b.expect("message").await["content"], "at the limit");
    let before = k.stored().await;
    a.send_raw(&padded_message(conv, "too big", 70_000)).await;
    assert_eq!(a.expect_closed(Duration::from_secs(5)).await, 1009);
    assert_eq!(k.stored().await, before, "nothing stored");
    b.expect_no("message", Duration::from_millis(300)).await;
    // The user can come back, and the other side was not affected.
    let mut a2 = c.connect(0, a.user).await;
    send_text(&mut a2, Some(conv), None, "back").await;
    assert_eq!(b.expect("message").await["content"], "back");
    c.stop().await;
}

/// Sends `payload` as a text message in fragments of `chunk` bytes.
async fn send_fragmented(ws: &Ws, payload: &[u8], chunk: usize) {
    let parts: Vec<&[u8]> = payload.chunks(chunk).collect();
    for (i, part) in parts.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        let fin = i + 1 == parts.len();
        let frame = Frame::new(fin, op, None, Payload::Owned(part.to_vec()));
        if ws.send_frame(frame).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_fragmented_message_closes_1009() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let k = Checker::new(&c, conv).await;
    // A fragmented message within the limit is put together and accepted.
    send_fragmented(&a, &padded_message(conv, "in pieces", 60_000), 25_000).await;
    assert_eq!(a.expect("message").await["content"], "in pieces");
    assert_eq!(b.expect("message").await["content"], "in pieces");
    // Fragments of 40 000 bytes each, 80 000 in total: every frame is small, the message is not.
    let before = k.stored().await;
    send_fragmented(&a, &padded_message(conv, "too big", 80_000), 40_000).await;
    assert_eq!(a.expect_closed(Duration::from_secs(5)).await, 1009);
    assert_eq!(k.stored().await, before, "nothing stored");
    b.expect_no("message", Duration::from_millis(300)).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_refuses_the_excess_and_keeps_the_socket() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let mut k = Checker::new(&c, conv).await;
    c.set("max_messages_per_second", "2").await;
    let before = k.stored().await;
    for i in 0..10 {
        a.text_to(Some(conv), None, &format!("burst {i}")).await;
    }
    let (mut echoed, mut limited) = (0, 0);
    while echoed + limited < 10 {
        let v = match a.next(Duration::from_secs(5)).await {
            Some(Seen::Event(v)) => v,
            other => panic!("after {echoed} echoes and {limited} errors: {other:?}"),
        };
        match v["type"].as_str() {
            Some("message") => echoed += 1,
            Some("error") => {
                assert_eq!(v["data"]["code"], "rate_limited", "{v}");
                assert_eq!(
                    v["data"]["message"], "rate limit exceeded: at most 2 messages per second",
                    "{v}"
                );
                limited += 1;
            }
            _ => {}
        }
    }
    // Burst is twice the rate: about 4 go through, the rest are refused.
    assert!((1..=6).contains(&echoed), "{echoed} stored");
    assert!(limited >= 4, "{limited} refused");
    assert_eq!(k.stored().await - before, echoed as i64);
    // The socket stays open and sends again once the budget refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    k.usable(&mut a).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nineteenth_device_is_refused() {
    let c = Cluster::start(2, &[]).await;
    let mut first = c.user(0).await;
    let user = first.user;
    let mut v = c.user(1).await;
    let conv = befriend(&mut first, &mut v).await;
    let mut devices = vec![first];
    for i in 1..18 {
        devices.push(c.connect(i % 2, user).await);
    }
    for node in [0, 1] {
        let mut extra = c.connect(node, user).await;
        match extra.next(Duration::from_secs(5)).await {
            Some(Seen::Event(e)) => {
                assert_eq!(e["type"], "error", "{e}");
                assert_eq!(e["data"]["code"], "too_many_devices", "{e}");
                assert_eq!(e["data"]["message"], "Maximum 18 devices allowed", "{e}");
            }
            other => panic!("expected the error event first, got {other:?}"),
        }
        let closed = extra.next(Duration::from_secs(5)).await;
        let reason = "Maximum 18 devices allowed".to_string();
        assert_eq!(closed, Some(Seen::Closed(1000, reason)));
    }
    // The 18 still work.
    let echo = send_text(&mut devices[5], Some(conv), None, "eighteen").await;
    for (i, d) in devices.iter_mut().enumerate().filter(|(i, _)| *i != 5) {
        assert_eq!(d.expect("message").await["id"], echo["id"], "device {i}");
    }
    assert_eq!(v.expect("message").await["id"], echo["id"]);
    // One closes: a new device is accepted again.
    devices.pop().unwrap().close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = c.connect(1, user).await;
    let echo = send_text(&mut again, Some(conv), None, "room again").await;
    assert_eq!(v.expect("message").await["id"], echo["id"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_message_limit() {
    let c = Cluster::start(2, &[]).await;
    let (mut a, _b, mut k) = pair(&c).await;
    let mut d = c.user(1).await;
    let first = send_text(&mut a, None, Some(d.user), "first").await;
    let conv = uuid_of(&first["conversation_id"]);
    assert_eq!(first["can_send"], false, "{first}");
    let limit = (
        "first_message_limit",
        "first message limit: wait for reply before sending more messages",
    );
    assert!(limit.1.contains("limit"));
    let by_conv = msg(json!({"conversation_id": conv, "message_type": "text", "content": "again"}));
    let by_receiver =
        msg(json!({"receiver_id": d.user, "message_type": "text", "content": "and again"}));
    for frame in [by_conv, by_receiver] {
        k.rejects(&mut a, &frame, limit.0, limit.1).await;
    }
    // d got the first message only; after d replies, a may write again.
    assert_eq!(d.expect("message").await["id"], first["id"]);
    d.expect_no("message", Duration::from_millis(300)).await;
    send_text(&mut d, Some(conv), None, "reply").await;
    let next = send_text(&mut a, Some(conv), None, "now free").await;
    assert_eq!(next["can_send"], true, "{next}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_sender() {
    let c = Cluster::start(2, &[]).await;
    let (mut a, mut b, _) = pair(&c).await;
    let mut e = c.user(1).await;
    let elsewhere = befriend(&mut a, &mut e).await;
    let mut k = Checker::new(&c, elsewhere).await;
    let conv = {
        let db = c.env.db().await;
        let q = "SELECT conversation_id FROM conversation_members WHERE user_id = $1
                 INTERSECT SELECT conversation_id FROM conversation_members WHERE user_id = $2";
        let row = db.query_one(q, &[&a.user, &b.user]).await.unwrap();
        db.execute(
            "INSERT INTO user_relationships (user_id, target_user_id, relationship_type)
             VALUES ($1, $2, 'blocked')",
            &[&b.user, &a.user],
        )
        .await
        .unwrap();
        row.get::<_, Uuid>(0)
    };
    let blocked = ("blocked", "you are blocked by this user");
    let by_receiver =
        msg(json!({"receiver_id": b.user, "message_type": "text", "content": "let me in"}));
    let by_conv =
        msg(json!({"conversation_id": conv, "message_type": "text", "content": "please"}));
    for frame in [by_receiver, by_conv] {
        k.rejects(&mut a, &frame, blocked.0, blocked.1).await;
    }
    b.expect_no("message", Duration::from_millis(300)).await;
    // The blocker may still write to the one it blocked.
    let from_b = send_text(&mut b, Some(conv), None, "I can").await;
    message_where(&mut a, "id", &from_b["id"]).await;
    // With the feature off, blocks are not enforced.
    c.set("enable_block_feature", "false").await;
    let through = send_text(&mut a, Some(conv), None, "through").await;
    assert_eq!(b.expect("message").await["id"], through["id"]);
    let through = send_text(&mut a, None, Some(b.user), "by receiver").await;
    assert_eq!(b.expect("message").await["id"], through["id"]);
    c.stop().await;
}
