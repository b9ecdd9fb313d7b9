//! The command connection to Redis: one server (a reconnecting multiplexed
//! `ConnectionManager`) or a Redis Cluster (a slot-routing `ClusterConnection` that follows
//! MOVED and ASK and refreshes its slot map after a failover). Both are cheap to clone and
//! implement `ConnectionLike`, so commands and scripts are written once.
//!
//! The one difference callers see: a pipeline on a cluster must stay inside one hash slot.
//! [`Redis::run_all`] sends independent commands as one pipeline to a single server and as
//! concurrent single commands (still pipelined per shard connection) to a cluster.

use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, RedisFuture, RedisResult, Value};

use crate::config::RedisConfig;

/// A Redis command connection.
#[derive(Clone)]
pub enum Redis {
    /// One Redis server.
    Single(ConnectionManager),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

impl Redis {
    /// True for a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Redis::Cluster(_))
    }

    /// Runs independent commands whose replies are not needed, in one round trip per shard.
    pub async fn run_all(&self, cmds: Vec<Cmd>) -> RedisResult<()> {
        match self {
            Redis::Single(conn) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd).ignore();
                }
                pipe.query_async::<()>(&mut conn.clone()).await
            }
            Redis::Cluster(conn) => {
                let mut pending: FuturesUnordered<_> = cmds
                    .into_iter()
                    .map(|cmd| {
                        let mut conn = conn.clone();
                        async move { cmd.query_async::<()>(&mut conn).await }
                    })
                    .collect();
                let mut result = Ok(());
                while let Some(r) = pending.next().await {
                    if r.is_err() && result.is_ok() {
                        result = r;
                    }
                }
                result
            }
        }
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Redis::Single(c) => c.req_packed_command(cmd),
            Redis::Cluster(c) => c.req_packed_command(cmd),
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
            Redis::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Redis::Single(c) => c.get_db(),
            Redis::Cluster(c) => c.get_db(),
        }
    }
}

/// A cluster client on `config`'s seed nodes with the node's timeouts; RESP3 with
/// `push` as the push sender when given (the sharded subscriber).
pub fn cluster_client(
    config: &RedisConfig,
    push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
) -> RedisResult<redis::cluster::ClusterClient> {
    let mut builder = ClusterClientBuilder::new(config.cluster_urls.clone())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .retries(6)
        .min_retry_wait(50)
        .max_retry_wait(1_000);
    if let Some(tx) = push {
        builder = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx);
    }
    builder.build()
}

/// One connection attempt for `config`: a `ConnectionManager` or a `ClusterConnection`,
/// answering PING.
pub async fn open(config: &RedisConfig) -> RedisResult<Redis> {
    let mut conn = if config.is_cluster() {
        Redis::Cluster(cluster_client(config, None)?.get_async_connection().await?)
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
