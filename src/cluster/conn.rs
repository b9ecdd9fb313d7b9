//! The command connection to Redis: one server (a reconnecting multiplexed
//! `ConnectionManager`) or a Redis Cluster (a slot-routing `ClusterConnection` that follows
//! MOVED and ASK and refreshes its slot map after a failover). Both are cheap to clone and
//! implement `ConnectionLike`, so commands and scripts are written once.
//!
//! The one difference callers see: a pipeline on a cluster must stay inside one hash slot.
//! [`Redis::run_all`] sends independent commands as one pipeline to a single server and as
//! one pipeline per master to a cluster, on connections of its own next to the cluster
//! connection; whatever a master did not run (redirected, failover) is sent again through
//! the cluster connection (see [`shards`]).

mod pipelines;
pub mod shards;
pub mod slots;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, RedisFuture, RedisResult, Value};
use shards::Shards;

use crate::config::RedisConfig;
pub use pipelines::PipelineStats;

/// A Redis command connection.
#[derive(Clone)]
pub enum Redis {
    /// One Redis server.
    Single(ConnectionManager),
    /// A Redis Cluster: the slot-routing connection, and the slot map and per-master
    /// connections of [`Redis::run_all`] (shared by clones).
    Cluster(ClusterConnection, Arc<Shards>),
}

impl Redis {
    /// True for a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster(..))
    }

    /// Runs independent commands whose replies are not needed, in one round trip per shard
    /// (one pipeline per master on a cluster). Every command is tried; the first error is
    /// returned.
    pub async fn run_all(&self, cmds: Vec<Cmd>) -> RedisResult<()> {
        match self {
            Redis::Single(conn) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd).ignore();
                }
                pipe.query_async::<()>(&mut conn.clone()).await
            }
            Redis::Cluster(conn, shards) => shards.run_all(conn, cmds).await,
        }
    }

    /// How [`Redis::run_all`] sent its commands so far (`None` on a single server).
    pub fn pipeline_stats(&self) -> Option<PipelineStats> {
        match self {
            Redis::Single(_) => None,
            Redis::Cluster(_, shards) => Some(shards.stats()),
        }
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Redis::Single(c) => c.req_packed_command(cmd),
            Redis::Cluster(c, _) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Redis::Single(c) => c.req_packed_commands(cmd, offset, count),
            Redis::Cluster(c, _) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Redis::Single(c) => c.get_db(),
            Redis::Cluster(c, _) => c.get_db(),
        }
    }
}

/// A cluster client builder on `config`'s seed nodes with the node's timeouts (the
/// sharded subscriber adds RESP3 and its push sender).
pub fn cluster_builder(config: &RedisConfig) -> ClusterClientBuilder {
    ClusterClientBuilder::new(config.cluster_urls.clone())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .retries(6)
        .min_retry_wait(50)
        .max_retry_wait(1_000)
}

/// One connection attempt for `config`: a `ConnectionManager` or a `ClusterConnection`,
/// answering PING.
pub async fn open(config: &RedisConfig) -> RedisResult<Redis> {
    let mut conn = if config.is_cluster() {
        let conn = cluster_builder(config)
            .build()?
            .get_async_connection()
            .await?;
        let shards = Shards::new(&config.cluster_urls);
        shards.load(&conn).await;
        Redis::Cluster(conn, Arc::new(shards))
    } else {
        let client = redis::Client::open(config.url.as_str())?;
        Redis::Single(
            client
                .get_connection_manager_with_config(super::manager_config())
                .await?,
        )
    };
    redis::cmd("PING").query_async::<String>(&mut conn).await?;
    Ok(conn)
}
