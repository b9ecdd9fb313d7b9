//! Group fan-out on a Redis Cluster (issue 17): every node SSUBSCRIBEs every fan-out
//! channel (spread over the shards by their hash tags), a big group's message is one
//! `SPUBLISH`, and when the master owning the group's fan-out channel dies (its replica
//! takes over) every node subscribes it again and nothing is lost or duplicated.

use std::time::Duration;

use uuid::Uuid;

use super::group_fanout::{FANOUT, events_of, seqs};
use super::http_api::Api;
use super::realtime::{Cluster, send_text};
use super::redis_cluster_harness::RedisCluster;
use crate::cluster::Keys;

/// `SPUBLISH` calls the masters on `ports` ran since their counters were reset.
fn spublishes(rc: &RedisCluster, ports: &[u16]) -> u64 {
    ports
        .iter()
        .map(|p| {
            rc.cli(*p, &["INFO", "commandstats"])
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("cmdstat_spublish:calls="))
                .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
        })
        .sum()
}

/// Waits (up to 30 s, a failure bound) until `nodes` nodes hold a sharded subscription to
/// each of `channels` and nobody a classic one.
async fn wait_subscribed(rc: &RedisCluster, channels: &[String], nodes: u64) {
    for _ in 0..300 {
        if channels.iter().all(|c| rc.subscribers(c) == (nodes, 0)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen: Vec<_> = channels.iter().map(|c| (c, rc.subscribers(c))).collect();
    panic!("fan-out channels not subscribed by {nodes} nodes: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_group_on_a_redis_cluster_is_one_spublish_and_survives_a_failover() {
    let rc = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .unwrap();
    let seeds = rc.seeds();
    let c = Cluster::start(3, &[("REDIS_CLUSTER_URLS", seeds.as_str()), (FANOUT, "3")]).await;
    let keys = Keys::for_cluster(&c.env.prefix);
    wait_subscribed(&rc, &keys.fanout_channels(), 3).await;

    // Members on nodes 0 and 1, none on node 2.
    let mut owner = c.user(0).await;
    let mut devices = Vec::new();
    for node in [0, 1, 1] {
        devices.push(c.user(node).await);
    }
    let members: Vec<Uuid> = devices.iter().map(|d| d.user).collect();
    let group = Api::new(&c, 0, owner.user).group("sharded", &members).await;
    let channel = keys.fanout_channel(keys.fanout_index(group.into()));

    let masters = rc.masters();
    for p in &masters {
        rc.cli(*p, &["CONFIG", "RESETSTAT"])
            .expect("CONFIG RESETSTAT");
    }
    let n = 10;
    for i in 1..=n {
        send_text(&mut owner, Some(group), None, &format!("c{i}")).await;
    }
    for d in &mut devices {
        let got = seqs(&events_of(d, group, n).await);
        assert_eq!(got, (1..=n as i64).collect::<Vec<_>>(), "user {}", d.user);
    }
    assert_eq!(
        spublishes(&rc, &masters),
        n as u64,
        "one SPUBLISH a message"
    );

    // The master owning the group's fan-out channel dies; messages sent while its shard has
    // no master, and after the replica took over, all arrive once, in order.
    let owner_port = *masters
        .iter()
        .find(|p| {
            rc.cli(**p, &["PUBSUB", "SHARDNUMSUB", &channel])
                .and_then(|o| o.lines().nth(1).and_then(|n| n.trim().parse::<u64>().ok()))
                .is_some_and(|n| n > 0)
        })
        .expect("a master holds the group's fan-out channel");
    let mut rc = rc;
    rc.kill(owner_port);
    for i in 1..=5 {
        send_text(&mut owner, Some(group), None, &format!("down{i}")).await;
    }
    let rc = tokio::task::spawn_blocking(move || {
        rc.wait_healthy();
        rc
    })
    .await
    .unwrap();
    wait_subscribed(&rc, &keys.fanout_channels(), 3).await;
    for i in 1..=5 {
        send_text(&mut owner, Some(group), None, &format!("up{i}")).await;
    }
    for d in &mut devices {
        let got = seqs(&events_of(d, group, 10).await);
        assert_eq!(
            got,
            (n as i64 + 1..=n as i64 + 10).collect::<Vec<_>>(),
            "user {}",
            d.user
        );
    }
    c.stop().await;
    drop(rc);
}
