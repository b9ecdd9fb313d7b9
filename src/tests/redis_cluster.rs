//! Nodes on a Redis Cluster (issue 9): cross-node delivery over sharded Pub/Sub, presence
//! in hash-tagged keys, settings over the control channel; and, under traffic, a
//! resharding of slots and a master killed and replaced by its replica, with nothing lost
//! or duplicated.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::drain::{receiver, sender};
use super::http_api::Api;
use super::realtime::{Cluster, befriend, send_text};
use super::redis_cluster_harness::RedisCluster;

/// Two dinq-message nodes with `REDIS_CLUSTER_URLS` pointing at `rc`.
async fn nodes_on(rc: &RedisCluster) -> Cluster {
    let seeds = rc.seeds();
    Cluster::start(2, &[("REDIS_CLUSTER_URLS", seeds.as_str())]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_presence_and_settings_work_on_a_redis_cluster() {
    let rc = tokio::task::spawn_blocking(|| RedisCluster::start(3, 0))
        .await
        .unwrap();
    let c = nodes_on(&rc).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;

    // The users' channels are sharded subscriptions on the shard owning their slot, and
    // nobody uses classic Pub/Sub for them.
    let prefix = c.env.prefix.clone();
    for user in [a.user, b.user] {
        let channel = format!("{prefix}u:{{{user}}}");
        assert_eq!(rc.subscribers(&channel), (1, 0), "{channel}");
    }
    assert_eq!(rc.subscribers(&format!("{prefix}dinq:control")).0, 2);

    // Presence lives in hash-tagged keys and shows across nodes.
    let client = redis::cluster::ClusterClient::new(
        rc.seeds()
            .split(',')
            .map(|s| format!("redis://{s}"))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut redis = client.get_async_connection().await.unwrap();
    let online: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}online:{{{}}}", b.user))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(online.as_deref(), Some("1"));
    let api_a = Api::new(&c, 0, a.user);
    assert_eq!(
        api_a.list("").await[0]["online_status"],
        json!({ b.user.to_string(): true })
    );

    // A group with members on both nodes.
    let mut d = c.user(1).await;
    let group = api_a.group("sharded", &[b.user, d.user]).await;
    let echo = send_text(&mut a, Some(group), None, "to everyone").await;
    for ws in [&mut b, &mut d] {
        loop {
            let m = ws.expect("message").await;
            if m["id"] == echo["id"] {
                break;
            }
        }
    }

    // A user who leaves is unsubscribed and taken offline; a reply reaches A live.
    let channel_d = format!("{prefix}u:{{{}}}", d.user);
    drop(d);
    let mut gone = false;
    for _ in 0..50 {
        if rc.subscribers(&channel_d) == (0, 0) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the departed user's channel is still subscribed");
    let reply = send_text(&mut b, Some(conv), None, "back to you").await;
    loop {
        let m = a.expect("message").await;
        if m["id"] == reply["id"] {
            break;
        }
    }

    // A setting changed through node 0 reaches node 1 over the control channel.
    c.set("enable_online_status", "false").await;
    let api_b = Api::new(&c, 1, b.user);
    let mut cleared = false;
    for _ in 0..20 {
        let list = api_b.list("").await;
        if list.iter().all(|item| item["online_status"] == json!({})) {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cleared, "node 1 did not pick up the setting");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_and_a_master_failover_under_traffic_lose_nothing() {
    let rc = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .unwrap();
    let c = nodes_on(&rc).await;
    c.set("max_messages_per_second", "0").await;
    let per = 250;
    // Each receiver gets `per` messages under traffic plus one "tail" message sent while a
    // master is down, after which its conversation is quiet: no later message reveals a
    // gap, so only the subscriber's repair from PostgreSQL can deliver it live.
    let expect = per + 1;
    let (mut senders, mut receivers, mut tails) = (Vec::new(), Vec::new(), Vec::new());
    // Private pairs across the two nodes: many users, so their channels spread over every
    // shard and some sit in the slots that move.
    for i in 0..12 {
        let mut a = c.user(i % 2).await;
        let mut b = c.user((i + 1) % 2).await;
        let conv = befriend(&mut a, &mut b).await;
        let (ta, tb) = (c.env.token(a.user, false), c.env.token(b.user, false));
        let (na, nb) = (c.nodes[i % 2].addr, c.nodes[(i + 1) % 2].addr);
        tails.push((i % 2, a.user, conv));
        senders.push(tokio::spawn(sender(a, na, ta, conv, per)));
        receivers.push(tokio::spawn(receiver(b, nb, tb, expect)));
    }
    // A group with members on both nodes.
    let owner = c.user(0).await;
    let members = [c.user(0).await, c.user(1).await, c.user(1).await];
    let ids: Vec<Uuid> = members.iter().map(|m| m.user).collect();
    let group = Api::new(&c, 0, owner.user).group("moves", &ids).await;
    tails.push((0, owner.user, group));
    let owner_token = c.env.token(owner.user, false);
    senders.push(tokio::spawn(sender(
        owner,
        c.nodes[0].addr,
        owner_token,
        group,
        per,
    )));
    for (i, m) in members.into_iter().enumerate() {
        let token = c.env.token(m.user, false);
        let node = c.nodes[if i == 0 { 0 } else { 1 }].addr;
        receivers.push(tokio::spawn(receiver(m, node, token, expect)));
    }

    // While it runs: move a third of a shard's slots, then kill another shard's master.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let masters = rc.masters();
    let (first, second) = (masters[0], masters[2]);
    let mut rc = tokio::task::spawn_blocking(move || {
        let mut rc = rc;
        rc.reshard(masters[0], masters[1], 2000);
        rc.kill(masters[2]);
        rc.wait_healthy();
        rc
    })
    .await
    .unwrap();
    assert_eq!(rc.masters().len(), 3, "a replica took over {second}");
    let mut sent = HashSet::new();
    for s in senders {
        let (acked, _) = s.await.unwrap();
        assert_eq!(acked.len(), per, "every send was acknowledged in time");
        sent.extend(acked);
    }

    // The tail: a second device of each sender, then another master killed and one more
    // message in every conversation while its shard has no master.
    let mut devices = Vec::new();
    for (node, user, conv) in &tails {
        devices.push((c.connect(*node, *user).await, *conv));
    }
    rc.kill(first);
    for (ws, conv) in &mut devices {
        let echo = send_text(ws, Some(*conv), None, &format!("m{per}")).await;
        sent.insert(echo["id"].as_str().unwrap().to_string());
    }
    let rc = tokio::task::spawn_blocking(move || {
        rc.wait_healthy();
        rc
    })
    .await
    .unwrap();

    for (n, r) in receivers.into_iter().enumerate() {
        let got = r.await.unwrap().0;
        let unique: HashSet<&String> = got.iter().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "receiver {n}: a message arrived twice"
        );
        assert_eq!(unique.len(), expect, "receiver {n}: messages missing");
        for id in &got {
            assert!(sent.contains(id), "receiver {n}: unknown message {id}");
        }
    }
    let db = c.env.db().await;
    let stored: i64 = db
        .query_one(
            "SELECT count(*) FROM messages WHERE content ~ '^m[0-9]+$'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored as usize,
        13 * expect,
        "every acknowledged message stored once"
    );
    drop(devices);
    c.stop().await;
    drop(rc);
}
