//! Real-time messaging across three nodes: delivery, event order, offline delivery by
//! cursor, multi-device, presence.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::harness::{TestEnv, TestNode};
use super::ws_client::Ws;

/// A test cluster: an environment and its nodes.
pub struct Cluster {
    pub env: TestEnv,
    pub nodes: Vec<TestNode>,
}

impl Cluster {
    pub async fn start(n: usize, extra: &[(&str, &str)]) -> Cluster {
        let env = TestEnv::new().await;
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = format!("node-{i}");
            let mut e = vec![("NODE_ID", id.as_str())];
            e.extend_from_slice(extra);
            nodes.push(env.node(&e).await);
        }
        Cluster { env, nodes }
    }

    /// Connects `user` to node `i`.
    pub async fn connect(&self, i: usize, user: Uuid) -> Ws {
        Ws::connect(self.nodes[i].addr, &self.env.token(user, false), user)
            .await
            .expect("connect")
    }

    /// A new user connected to node `i`.
    pub async fn user(&self, i: usize) -> Ws {
        self.connect(i, Uuid::new_v4()).await
    }

    /// Changes a setting through the admin API (every node reloads).
    pub async fn set(&self, key: &str, value: &str) {
        let admin = self.env.token(Uuid::new_v4(), true);
        let (status, body) = super::client::post(
            &format!("{}/api/admin/settings/{key}", self.nodes[0].url()),
            Some(&admin),
            &json!({ "value": value }),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        // Other nodes reload through the control channel within a second.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    pub async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }
}

/// Sends a text and returns the sender's echo.
pub async fn send_text(
    ws: &mut Ws,
    conversation: Option<Uuid>,
    receiver: Option<Uuid>,
    text: &str,
) -> Value {
    ws.text_to(conversation, receiver, text).await;
    loop {
        let v = ws.expect("message").await;
        if v["content"] == text && v["sender_id"] == ws.user.to_string() {
            return v;
        }
    }
}

pub fn uuid_of(v: &Value) -> Uuid {
    Uuid::parse_str(v.as_str().expect("a uuid string")).expect("a uuid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_message_across_nodes_in_order() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let echo = send_text(&mut a, None, Some(b.user), "hello").await;
    assert_eq!(echo["seq"], 1);
    assert_eq!(
        echo["can_send"], false,
        "first-message limit: A waits for B: {echo}"
    );
    let conv = uuid_of(&echo["conversation_id"]);
    let events: Vec<Value> = b.drain(Duration::from_millis(800)).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        ["conversation_update", "unread_count_update", "message"],
        "{events:?}"
    );
    assert_eq!(events[0]["data"]["unread_count"], 1);
    assert_eq!(events[0]["data"]["last_message_text"], "hello");
    assert_eq!(events[1]["data"]["unread_count"], 1);
    let m = &events[2]["data"];
    assert_eq!(m["id"], echo["id"]);
    assert_eq!(m["can_send"], true);
    assert_eq!(m["status"], "sent");
    assert_eq!(m["conversation_id"], conv.to_string());

    let reply = send_text(&mut b, Some(conv), None, "hi back").await;
    assert_eq!(reply["seq"], 2);
    let got = a.expect("message").await;
    assert_eq!(got["id"], reply["id"]);
    c.stop().await;
}

/// Makes `a` and `b` able to talk freely (a private conversation where both have spoken).
pub async fn befriend(a: &mut Ws, b: &mut Ws) -> Uuid {
    let first = send_text(a, None, Some(b.user), "hi").await;
    let conv = uuid_of(&first["conversation_id"]);
    b.expect("message").await;
    send_text(b, Some(conv), None, "hello").await;
    a.expect("message").await;
    conv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_messages_arrive_once_on_another_node() {
    let c = Cluster::start(3, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let b_user = b.user;
    b.close().await;
    let mut sent = Vec::new();
    for i in 0..30 {
        let echo = send_text(&mut a, Some(conv), None, &format!("m{i}")).await;
        sent.push(echo["id"].as_str().unwrap().to_string());
    }
    // B comes back on another node: every message exactly once, in order, as offline_message.
    let mut b2 = c.connect(2, b_user).await;
    let events = b2.drain(Duration::from_millis(1500)).await;
    let offline: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "offline_message")
        .map(|e| e["data"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(offline, sent);
    assert!(
        events.iter().all(|e| e["type"] != "message"),
        "no live duplicates: {events:?}"
    );
    let seqs: Vec<i64> = events
        .iter()
        .filter(|e| e["type"] == "offline_message")
        .map(|e| e["data"]["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (3..33).collect::<Vec<_>>());
    b2.close().await;
    // Nothing is replayed on the next reconnect, to any node.
    let mut b3 = c.connect(0, b_user).await;
    let again = b3.drain(Duration::from_millis(800)).await;
    assert!(
        again.iter().all(|e| e["type"] != "offline_message"),
        "{again:?}"
    );
    // Live delivery continues on the new connection.
    let echo = send_text(&mut a, Some(conv), None, "live again").await;
    let live = b3.expect("message").await;
    assert_eq!(live["id"], echo["id"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_on_two_nodes_gets_everything_on_both() {
    let c = Cluster::start(3, &[]).await;
    let mut a = c.user(0).await;
    let mut b1 = c.user(1).await;
    let mut b2 = c.connect(2, b1.user).await;
    let conv = befriend(&mut a, &mut b1).await;
    // b2 saw the first message and its own reply's echo too.
    let seen: Vec<Value> = b2.drain(Duration::from_millis(500)).await;
    let ids: Vec<&Value> = seen
        .iter()
        .filter(|e| e["type"] == "message")
        .map(|e| &e["data"]["seq"])
        .collect();
    assert_eq!(ids, [&json!(1), &json!(2)], "{seen:?}");
    let echo = send_text(&mut a, Some(conv), None, "to both").await;
    assert_eq!(b1.expect("message").await["id"], echo["id"]);
    assert_eq!(b2.expect("message").await["id"], echo["id"]);
    // Reading on one device updates the other.
    b1.send(json!({"type": "read", "data": {"conversation_id": conv, "message_id": echo["id"]}}))
        .await;
    let u1 = b1.expect("unread_count_update").await;
    let u2 = b2.expect("unread_count_update").await;
    assert_eq!(u1["unread_count"], 0);
    assert_eq!(u2["unread_count"], 0);
    assert_eq!(a.expect("read").await["reader_id"], b1.user.to_string());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_messages_make_one_conversation() {
    let c = Cluster::start(2, &[]).await;
    for _ in 0..5 {
        let mut a = c.user(0).await;
        let mut b = c.user(1).await;
        let (ua, ub) = (a.user, b.user);
        let (ea, eb) = tokio::join!(
            send_text(&mut a, None, Some(ub), "from a"),
            send_text(&mut b, None, Some(ua), "from b"),
        );
        assert_eq!(ea["conversation_id"], eb["conversation_id"]);
        let mut seqs = [ea["seq"].as_i64().unwrap(), eb["seq"].as_i64().unwrap()];
        seqs.sort();
        assert_eq!(seqs, [1, 2]);
        let db = c.env.db().await;
        let n: i64 = db
            .query_one(
                "SELECT count(*) FROM conversations c WHERE conversation_type = 'private'
                 AND EXISTS (SELECT 1 FROM conversation_members WHERE conversation_id = c.id AND user_id = $1)
                 AND EXISTS (SELECT 1 FROM conversation_members WHERE conversation_id = c.id AND user_id = $2)",
                &[&ua, &ub],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_get_consecutive_seqs() {
    let c = Cluster::start(3, &[("WRITER_SHARDS", "2")]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let a2 = c.connect(2, a.user).await;
    // Two devices of A on two nodes and B send 20 messages each, all at once.
    for i in 0..20 {
        a.text_to(Some(conv), None, &format!("a{i}")).await;
        a2.text_to(Some(conv), None, &format!("a2-{i}")).await;
        b.text_to(Some(conv), None, &format!("b{i}")).await;
    }
    let mut got = Vec::new();
    while got.len() < 60 {
        match b.next(Duration::from_secs(10)).await {
            Some(super::ws_client::Seen::Event(e)) if e["type"] == "message" => {
                got.push(e["data"]["seq"].as_i64().unwrap())
            }
            Some(super::ws_client::Seen::Event(_)) => {}
            other => panic!("after {got:?}: {other:?}"),
        }
    }
    // B sees all 60 new messages exactly once and in seq order.
    assert_eq!(got, (3..63).collect::<Vec<_>>());
    let db = c.env.db().await;
    let row = db
        .query_one("SELECT count(*), min(seq), max(seq), (SELECT last_seq FROM conversations WHERE id = $1) FROM messages WHERE conversation_id = $1", &[&conv])
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, i64>(2),
            row.get::<_, i64>(3)
        ),
        (62, 1, 62, 62)
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_client_msg_id_is_stored_once() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let send = json!({"type": "message", "data": {
        "conversation_id": conv, "message_type": "text", "content": "once", "client_msg_id": "retry-1"}});
    a.send(send.clone()).await;
    let first = a.expect("message").await;
    assert_eq!(first["client_msg_id"], "retry-1");
    // Retries: one after the commit, two racing each other.
    a.send(send.clone()).await;
    let again = a.expect("message").await;
    assert_eq!(again["id"], first["id"]);
    a.send(send.clone()).await;
    a.send(send.clone()).await;
    assert_eq!(a.expect("message").await["id"], first["id"]);
    assert_eq!(a.expect("message").await["id"], first["id"]);
    let db = c.env.db().await;
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM messages WHERE client_msg_id = 'retry-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // The recipient got it once.
    let seen = b.drain(Duration::from_millis(500)).await;
    assert_eq!(
        seen.iter().filter(|e| e["type"] == "message").count(),
        1,
        "{seen:?}"
    );
    c.stop().await;
}
