//! [`Redis::run_all`](super::Redis::run_all) on a Redis Cluster: one pipeline per master.
//!
//! redis-rs 1.8.1 cannot do this by itself:
//! * A pipeline sent through its `ClusterConnection` must stay in one hash slot (one with
//!   commands for two slots is refused with `CROSSSLOT` before anything is sent), and a
//!   batch of 1,000 user channels touches about 1,000 slots.
//! * `ClusterConnection::route_pipeline` does send a pipeline to a chosen node, but when
//!   any of its commands is answered `MOVED` or `ASK` the crate sends the *whole* pipeline
//!   again to the node named in that first redirection: the commands that had run the
//!   first time run again, and a pipeline whose slots now live on two nodes bounces between
//!   them until the retries run out.
//! * Single commands are no way out either: when a few hundred commands in flight are
//!   answered `MOVED` at once (the first batch after a resharding), the crate's slot
//!   refresh never completes and every later command on that connection times out (seen
//!   with 500 concurrent `SET`s; 50 were fine).
//!
//! So this module sends the pipelines and follows the redirections itself:
//! * It keeps the master of every slot, read with `CLUSTER SLOTS` from a known master or a
//!   seed: when the connection opens, after a redirection or a failed node (at most every
//!   100 ms; in the background, or before a retry), and when the map is older than 5 s.
//! * It keeps one multiplexed connection per node, opened on first use with the first
//!   seed's settings, dropped when it fails or the node stops being a master.
//! * [`Shards::run_all`] groups a batch by the master owning each command's slot and sends
//!   each group as one pipeline, all groups at once. Each reply is checked; what a node did
//!   not run goes again, grouped the same way, up to 5 attempts in all (`pipelines.rs`): `MOVED` to
//!   the node it names, `ASK` to the node it names after `ASKING`, and after a pause (the
//!   slot map read again) `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `READONLY` and every
//!   command of a group whose connection failed (those may then run twice, as with any
//!   retry after a lost connection). A group that times out is not sent again: its commands
//!   may still run. Commands whose key is not their first argument (see
//!   `FIRST_KEY_COMMANDS` in [`super::slots`]) go through the cluster connection on their
//!   own, and so does everything when the first seed is not a TCP address (`redis://` or,
//!   with TLS, `rediss://`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, Value};

use super::slots::{Node, SlotMap, SlotRange, parse_slot_ranges, slot_ranges};

/// The slot map is read again when it is older than this…
const MAP_MAX_AGE: Duration = Duration::from_secs(5);
/// …or when it proved wrong, but not more often than this.
const MAP_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// A node whose connection could not be opened is not tried again for this long.
const NODE_RETRY: Duration = Duration::from_secs(1);
/// Connection and response timeout of a node's connection, and of reading the slot map.
const TIMEOUT: Duration = Duration::from_secs(2);

enum NodeConn {
    Up(MultiplexedConnection),
    Failed(Instant),
}

/// The slot map and the node connections of one cluster connection; shared by its clones.
pub struct Shards {
    /// The first seed's connection settings; a node's connection changes only the address.
    pub(super) info: Option<ConnectionInfo>,
    /// The seed nodes, asked for the slot map when no known master answers.
    seeds: Vec<Node>,
    map: RwLock<Arc<SlotMap>>,
    nodes: Mutex<HashMap<Node, NodeConn>>,
    /// The map proved wrong (or could not be read) since the last read started.
    stale: AtomicBool,
    /// A background read of the map is running.
    refreshing: AtomicBool,
    last_attempt: Mutex<Option<Instant>>,
    /// How commands were sent, counted by `pipelines.rs` (read with `Shards::stats`).
    pub(super) pipelined: AtomicU64,
    pub(super) resent: AtomicU64,
    pub(super) direct: AtomicU64,
}

/// Clears a flag when dropped (also when the task holding it is cancelled).
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The host and port of a TCP address, with or without TLS.
fn node_of(addr: &ConnectionAddr) -> Option<Node> {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Some((host.clone(), *port))
        }
        _ => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shards {
    /// Node connections use the first of `seeds`' settings (credentials, protocol, TLS);
    /// with no usable seed every command goes through the cluster connection.
    pub fn new(seeds: &[ConnectionInfo]) -> Shards {
        let info = seeds
            .first()
            .filter(|i| node_of(i.addr()).is_some())
            .cloned();
        let seeds = seeds.iter().filter_map(|i| node_of(i.addr())).collect();
        Shards {
            info,
            seeds,
            map: RwLock::new(Arc::new(SlotMap::empty())),
            nodes: Mutex::new(HashMap::new()),
            stale: AtomicBool::new(true),
            refreshing: AtomicBool::new(false),
            last_attempt: Mutex::new(None),
            pipelined: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            direct: AtomicU64::new(0),
        }
    }

    /// Reads the slot map now (when the connection opens).
    pub async fn load(&self, cluster: &ClusterConnection) {
        self.read_map(cluster).await;
    }

    fn current(&self) -> Arc<SlotMap> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True when the map should be read again: it proved wrong or is old, and the last
    /// attempt is not too recent.
    pub(super) fn due(&self) -> bool {
        let since_attempt = lock(&self.last_attempt).map_or(Duration::MAX, |t| t.elapsed());
        since_attempt >= MAP_MIN_INTERVAL
            && (self.stale.load(Ordering::Acquire)
                || self.current().read_at.elapsed() >= MAP_MAX_AGE)
    }

    pub(super) fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// Reads `CLUSTER SLOTS` from a known master or a seed (the cluster connection as a
    /// last resort) and installs it.
    pub(super) async fn read_map(&self, cluster: &ClusterConnection) {
        *lock(&self.last_attempt) = Some(Instant::now());
        self.stale.store(false, Ordering::Release);
        match tokio::time::timeout(TIMEOUT, self.query_slots(cluster)).await {
            Ok(Some(ranges)) => {
                let map = SlotMap::new(&ranges);
                lock(&self.nodes).retain(|node, _| map.nodes.contains(node));
                *self.map.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
            }
            _ => {
                tracing::debug!("could not read the Redis Cluster slot map");
                self.mark_stale();
            }
        }
    }

    async fn query_slots(&self, cluster: &ClusterConnection) -> Option<Vec<SlotRange>> {
        let mut candidates = self.current().nodes.clone();
        for seed in &self.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        // Nodes already connected first: a dead one could use up the time.
        {
            let nodes = lock(&self.nodes);
            candidates.sort_by_key(|n| !matches!(nodes.get(n), Some(NodeConn::Up(_))));
        }
        for node in candidates {
            let Some(mut conn) = self.connection(&node).await else {
                continue;
            };
            match redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<Value>(&mut conn)
                .await
            {
                Ok(value) => {
                    let mut ranges = parse_slot_ranges(value);
                    // An empty host means the node that answered.
                    for r in ranges.iter_mut().filter(|r| r.host.is_empty()) {
                        r.host = node.0.clone();
                    }
                    if !ranges.is_empty() {
                        return Some(ranges);
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, host = %node.0, port = node.1, "CLUSTER SLOTS failed");
                    if !e.is_timeout() {
                        self.forget(&node);
                    }
                }
            }
        }
        slot_ranges(cluster).await.ok().filter(|r| !r.is_empty())
    }

    /// The current slot map; starts reading it again in the background when it is due.
    pub(super) fn map(self: &Arc<Self>, cluster: &ClusterConnection) -> Arc<SlotMap> {
        if self.due() && !self.refreshing.swap(true, Ordering::AcqRel) {
            let this = Arc::clone(self);
            let cluster = cluster.clone();
            tokio::spawn(async move {
                let _clear = ClearOnDrop(&this.refreshing);
                this.read_map(&cluster).await;
            });
        }
        self.current()
    }

    /// The connection to `node`, opened if needed; `None` while it cannot be reached.
    pub(super) async fn connection(&self, node: &Node) -> Option<MultiplexedConnection> {
        let info = self.info.as_ref()?;
        match lock(&self.nodes).get(node) {
            Some(NodeConn::Up(conn)) => return Some(conn.clone()),
            Some(NodeConn::Failed(at)) if at.elapsed() < NODE_RETRY => return None,
            _ => {}
        }
        let addr = match info.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: node.0.clone(),
                port: node.1,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(node.0.clone(), node.1),
        };
        let info = info.clone().set_addr(addr);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let opened = async {
            redis::Client::open(info)?
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        match tokio::time::timeout(TIMEOUT, opened).await {
            Ok(Ok(conn)) => {
                lock(&self.nodes).insert(node.clone(), NodeConn::Up(conn.clone()));
                Some(conn)
            }
            other => {
                if let Ok(Err(e)) = other {
                    tracing::debug!(error = %e, host = %node.0, port = node.1, "Redis Cluster node unreachable");
                }
                lock(&self.nodes).insert(node.clone(), NodeConn::Failed(Instant::now()));
                self.mark_stale();
                None
            }
        }
    }

    pub(super) fn forget(&self, node: &Node) {
        lock(&self.nodes).remove(node);
    }
}
