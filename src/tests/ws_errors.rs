//! Bad WebSocket input, against real nodes: every bad frame gets an `error` event with the
//! exact code and message, stores nothing, and leaves the socket usable (proved by a valid
//! send and its echo afterwards). Closing limits are in `ws_errors_limits`.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::realtime::{Cluster, befriend, send_text, uuid_of};
use super::ws_client::{Seen, Ws};

/// Checks bad input from sockets whose users can all send freely in `conv`.
pub(super) struct Checker {
    db: tokio_postgres::Client,
    /// A conversation the checked socket's user may send to, for the proof it still works.
    pub conv: Uuid,
    n: usize,
}

/// A `message` frame with `data`.
pub(super) fn msg(data: Value) -> String {
    json!({"type": "message", "data": data}).to_string()
}

impl Checker {
    pub async fn new(c: &Cluster, conv: Uuid) -> Checker {
        Checker {
            db: c.env.db().await,
            conv,
            n: 0,
        }
    }

    /// Rows in `messages`.
    pub async fn stored(&self) -> i64 {
        let row = self.db.query_one("SELECT count(*) FROM messages", &[]);
        row.await.unwrap().get(0)
    }

    /// The next `error` must be exactly (`code`, `message`); an echo of the socket's own
    /// send before it means the bad input was accepted.
    pub async fn expect_error(ws: &mut Ws, code: &str, message: &str) {
        loop {
            let v = match ws.next(Duration::from_secs(5)).await {
                Some(Seen::Event(v)) => v,
                other => panic!("waited for error {code}, got {other:?}"),
            };
            if v["type"] == "message" && v["data"]["sender_id"] == ws.user.to_string() {
                panic!("expected error {code}, but the send was accepted: {v}");
            }
            if v["type"] == "error" {
                assert_eq!(v["data"]["code"], code, "{v}");
                assert_eq!(v["data"]["message"], message, "{v}");
                return;
            }
        }
    }

    /// Sends a valid text to `conv` and waits for its echo, with no error on the way.
    pub async fn usable(&mut self, ws: &mut Ws) {
        self.n += 1;
        let text = format!("still usable {}", self.n);
        ws.text_to(Some(self.conv), None, &text).await;
        loop {
            let v = match ws.next(Duration::from_secs(5)).await {
                Some(Seen::Event(v)) => v,
                other => panic!("waited for the echo of {text}, got {other:?}"),
            };
            assert_ne!(v["type"], "error", "while waiting for {text}: {v}");
            if v["type"] == "message" && v["data"]["content"] == text.as_str() {
                return;
            }
        }
    }

    /// Sends `frame`, expects exactly that error, nothing stored, and the socket usable.
    pub async fn rejects(&mut self, ws: &mut Ws, frame: &str, code: &str, message: &str) {
        let before = self.stored().await;
        ws.send_raw(frame.as_bytes()).await;
        Self::expect_error(ws, code, message).await;
        assert_eq!(self.stored().await, before, "nothing stored for {frame}");
        self.usable(ws).await;
    }
}

/// The next `message` whose `field` is `value`, skipping other messages.
pub(super) async fn message_where(ws: &mut Ws, field: &str, value: &Value) -> Value {
    loop {
        let m = ws.expect("message").await;
        if &m[field] == value {
            return m;
        }
    }
}

/// Two users on two nodes who talk freely; the checker sends in their conversation.
pub(super) async fn pair(c: &Cluster) -> (Ws, Ws, Checker) {
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let checker = Checker::new(c, conv).await;
    (a, b, checker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_frames() {
    let c = Cluster::start(2, &[]).await;
    let (mut a, _b, mut k) = pair(&c).await;
    let conv = k.conv;
    let json_bad = ("invalid_json", "Invalid JSON format");
    let cases: Vec<(String, (&str, &str))> = vec![
        ("{invalid json".into(), json_bad),
        ("[1,2]".into(), json_bad),
        (r#"{"type":5}"#.into(), json_bad),
        ("null".into(), json_bad),
        (
            r#"{"data":{}}"#.into(),
            ("unknown_type", "message type is required"),
        ),
        (
            r#"{"type":"dance","data":{}}"#.into(),
            ("unknown_type", "unknown message type: dance"),
        ),
    ];
    let typing = ("invalid_typing_format", "Invalid typing format");
    let read = ("invalid_read_format", "Invalid read format");
    let recall = ("invalid_recall_format", "Invalid recall format");
    let current = (
        "invalid_set_current_conversation_format",
        "Invalid set_current_conversation format",
    );
    let ack = ("invalid_ack_format", "Invalid ack format");
    let f = |t: &str, d: Value| json!({"type": t, "data": d}).to_string();
    let more: Vec<(String, (&str, &str))> = vec![
        (r#"{"type":"typing"}"#.into(), typing),
        (f("typing", json!({})), typing),
        (f("typing", json!({"conversation_id": "zz"})), typing),
        (f("typing", json!({"conversation_id": 5})), typing),
        (
            f("read", json!({"conversation_id": "x", "message_id": "y"})),
            read,
        ),
        (f("read", json!({"conversation_id": conv})), read),
        (f("read", json!("nope")), read),
        (f("recall", json!({"message_id": "nope"})), recall),
        (r#"{"type":"recall"}"#.into(), recall),
        (
            f(
                "set_current_conversation",
                json!({"conversation_id": "bad"}),
            ),
            current,
        ),
        (
            f("set_current_conversation", json!({"conversation_id": 5})),
            current,
        ),
        (f("ack", json!({"conversation_id": "bad", "seq": 1})), ack),
        (f("ack", json!({"conversation_id": conv, "seq": -1})), ack),
        (f("ack", json!({"conversation_id": conv, "seq": "x"})), ack),
    ];
    for (frame, (code, message)) in cases.into_iter().chain(more) {
        k.rejects(&mut a, &frame, code, message).await;
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_message_fields() {
    let c = Cluster::start(2, &[]).await;
    let (mut a, b, mut k) = pair(&c).await;
    let (conv, other) = (k.conv, b.user);
    let bad = ("invalid_message_format", "Invalid message format");
    let text = |extra: Value| {
        let mut d = json!({"conversation_id": conv, "message_type": "text", "content": "x"});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        msg(d)
    };
    for frame in [
        r#"{"type":"message"}"#.to_string(),
        msg(json!("hello")),
        text(json!({"content": 5})),
        text(json!({"message_type": 7})),
        text(json!({"conversation_id": 5})),
        text(json!({"client_msg_id": ["x"]})),
        text(json!({"metadata": [1]})),
        text(json!({"conversation_id": "abc"})),
        text(json!({"conversation_id": ""})),
        text(json!({"conversation_id": null, "receiver_id": "not-a-uuid"})),
        text(json!({"conversation_id": null, "receiver_id": other, "reply_to_message_id": "1234"})),
        text(json!({"reply_to_message_id": ""})),
    ] {
        k.rejects(&mut a, &frame, bad.0, bad.1).await;
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages() {
    let c = Cluster::start(2, &[]).await;
    let (mut a, mut b, mut k) = pair(&c).await;
    let conv = k.conv;
    let d = |t: &str, extra: Value| {
        let mut d = json!({"conversation_id": conv, "message_type": t});
        d.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        msg(d)
    };
    let required = ("content_required", "content is required for text messages");
    let cases = [
        (d("text", json!({"content": ""})), required),
        (d("text", json!({})), required),
        (d("text", json!({"content": null})), required),
        (
            d("text", json!({"content": "a".repeat(10_001)})),
            (
                "content_too_long",
                "content size exceeds the limit of 10000 characters",
            ),
        ),
        (
            d("sticker", json!({"content": "x"})),
            (
                "invalid_message_type",
                "invalid message_type: must be one of text, image, video, emoji",
            ),
        ),
        (
            d("image", json!({"metadata": {"width": 800}})),
            (
                "metadata_url_required",
                "metadata.url is required for image messages",
            ),
        ),
        (
            d("image", json!({})),
            (
                "metadata_url_required",
                "metadata.url is required for image messages",
            ),
        ),
        (
            d(
                "video",
                json!({"metadata": {"url": "https://x/v.mp4", "file_size": 51 * 1_048_576}}),
            ),
            (
                "video_too_large",
                "video file size exceeds limit: max 50MB, got 51.00MB",
            ),
        ),
        (
            d("emoji", json!({"metadata": {}})),
            (
                "content_required",
                "content or metadata is required for emoji messages",
            ),
        ),
        (
            d("text", json!({"content": "a\u{0}b"})),
            ("invalid_content", "content must not contain NUL characters"),
        ),
        (
            d("text", json!({"content": "x", "metadata": {"k": "a\u{0}"}})),
            (
                "invalid_metadata",
                "metadata must not contain NUL characters",
            ),
        ),
        (
            d(
                "text",
                json!({"content": "x", "client_msg_id": "c".repeat(65)}),
            ),
            (
                "invalid_client_msg_id",
                "client_msg_id must be 1 to 64 characters",
            ),
        ),
        (
            msg(json!({"message_type": "text", "content": "nowhere"})),
            ("conversation_required", "conversation_id is required"),
        ),
        (
            msg(json!({"conversation_id": Uuid::nil(), "message_type": "text", "content": "x"})),
            ("conversation_required", "conversation_id is required"),
        ),
        (
            msg(json!({"receiver_id": a.user, "message_type": "text", "content": "me"})),
            (
                "self_message",
                "failed to get conversation: cannot send message to yourself",
            ),
        ),
    ];
    for (frame, (code, message)) in cases {
        k.rejects(&mut a, &frame, code, message).await;
    }
    // At the limits: 10000 Chinese characters and a 64-character client_msg_id are accepted.
    let long = "字".repeat(10_000);
    let echo = send_text(&mut a, Some(conv), None, &long).await;
    assert_eq!(echo["content"].as_str().unwrap().chars().count(), 10_000);
    let got = message_where(&mut b, "id", &echo["id"]).await;
    assert_eq!(got["content"], echo["content"]);
    a.send(json!({"type": "message", "data": {"conversation_id": conv,
        "message_type": "text", "content": "cmid", "client_msg_id": "c".repeat(64)}}))
        .await;
    assert_eq!(a.expect("message").await["client_msg_id"], "c".repeat(64));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_outside_ones_conversations() {
    let c = Cluster::start(2, &[]).await;
    let (mut a, mut b, mut k) = pair(&c).await;
    let mut x = c.user(0).await;
    let mut y = c.user(1).await;
    let theirs = befriend(&mut x, &mut y).await;
    let foreign = send_text(&mut x, Some(theirs), None, "theirs").await;
    let not_member = ("not_member", "user is not a member of this conversation");
    let text = |conv: Uuid| {
        msg(json!({"conversation_id": conv, "message_type": "text", "content": "intruder"}))
    };
    for conv in [theirs, Uuid::new_v4()] {
        k.rejects(&mut a, &text(conv), not_member.0, not_member.1)
            .await;
    }
    // Replies: only to a message of the same conversation.
    let invalid_reply = (
        "invalid_reply",
        "reply_to_message_id must be a message of this conversation",
    );
    for target in [uuid_of(&foreign["id"]), Uuid::new_v4()] {
        let frame = msg(json!({"conversation_id": k.conv, "message_type": "text",
            "content": "re", "reply_to_message_id": target}));
        k.rejects(&mut a, &frame, invalid_reply.0, invalid_reply.1)
            .await;
    }
    let own = send_text(&mut b, Some(k.conv), None, "reply to me").await;
    a.send(
        json!({"type": "message", "data": {"conversation_id": k.conv,
        "message_type": "text", "content": "a reply", "reply_to_message_id": own["id"]}}),
    )
    .await;
    let echo = message_where(&mut a, "content", &json!("a reply")).await;
    assert_eq!(echo["reply_to_message_id"], own["id"], "{echo}");
    // The other pair saw nothing from the intruder.
    let seen = y.drain(Duration::from_millis(300)).await;
    let me = json!(a.user);
    assert!(
        seen.iter().all(|e| e["data"]["sender_id"] != me),
        "{seen:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_read_outside_ones_conversations() {
    let c = Cluster::start(2, &[]).await;
    let (mut a, mut b, mut k) = pair(&c).await;
    let mut x = c.user(0).await;
    let mut y = c.user(1).await;
    let theirs = befriend(&mut x, &mut y).await;
    let foreign = send_text(&mut x, Some(theirs), None, "theirs").await;
    let typing = |conv: Uuid| json!({"type": "typing", "data": {"conversation_id": conv}});
    // Typing is off by default: even a non-member's typing is ignored silently.
    a.send(typing(theirs)).await;
    a.expect_no("error", Duration::from_millis(300)).await;
    c.set("enable_typing_indicator", "true").await;
    let not_member = ("not_member", "user is not a member of this conversation");
    for conv in [theirs, Uuid::new_v4()] {
        k.rejects(
            &mut a,
            &typing(conv).to_string(),
            not_member.0,
            not_member.1,
        )
        .await;
    }
    y.expect_no("typing", Duration::from_millis(300)).await;
    a.send(typing(k.conv)).await;
    assert_eq!(b.expect("typing").await["user_id"], a.user.to_string());

    let read = |conv: Uuid, m: &Value| {
        json!({"type": "read", "data": {"conversation_id": conv, "message_id": m}}).to_string()
    };
    k.rejects(
        &mut a,
        &read(theirs, &foreign["id"]),
        not_member.0,
        not_member.1,
    )
    .await;
    let not_found = (
        "message_not_found",
        "message not found in this conversation",
    );
    for m in [foreign["id"].clone(), json!(Uuid::new_v4())] {
        k.rejects(&mut a, &read(k.conv, &m), not_found.0, not_found.1)
            .await;
    }
    // The intruder's reads sent no receipt to the other pair.
    x.expect_no("read", Duration::from_millis(300)).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_errors() {
    let c = Cluster::start(2, &[]).await;
    let (mut a, mut b, mut k) = pair(&c).await;
    let conv = k.conv;
    let recall = |m: &Value| json!({"type": "recall", "data": {"message_id": m}}).to_string();
    let mine = send_text(&mut a, Some(conv), None, "mine").await;
    let other = send_text(&mut b, Some(conv), None, "theirs").await;
    let cases = [
        (
            recall(&other["id"]),
            ("not_sender", "you can only recall your own messages"),
        ),
        (
            recall(&json!(Uuid::new_v4())),
            ("message_not_found", "Message not found"),
        ),
    ];
    for (frame, (code, message)) in cases {
        k.rejects(&mut a, &frame, code, message).await;
    }
    a.send_raw(recall(&mine["id"]).as_bytes()).await;
    assert_eq!(a.expect("recalled").await["message_id"], mine["id"]);
    let already = ("already_recalled", "message already recalled");
    k.rejects(&mut a, &recall(&mine["id"]), already.0, already.1)
        .await;

    c.set("recall_window_seconds", "1").await;
    let late = send_text(&mut a, Some(conv), None, "too late").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    a.send_raw(recall(&late["id"]).as_bytes()).await;
    let e = a.expect("error").await;
    assert_eq!(e["code"], "recall_window_passed", "{e}");
    let text = e["message"].as_str().unwrap();
    let elapsed: i64 = text
        .strip_prefix("can only recall messages within 1 second (elapsed: ")
        .and_then(|s| s.strip_suffix(" seconds)"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected text: {text}"));
    assert!((2..=4).contains(&elapsed), "{text}");
    k.usable(&mut a).await;
    let db = c.env.db().await;
    let ids = [&mine, &other, &late].map(|m| uuid_of(&m["id"]));
    let q = "SELECT array_agg(COALESCE(is_recalled, FALSE) ORDER BY array_position($1, id))
             FROM messages WHERE id = ANY($1)";
    let flags: Vec<bool> = db.query_one(q, &[&&ids[..]]).await.unwrap().get(0);
    assert_eq!(flags, [true, false, false], "only the first was recalled");
    c.stop().await;
}
