//! Faults with nodes as real processes: SIGKILL during one-to-one and group traffic,
//! PostgreSQL and Redis restarted during traffic, a node frozen (SIGSTOP) for longer than the
//! presence timeout. The checker: every message whose sender got the echo reaches every
//! member (at least once across a crash, deduplicated by id), nothing is half-stored, sends
//! during the outage fail with a clear error, nodes recover without a restart, presence is
//! right again within 30 s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::drain::{receiver, sender};
use super::harness::{TestEnv, free_port};
use super::process::{PrivateStack, ProcessNode};
use super::realtime::{befriend, send_text, uuid_of};
use super::ws_client::{Seen, Ws};

fn env_with(base: &HashMap<String, String>, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut e = base.clone();
    for (k, v) in extra {
        e.insert(k.to_string(), v.to_string());
    }
    e
}

async fn set(node: &ProcessNode, token: &str, key: &str, value: &str) {
    let (status, body) = super::client::post(
        &format!("http://{}/api/admin/settings/{key}", node.addr),
        Some(token),
        &json!({ "value": value }),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
}

/// Every conversation's counter matches its messages: nothing half-stored.
async fn assert_consistent(db: &tokio_postgres::Client) {
    let bad: i64 = db
        .query_one(
            "SELECT count(*) FROM conversations c
             WHERE c.last_seq <> COALESCE((SELECT max(seq) FROM messages m WHERE m.conversation_id = c.id), 0)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        bad, 0,
        "a conversation's last_seq disagrees with its messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_private_and_group_traffic_loses_nothing() {
    let env = TestEnv::new().await;
    let base = env.env(&[]);
    let n0 = ProcessNode::start(env_with(&base, &[("NODE_ID", "k0")])).await;
    let n1 = ProcessNode::start(env_with(&base, &[("NODE_ID", "k1")])).await;
    let victim = ProcessNode::start(env_with(&base, &[("NODE_ID", "k2")])).await;
    let admin = env.token(Uuid::new_v4(), true);
    set(&n0, &admin, "max_messages_per_second", "0").await;
    let connect = |addr, user: Uuid| {
        let token = env.token(user, false);
        async move { Ws::connect(addr, &token, user).await.expect("connect") }
    };
    // Private pairs: senders on the victim and elsewhere, receivers on the victim.
    let per = 30;
    let mut tasks = Vec::new();
    let mut receivers = Vec::new();
    for i in 0..2 {
        let mut a = connect(if i == 0 { victim.addr } else { n0.addr }, Uuid::new_v4()).await;
        let mut b = connect(victim.addr, Uuid::new_v4()).await;
        let conv = befriend(&mut a, &mut b).await;
        let (ta, tb) = (env.token(a.user, false), env.token(b.user, false));
        tasks.push(tokio::spawn(sender(a, n0.addr, ta, conv, per)));
        receivers.push(tokio::spawn(receiver(b, n1.addr, tb, per)));
    }
    // A group: owner on node 0, members on node 1 and on the victim.
    let owner = connect(n0.addr, Uuid::new_v4()).await;
    let members: Vec<Ws> = vec![
        connect(n1.addr, Uuid::new_v4()).await,
        connect(victim.addr, Uuid::new_v4()).await,
    ];
    let group = create_group(&env, n0.addr, &owner, &members, "crash").await;
    let owner_token = env.token(owner.user, false);
    let group_sender = tokio::spawn(sender(owner, n0.addr, owner_token, group, per));
    let mut group_receivers = Vec::new();
    for m in members {
        let token = env.token(m.user, false);
        group_receivers.push(tokio::spawn(receiver(m, n1.addr, token, per)));
    }

    tokio::time::sleep(Duration::from_millis(400)).await;
    victim.kill9();

    let mut acked: Vec<Vec<String>> = Vec::new();
    for t in tasks {
        acked.push(t.await.unwrap().0);
    }
    let group_acked: HashSet<String> = group_sender.await.unwrap().0.into_iter().collect();
    assert_eq!(group_acked.len(), per);
    for (i, r) in receivers.into_iter().enumerate() {
        let (got, _) = r.await.unwrap();
        let got: HashSet<String> = got.into_iter().collect();
        let want: HashSet<String> = acked[i].iter().cloned().collect();
        assert_eq!(
            want.len(),
            per,
            "pair {i}: every send acknowledged in the end"
        );
        assert!(
            want.is_subset(&got),
            "pair {i} lost {:?}",
            want.difference(&got).collect::<Vec<_>>()
        );
    }
    for (i, r) in group_receivers.into_iter().enumerate() {
        let (got, _) = r.await.unwrap();
        let got: HashSet<String> = got.into_iter().collect();
        assert!(
            group_acked.is_subset(&got),
            "group member {i} lost {:?}",
            group_acked.difference(&got).collect::<Vec<_>>()
        );
    }
    assert_consistent(&env.db().await).await;
    drop((n0, n1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_fails_sends_clearly_and_recovers_without_restarting_nodes() {
    let stack = Arc::new(
        tokio::task::spawn_blocking(PrivateStack::start)
            .await
            .unwrap(),
    );
    let env = TestEnv::new().await;
    let base = env.env(&[
        ("DATABASE_URL", &stack.database_url),
        ("REDIS_URL", &stack.redis),
        ("STARTUP_TIMEOUT_SECONDS", "20"),
    ]);
    let n0 = ProcessNode::start(env_with(&base, &[("NODE_ID", "p0")])).await;
    let n1 = ProcessNode::start(env_with(&base, &[("NODE_ID", "p1")])).await;
    let (ua, ub) = (Uuid::new_v4(), Uuid::new_v4());
    let mut a = Ws::connect(n0.addr, &env.token(ua, false), ua)
        .await
        .unwrap();
    let mut b = Ws::connect(n1.addr, &env.token(ub, false), ub)
        .await
        .unwrap();
    let conv = befriend(&mut a, &mut b).await;
    let before = send_text(&mut a, Some(conv), None, "before").await;
    assert_eq!(b.expect("message").await["id"], before["id"]);

    let s = stack.clone();
    tokio::task::spawn_blocking(move || s.stop_postgres())
        .await
        .unwrap();
    // A send during the outage fails with a clear error event, and nothing is stored.
    a.text_to(Some(conv), None, "during").await;
    let e = a.expect_within("error", Duration::from_secs(30)).await;
    assert_eq!(e["code"], "unavailable", "{e}");
    assert!(e["message"].as_str().unwrap().contains("retry"), "{e}");
    let (status, _) = super::client::get(&format!("http://{}/ready", n0.addr), None)
        .await
        .unwrap();
    assert_eq!(status, 503, "not ready without PostgreSQL");

    let s = stack.clone();
    tokio::task::spawn_blocking(move || s.start_postgres())
        .await
        .unwrap();
    // The same nodes recover by themselves.
    let mut after = None;
    for _ in 0..60 {
        a.text_to(Some(conv), None, "after").await;
        match a.next(Duration::from_secs(2)).await {
            Some(Seen::Event(v)) if v["type"] == "message" => {
                after = Some(v["data"].clone());
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let after = after.expect("sends work again after PostgreSQL returns");
    loop {
        let m = b.expect("message").await;
        if m["id"] == after["id"] {
            break;
        }
    }
    let (status, _) = super::client::get(&format!("http://{}/ready", n0.addr), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (db, connection) = tokio_postgres::connect(&stack.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let during: i64 = db
        .query_one(
            "SELECT count(*) FROM messages WHERE content = 'during'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(during, 0, "the failed send stored nothing");
    assert_consistent(&db).await;
    drop((n0, n1, stack));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_is_taken_offline_and_comes_back() {
    let env = TestEnv::new().await;
    let base = env.env(&[]);
    let n0 = ProcessNode::start(env_with(&base, &[("NODE_ID", "s0")])).await;
    let frozen = ProcessNode::start(env_with(&base, &[("NODE_ID", "s1")])).await;
    let (ua, ub) = (Uuid::new_v4(), Uuid::new_v4());
    let mut a = Ws::connect(n0.addr, &env.token(ua, false), ua)
        .await
        .unwrap();
    let mut b = Ws::connect(frozen.addr, &env.token(ub, false), ub)
        .await
        .unwrap();
    befriend(&mut a, &mut b).await;
    frozen.freeze();
    // Its heartbeat stops; within 30 s another node declares it dead and B offline.
    let off = a
        .expect_within("online_status_update", Duration::from_secs(35))
        .await;
    assert_eq!(
        (off["user_id"].as_str(), off["is_online"].as_bool()),
        (Some(ub.to_string().as_str()), Some(false))
    );
    frozen.thaw();
    // Back: it registers its devices again and B is online within 30 s.
    let on = a
        .expect_within("online_status_update", Duration::from_secs(30))
        .await;
    assert_eq!(
        (on["user_id"].as_str(), on["is_online"].as_bool()),
        (Some(ub.to_string().as_str()), Some(true))
    );
    drop(b);
    drop((n0, frozen));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_0_on_sigterm_and_64_on_bad_configuration() {
    let env = TestEnv::new().await;
    let node = ProcessNode::start(env.env(&[("NODE_ID", "t0")])).await;
    assert_eq!(node.terminate(), Some(0));
    let bin =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug/dinq-message");
    let out = std::process::Command::new(&bin)
        .env_clear()
        .env("DATABASE_URL", &env.database_url)
        .env("JWT_SECRET", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_SECRET"));
    // A placeholder from our examples stops the node before any connection is tried: the
    // database port below has nothing listening, which would be exit 69.
    let dead = format!("postgres://postgres@127.0.0.1:{}/x", free_port());
    for secret in ["change-me", "change-me-in-production", "too-short"] {
        let out = std::process::Command::new(&bin)
            .env_clear()
            .env("DATABASE_URL", &dead)
            .env("JWT_SECRET", secret)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{secret}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("JWT_SECRET"), "{stderr}");
        assert!(
            !stderr.contains(secret),
            "the secret is not echoed: {stderr}"
        );
    }
}

/// Polls the conversation list on `node` (as the holder of `token`) until `partner` shows
/// `online` in `conv`; false if not within 30 s.
async fn shows(node: &ProcessNode, token: &str, conv: Uuid, partner: Uuid, online: bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let (status, body) = super::client::get(
            &format!("http://{}/api/v1/conversations", node.addr),
            Some(token),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{body}");
        let seen = body["data"]["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == conv.to_string())
            .map(|c| c["online_status"][partner.to_string()] == online);
        if seen == Some(true) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_during_private_and_group_traffic_delivers_everything_once() {
    let stack = Arc::new(
        tokio::task::spawn_blocking(PrivateStack::start)
            .await
            .unwrap(),
    );
    let env = TestEnv::new().await;
    let base = env.env(&[
        ("DATABASE_URL", &stack.database_url),
        ("REDIS_URL", &stack.redis),
    ]);
    let n0 = ProcessNode::start(env_with(&base, &[("NODE_ID", "r0")])).await;
    let n1 = ProcessNode::start(env_with(&base, &[("NODE_ID", "r1")])).await;
    set(
        &n0,
        &env.token(Uuid::new_v4(), true),
        "max_messages_per_second",
        "0",
    )
    .await;
    let connect = |addr, user: Uuid| {
        let token = env.token(user, false);
        async move { Ws::connect(addr, &token, user).await.expect("connect") }
    };
    let per = 100;
    // A private pair across the nodes, and a group with a member on each node.
    let mut a = connect(n0.addr, Uuid::new_v4()).await;
    let mut b = connect(n1.addr, Uuid::new_v4()).await;
    let conv = befriend(&mut a, &mut b).await;
    let (ua, ub) = (a.user, b.user);
    // C and D stay connected throughout, for the presence check.
    let mut c = connect(n1.addr, Uuid::new_v4()).await;
    let mut d = connect(n0.addr, Uuid::new_v4()).await;
    let conv_cd = befriend(&mut d, &mut c).await;
    let owner = connect(n0.addr, Uuid::new_v4()).await;
    let members = vec![
        connect(n1.addr, Uuid::new_v4()).await,
        connect(n0.addr, Uuid::new_v4()).await,
    ];
    let group = create_group(&env, n0.addr, &owner, &members, "redis").await;
    let owner_token = env.token(owner.user, false);
    let mut senders = vec![
        tokio::spawn(sender(a, n0.addr, env.token(ua, false), conv, per)),
        tokio::spawn(sender(owner, n0.addr, owner_token, group, per)),
    ];
    let mut receivers = vec![tokio::spawn(receiver(
        b,
        n1.addr,
        env.token(ub, false),
        per,
    ))];
    for m in members {
        let token = env.token(m.user, false);
        receivers.push(tokio::spawn(receiver(m, n1.addr, token, per)));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = stack.clone();
    tokio::task::spawn_blocking(move || s.restart_redis(Duration::from_millis(1500)))
        .await
        .unwrap();

    let group_acked: HashSet<String> = senders
        .pop()
        .unwrap()
        .await
        .unwrap()
        .0
        .into_iter()
        .collect();
    let private_acked: HashSet<String> = senders
        .pop()
        .unwrap()
        .await
        .unwrap()
        .0
        .into_iter()
        .collect();
    assert_eq!((private_acked.len(), group_acked.len()), (per, per));
    for (i, r) in receivers.into_iter().enumerate() {
        let want = if i == 0 { &private_acked } else { &group_acked };
        let (got, _) = r.await.unwrap();
        let unique: HashSet<String> = got.iter().cloned().collect();
        assert_eq!(unique.len(), got.len(), "receiver {i}: a message twice");
        assert!(
            want.is_subset(&unique),
            "receiver {i} lost {:?}",
            want.difference(&unique).collect::<Vec<_>>()
        );
    }
    // Presence (kept only in Redis, which came back empty) is right again within 30 s:
    // C, still connected, online; B, whose receiver has left, offline.
    assert!(
        shows(&n0, &env.token(d.user, false), conv_cd, c.user, true).await,
        "C online again after the restart"
    );
    assert!(
        shows(&n0, &env.token(ua, false), conv, ub, false).await,
        "B offline once gone"
    );
    drop((c, d, n0, n1, stack));
}

/// Creates a group owned by `owner` with `members` through node `addr`'s HTTP API.
async fn create_group(
    env: &TestEnv,
    addr: std::net::SocketAddr,
    owner: &Ws,
    members: &[Ws],
    name: &str,
) -> Uuid {
    let ids: Vec<Uuid> = members.iter().map(|m| m.user).collect();
    let (status, body) = super::client::post(
        &format!("http://{addr}/api/v1/conversations/group"),
        Some(&env.token(owner.user, false)),
        &json!({"group_name": name, "member_ids": ids}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    uuid_of(&body["data"]["id"])
}
