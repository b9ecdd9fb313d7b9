//! WebSocket abuse limits over real nodes: the per-connection budget for frames other than
//! `message` (over it: `too_many_frames` and the frame ignored; persistent abuse: 1008),
//! messages unaffected by it, defaults that a busy client never meets, and `typing`
//! published at most once per interval per (user, conversation).

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::realtime::{Cluster, befriend, send_text};
use super::ws_client::Ws;

const WAIT: Duration = Duration::from_secs(5);

fn viewing(conv: Uuid) -> String {
    json!({"type": "set_current_conversation", "data": {"conversation_id": conv}}).to_string()
}

/// The `error` events among what arrives within `window`.
async fn errors(ws: &mut Ws, window: Duration) -> Vec<Value> {
    ws.drain(window)
        .await
        .into_iter()
        .filter(|v| v["type"] == "error")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_over_the_budget_are_refused_and_persistent_abuse_is_closed() {
    // 1 frame a second, 5 at once: the 6th frame in a row is refused.
    let c = Cluster::start(1, &[("WS_FRAME_RATE", "1"), ("WS_FRAME_BURST", "5")]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(0).await;
    let conv = befriend(&mut a, &mut b).await;
    for _ in 0..7 {
        a.send_raw(viewing(conv).as_bytes()).await;
    }
    let refused = errors(&mut a, Duration::from_millis(500)).await;
    assert!(
        !refused.is_empty(),
        "some frames past the burst are refused"
    );
    for e in &refused {
        assert_eq!(e["data"]["code"], "too_many_frames", "{e}");
        assert_eq!(
            e["data"]["message"],
            "too many frames: at most 1 a second besides messages; frame ignored"
        );
        assert!(e["data"]["retry_after_ms"].as_u64().unwrap() > 0, "{e}");
    }
    // Messages have their own limit: they still go through, on the same socket.
    let echo = send_text(&mut a, Some(conv), None, "still here").await;
    assert_eq!(b.expect("message").await["id"], echo["id"]);

    // Invalid frames spend the budget too, and a client that keeps going is closed (1008).
    for _ in 0..20 {
        a.send_raw(b"{not json").await;
    }
    assert_eq!(a.expect_closed(WAIT).await, 1008);
    // Other connections are not affected.
    let echo = send_text(&mut b, Some(conv), None, "b is fine").await;
    assert!(echo["id"].is_string());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_client_never_meets_the_default_budget() {
    let c = Cluster::start(1, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(0).await;
    let conv = befriend(&mut a, &mut b).await;
    // 150 frames at once (the default burst is 200): none refused.
    for i in 0..150 {
        let frame = if i % 2 == 0 {
            viewing(conv)
        } else {
            json!({"type": "heartbeat"}).to_string()
        };
        a.send_raw(frame.as_bytes()).await;
    }
    let echo = send_text(&mut a, Some(conv), None, "after the burst").await;
    assert!(echo["id"].is_string());
    assert!(errors(&mut a, Duration::from_millis(300)).await.is_empty());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_published_once_per_interval_per_conversation() {
    // A long interval, so the test does not depend on how fast frames go out.
    let c = Cluster::start(2, &[("WS_TYPING_INTERVAL_MS", "60000")]).await;
    c.set("enable_typing_indicator", "true").await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let mut d = c.user(1).await;
    let one = befriend(&mut a, &mut b).await;
    let two = befriend(&mut a, &mut d).await;
    let typing = |conv: Uuid| json!({"type": "typing", "data": {"conversation_id": conv}});
    for _ in 0..5 {
        a.send(typing(one)).await;
    }
    let t = b.expect("typing").await;
    assert_eq!(t["conversation_id"], one.to_string());
    // Another conversation has its own interval.
    a.send(typing(two)).await;
    assert_eq!(d.expect("typing").await["conversation_id"], two.to_string());
    // The extra ones were dropped silently: no second event, no error to the typist.
    b.expect_no("typing", Duration::from_millis(500)).await;
    assert!(errors(&mut a, Duration::from_millis(100)).await.is_empty());
    // A non-member's typing is still refused (the throttle never hides an error).
    a.send(typing(Uuid::new_v4())).await;
    let e = a.expect("error").await;
    assert_eq!(e["code"], "not_member", "{e}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_interval_zero_publishes_every_frame() {
    let c = Cluster::start(1, &[("WS_TYPING_INTERVAL_MS", "0")]).await;
    c.set("enable_typing_indicator", "true").await;
    let mut a = c.user(0).await;
    let mut b = c.user(0).await;
    let conv = befriend(&mut a, &mut b).await;
    for _ in 0..3 {
        a.send(json!({"type": "typing", "data": {"conversation_id": conv}}))
            .await;
    }
    for _ in 0..3 {
        b.expect("typing").await;
    }
    c.stop().await;
}

#[test]
fn bad_frame_budget_settings_are_refused() {
    use crate::config::Config;
    let base = [
        ("DATABASE_URL", "postgres://u@localhost/db"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
    ];
    for (var, value) in [
        ("WS_FRAME_RATE", "-1"),
        ("WS_FRAME_RATE", "lots"),
        ("WS_FRAME_BURST", "0"),
        ("WS_TYPING_INTERVAL_MS", "60001"),
        ("WS_TYPING_INTERVAL_MS", "2s"),
    ] {
        let env: std::collections::HashMap<String, String> = base
            .iter()
            .chain(&[(var, value)])
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(Config::from_env(&env).unwrap_err().var, var, "{value}");
    }
}
