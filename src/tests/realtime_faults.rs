//! Real-time delivery when things go wrong: Redis restarted mid-traffic, a client that stops
//! reading, a node that disappears without saying goodbye.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use super::harness::{TestEnv, free_port};
use super::realtime::{Cluster, befriend, send_text, uuid_of};
use super::ws_client::{ConnectOptions, Ws};

/// A Redis server of this test's own, restartable on the same port.
pub(super) struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    pub(super) fn start() -> OwnRedis {
        let mut r = OwnRedis {
            port: free_port(),
            child: None,
        };
        r.up();
        r
    }

    pub(super) fn up(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start");
    }

    pub(super) fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(super) fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.down();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_nothing() {
    let mut redis = OwnRedis::start();
    let env = TestEnv::new().await;
    let url = redis.url();
    let mut nodes = Vec::new();
    for i in 0..2 {
        let id = format!("n{i}");
        nodes.push(env.node(&[("REDIS_URL", &url), ("NODE_ID", &id)]).await);
    }
    let c = Cluster { env, nodes };
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;

    // A keeps sending while Redis goes away for two seconds and comes back empty.
    let sender = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..40 {
            a.text_to(Some(conv), None, &format!("r{i}")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            ids.push(i);
        }
        a
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.down();
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.up();
    let mut a = sender.await.unwrap();

    // Every message A's echo confirmed reaches B exactly once.
    let confirmed: Vec<Value> = a
        .drain(Duration::from_secs(3))
        .await
        .into_iter()
        .filter(|e| e["type"] == "message")
        .map(|e| e["data"].clone())
        .collect();
    let confirmed_ids: HashSet<String> = confirmed
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        confirmed.len() >= 30,
        "most sends succeed: {}",
        confirmed.len()
    );
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while received.len() < confirmed.len() && tokio::time::Instant::now() < deadline {
        if let Some(super::ws_client::Seen::Event(e)) = b.next(Duration::from_millis(500)).await
            && e["type"] == "message"
        {
            received.push(e["data"]["id"].as_str().unwrap().to_string());
        }
    }
    let unique: HashSet<String> = received.iter().cloned().collect();
    assert_eq!(unique.len(), received.len(), "no duplicates");
    assert!(
        confirmed_ids.is_subset(&unique),
        "missing: {:?}",
        confirmed_ids.difference(&unique).collect::<Vec<_>>()
    );
    // Live delivery works normally afterwards.
    let echo = send_text(&mut a, Some(conv), None, "after").await;
    assert_eq!(b.expect("message").await["id"], echo["id"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_1013_and_loses_nothing() {
    let c = Cluster::start(
        2,
        &[("WS_QUEUE_SIZE", "8"), ("SOCKET_SEND_BUFFER_BYTES", "8192")],
    )
    .await;
    c.set("max_messages_per_second", "0").await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let b_user = b.user;
    b.close().await;
    let mut slow = Ws::connect_with(
        c.nodes[1].addr,
        &c.env.token(b_user, false),
        b_user,
        ConnectOptions {
            small_buffer: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    slow.drain(Duration::from_millis(300)).await;
    slow.pause(true);
    let big = "x".repeat(9000);
    let mut sent = Vec::new();
    for i in 0..60 {
        let echo = send_text(&mut a, Some(conv), None, &format!("{i}{big}")).await;
        sent.push(echo["id"].as_str().unwrap().to_string());
    }
    slow.pause(false);
    let code = slow.expect_closed(Duration::from_secs(20)).await;
    assert_eq!(code, 1013);
    // Reconnect: everything not delivered before the close arrives, nothing twice overall.
    let mut back = c.connect(0, b_user).await;
    let events = back.drain(Duration::from_secs(2)).await;
    let mut got: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "offline_message")
        .map(|e| e["data"]["id"].as_str().unwrap().to_string())
        .collect();
    assert!(!got.is_empty(), "something was pending");
    // What the slow client had received before the close was everything before `got`.
    let first_pending = sent.iter().position(|id| *id == got[0]).unwrap();
    let mut expected = sent[first_pending..].to_vec();
    assert_eq!(got, expected);
    got.clear();
    expected.clear();
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_node_takes_its_users_offline() {
    let env = TestEnv::new().await;
    let n0 = env.node(&[("NODE_ID", "stays")]).await;
    let n1 = env.node(&[("NODE_ID", "vanishes")]).await;
    let c = Cluster {
        env,
        nodes: vec![n0],
    };
    let mut a = c.user(0).await;
    let b_user = uuid::Uuid::new_v4();
    let mut b = Ws::connect(n1.addr, &c.env.token(b_user, false), b_user)
        .await
        .unwrap();
    let first = send_text(&mut a, None, Some(b_user), "hi").await;
    let _conv = uuid_of(&first["conversation_id"]);
    b.expect("message").await;
    // The node dies without draining: no registry removal, no presence cleanup.
    n1.crash().await;
    let update = a
        .expect_within("online_status_update", Duration::from_secs(40))
        .await;
    assert_eq!(update["user_id"], b_user.to_string());
    assert_eq!(update["is_online"], false);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_cluster_wide() {
    let c = Cluster::start(3, &[]).await;
    let mut a = c.user(0).await;
    let mut b1 = c.user(1).await;
    befriend(&mut a, &mut b1).await;
    let b_user = b1.user;
    // A second device on another node: no new "online" (B was online already).
    let b2 = c.connect(2, b_user).await;
    a.expect_no("online_status_update", Duration::from_millis(600))
        .await;
    // The first device leaves: B is still online through the other node.
    b1.close().await;
    a.expect_no("online_status_update", Duration::from_millis(600))
        .await;
    let redis_online = redis_get(&c, &format!("{}online:{b_user}", c.env.prefix)).await;
    assert_eq!(redis_online.as_deref(), Some("1"));
    b2.close().await;
    let update = a.expect("online_status_update").await;
    assert_eq!(update["is_online"], false);
    assert_eq!(
        redis_get(&c, &format!("{}online:{b_user}", c.env.prefix)).await,
        None
    );
    let _back = c.connect(1, b_user).await;
    let update = a.expect("online_status_update").await;
    assert_eq!(
        (update["user_id"].as_str(), update["is_online"].as_bool()),
        (Some(b_user.to_string().as_str()), Some(true))
    );
    c.stop().await;
}

async fn redis_get(c: &Cluster, key: &str) -> Option<String> {
    let client = redis::Client::open(format!("redis://{}", c.env.redis)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_live_ones_are_kept() {
    let c = Cluster::start(
        1,
        &[("WS_PING_SECONDS", "1"), ("WS_IDLE_TIMEOUT_SECONDS", "4")],
    )
    .await;
    // This client answers pings (its reader runs): alive after 5 s.
    let mut alive = c.user(0).await;
    // This one stops reading, so it never answers a ping.
    let mut silent = c.user(0).await;
    silent.pause(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    silent.pause(false);
    let code = silent.expect_closed(Duration::from_secs(5)).await;
    assert_eq!(code, 1001);
    let echo =
        super::realtime::send_text(&mut alive, None, Some(uuid::Uuid::new_v4()), "still here")
            .await;
    assert_eq!(echo["content"], "still here");
    c.stop().await;
}
