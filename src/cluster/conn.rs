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
//!
//! Every connection to Redis is opened from [`client`] or [`cluster_builder`], which apply
//! the TLS settings of `rediss://` URLs (trusted CAs, what is checked).

mod pipelines;
pub mod shards;
pub mod slots;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionAddr, RedisFuture, RedisResult, TlsCertificates, TlsMode, Value};
use shards::Shards;

use crate::config::RedisConfig;
use crate::tls::Verify;
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

/// A cluster client builder on `config`'s seed nodes with the node's timeouts and TLS
/// settings (the sharded subscriber adds RESP3 and its push sender).
pub fn cluster_builder(config: &RedisConfig) -> ClusterClientBuilder {
    let mut builder = ClusterClientBuilder::new(config.cluster_urls.clone())
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .retries(6)
        .min_retry_wait(50)
        .max_retry_wait(1_000);
    if config.is_tls() {
        if let Some(certs) = certificates(config) {
            builder = builder.certs(certs);
        }
        builder = match config.tls.verify {
            Verify::Full => builder.tls(TlsMode::Secure),
            Verify::Chain => builder
                .tls(TlsMode::Secure)
                .danger_accept_invalid_hostnames(true),
            Verify::Nothing => builder.tls(TlsMode::Insecure),
        };
    }
    builder
}

/// A client for the one server at `url` (`config.url`, or a seed of a cluster), with
/// `config`'s TLS settings when `url` is `rediss://`.
pub fn client(config: &RedisConfig, url: &str) -> RedisResult<redis::Client> {
    let client = match certificates(config).filter(|_| url.starts_with("rediss://")) {
        Some(certs) => redis::Client::build_with_tls(url, certs)?,
        None => redis::Client::open(url)?,
    };
    let info = client.get_connection_info().clone();
    let addr = match info.addr().clone() {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            tls_params,
        } => match config.tls.verify {
            Verify::Full => return Ok(client),
            Verify::Chain => {
                let mut addr = ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure,
                    tls_params,
                };
                addr.set_danger_accept_invalid_hostnames(true);
                addr
            }
            Verify::Nothing => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: true,
                tls_params,
            },
        },
        _ => return Ok(client),
    };
    redis::Client::open(info.set_addr(addr))
}

/// The CA file's certificates for redis-rs (`None`: the system's store).
fn certificates(config: &RedisConfig) -> Option<TlsCertificates> {
    config.tls.ca_pem.clone().map(|pem| TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    })
}

/// One connection attempt for `config`: a `ConnectionManager` or a `ClusterConnection`,
/// answering PING.
pub async fn open(config: &RedisConfig) -> RedisResult<Redis> {
    let mut conn = if config.is_cluster() {
        let conn = cluster_builder(config)
            .build()?
            .get_async_connection()
            .await?;
        let shards = Shards::new(
            &config
                .cluster_urls
                .iter()
                .filter_map(|u| client(config, u).ok())
                .map(|c| c.get_connection_info().clone())
                .collect::<Vec<_>>(),
        );
        shards.load(&conn).await;
        Redis::Cluster(conn, Arc::new(shards))
    } else {
        let client = client(config, &config.url)?;
        // One plain attempt first: the manager retries a failed connection by itself and
        // would report a refused certificate or a TLS mismatch as a mere timeout.
        let probe = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        drop(
            client
                .get_multiplexed_async_connection_with_config(&probe)
                .await?,
        );
        Redis::Single(
            client
                .get_connection_manager_with_config(super::manager_config())
                .await?,
        )
    };
    redis::cmd("PING").query_async::<String>(&mut conn).await?;
    Ok(conn)
}
