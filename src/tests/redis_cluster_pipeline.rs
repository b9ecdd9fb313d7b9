//! `Redis::run_all` on a Redis Cluster (issue 9): one pipeline per master that reaches
//! every shard, and every command still arrives across a resharding and a master failover
//! (redirected commands sent again on their own, the slot map read again).

use std::time::Duration;

use redis::Cmd;

use super::redis_cluster_harness::RedisCluster;
use crate::cluster::conn::{self, PipelineStats, Redis};
use crate::config::RedisConfig;

/// Keys (and channels) per round: about 1,000 commands, over all three shards.
const KEYS: usize = 500;

fn config(rc: &RedisCluster) -> RedisConfig {
    let urls: Vec<String> = rc
        .seeds()
        .split(',')
        .map(|s| format!("redis://{s}"))
        .collect();
    RedisConfig {
        url: urls[0].clone(),
        key_prefix: String::new(),
        cluster_urls: urls,
        tls: Default::default(),
    }
}

/// One round: a `SET` of every key to `value` and an `SPUBLISH` on a channel of each tag,
/// in one `run_all`, as the publisher sends them.
fn round(value: &str) -> Vec<Cmd> {
    let mut cmds = Vec::new();
    for i in 0..KEYS {
        let mut set = redis::cmd("SET");
        set.arg(format!("pipe:{{user-{i}}}"))
            .arg(value)
            .arg("EX")
            .arg(600);
        cmds.push(set);
        let mut publish = redis::cmd("SPUBLISH");
        publish.arg(format!("u:{{user-{i}}}")).arg(value.as_bytes());
        cmds.push(publish);
    }
    cmds
}

/// Every key, read back from the masters on `ports` (a key lives on the master of its
/// slot), and how many keys each holds. Plain connections, not a cluster client: redis-rs
/// 1.8.1's cluster connection can hang when hundreds of requests are redirected at once.
async fn assert_all(ports: &[u16], value: &str) -> Vec<usize> {
    let mut found = std::collections::HashMap::new();
    let mut per_master = Vec::new();
    for port in ports {
        let mut node = redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("pipe:*")
            .query_async(&mut node)
            .await
            .unwrap();
        per_master.push(keys.len());
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.get(key);
        }
        let values: Vec<Option<String>> = pipe.query_async(&mut node).await.unwrap();
        for (key, got) in keys.into_iter().zip(values) {
            assert!(
                found.insert(key.clone(), got).is_none(),
                "{key} on two masters"
            );
        }
    }
    for i in 0..KEYS {
        let key = format!("pipe:{{user-{i}}}");
        assert_eq!(
            found.get(&key).cloned().flatten().as_deref(),
            Some(value),
            "{key}"
        );
    }
    per_master
}

fn stats(redis: &Redis) -> PipelineStats {
    redis.pipeline_stats().expect("a cluster connection")
}

/// Runs rounds until one needs nothing sent again and nothing sent on its own: the slot
/// map has caught up with the cluster.
async fn settle(redis: &Redis, value: &str) {
    for _ in 0..50 {
        let before = stats(redis);
        redis.run_all(round(value)).await.unwrap();
        let after = stats(redis);
        if after.resent == before.resent && after.direct == before.direct {
            assert_eq!(after.pipelined - before.pipelined, 2 * KEYS as u64);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the slot map never caught up: {:?}", stats(redis));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_run_all_pipelines_per_master_across_reshard_and_failover() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let rc = tokio::task::spawn_blocking(|| RedisCluster::start(3, 1))
        .await
        .expect("Redis Cluster starts");
    tokio::time::timeout(Duration::from_secs(180), scenario(rc))
        .await
        .expect("the scenario hung");
}

async fn scenario(mut rc: RedisCluster) {
    let config = config(&rc);
    let redis = conn::open(&config).await.unwrap();

    // Steady state: every command in a per-master pipeline, every shard reached.
    redis.run_all(round("v1")).await.unwrap();
    assert_eq!(
        stats(&redis),
        PipelineStats {
            pipelined: 2 * KEYS as u64,
            resent: 0,
            direct: 0
        }
    );
    let masters = tokio::task::block_in_place(|| rc.masters());
    assert_eq!(masters.len(), 3);
    let per_master = assert_all(&masters, "v1").await;
    assert!(per_master.iter().all(|n| *n > 50), "{per_master:?}");

    // A resharding the map has not seen yet: the moved slots' commands are answered MOVED
    // inside the pipelines, sent again to the node named, and arrive.
    tokio::task::block_in_place(|| rc.reshard(masters[0], masters[1], 500));
    redis.run_all(round("v2")).await.unwrap();
    let after = stats(&redis);
    assert!(after.resent > 0, "{after:?}");
    assert_all(&masters, "v2").await;
    settle(&redis, "v3").await;
    assert_all(&masters, "v3").await;

    // A master killed: its group fails until its replica takes over; then everything
    // arrives, and the map follows the new master.
    tokio::task::block_in_place(|| rc.kill(masters[2]));
    let mut attempts = 0;
    loop {
        attempts += 1;
        match tokio::time::timeout(Duration::from_secs(3), redis.run_all(round("v4"))).await {
            Ok(Ok(())) => break,
            _ if attempts < 50 => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("run_all never succeeded after the failover: {other:?}"),
        }
    }
    tokio::task::block_in_place(|| rc.wait_healthy());
    let masters = tokio::task::block_in_place(|| rc.masters());
    assert_eq!(masters.len(), 3, "a replica took over");
    assert_all(&masters, "v4").await;
    settle(&redis, "v5").await;
    assert_all(&masters, "v5").await;
}
