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
//!   not run goes again, grouped the same way, up to [`ATTEMPTS`] times in all: `MOVED` to
//!   the node it names, `ASK` to the node it names after `ASKING`, and after a pause (the
//!   slot map read again) `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `READONLY` and every
//!   command of a group whose connection failed (those may then run twice, as with any
//!   retry after a lost connection). A group that times out is not sent again: its
//!   commands may still run. Commands whose key is not their first argument (see
//!   [`FIRST_KEY_COMMANDS`]) go through the cluster connection on their own, and so does
//!   everything when the first seed is not a plain `redis://` TCP address.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{
    Arg, AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisError, RedisResult, RetryMethod, Value,
};

/// Hash slots of a Redis Cluster.
const SLOTS: u16 = 16384;
/// The slot map is read again when it is older than this…
const MAP_MAX_AGE: Duration = Duration::from_secs(5);
/// …or when it proved wrong, but not more often than this.
const MAP_MIN_INTERVAL: Duration = Duration::from_millis(100);
/// A node whose connection could not be opened is not tried again for this long.
const NODE_RETRY: Duration = Duration::from_secs(1);
/// Attempts per command: the first pipeline, then redirections and retries.
const ATTEMPTS: usize = 5;
/// Pause before a retry that has to wait (cluster busy, master unreachable), doubled for
/// each further one.
const FIRST_PAUSE: Duration = Duration::from_millis(50);
/// Connection and response timeout of a node's connection, and of reading the slot map.
const TIMEOUT: Duration = Duration::from_secs(2);
/// No master known for a slot.
const UNKNOWN: u16 = u16::MAX;

/// Commands whose only key is their first argument, so they run on the master of that
/// key's slot and may share its pipeline. Any other command goes through the cluster
/// connection on its own.
pub const FIRST_KEY_COMMANDS: &[&[u8]] = &[
    b"SPUBLISH",
    b"SET",
    b"SETEX",
    b"PSETEX",
    b"EXPIRE",
    b"PEXPIRE",
    b"PERSIST",
    b"INCR",
    b"INCRBY",
    b"DECR",
    b"DECRBY",
    b"SADD",
    b"SREM",
    b"HSET",
    b"HDEL",
    b"HINCRBY",
    b"ZADD",
    b"ZREM",
    b"LPUSH",
    b"RPUSH",
    b"LTRIM",
];

/// A slot range and its master, as `CLUSTER SLOTS` reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SlotRange {
    pub first: u16,
    pub last: u16,
    /// The master's host (empty when the node did not say).
    pub host: String,
    pub port: u16,
}

/// Every slot range and its master (`CLUSTER SLOTS`), sorted.
pub async fn slot_ranges(conn: &ClusterConnection) -> RedisResult<Vec<SlotRange>> {
    let value: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn.clone())
        .await?;
    Ok(parse_slot_ranges(value))
}

fn parse_slot_ranges(value: Value) -> Vec<SlotRange> {
    let mut ranges = Vec::new();
    let Value::Array(entries) = value else {
        return ranges;
    };
    for entry in entries {
        let Value::Array(parts) = entry else { continue };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            Some(Value::SimpleString(h)) => h.clone(),
            _ => String::new(),
        };
        let port = match master.get(1) {
            Some(Value::Int(p)) => u16::try_from(*p).unwrap_or(0),
            _ => 0,
        };
        let (Ok(first), Ok(last)) = (u16::try_from(*first), u16::try_from(*last)) else {
            continue;
        };
        ranges.push(SlotRange {
            first,
            last,
            host,
            port,
        });
    }
    ranges.sort();
    ranges
}

/// CRC16/XMODEM, the checksum behind Redis Cluster hash slots.
const CRC16: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The hash slot of `key`: of its hash tag (the bytes between the first `{` and the next
/// `}`) when that is not empty, else of the whole key.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// The slot of `cmd`'s key, when it is one of [`FIRST_KEY_COMMANDS`].
fn first_key_slot(cmd: &Cmd) -> Option<u16> {
    let mut args = cmd.args_iter();
    let Arg::Simple(name) = args.next()? else {
        return None;
    };
    if !FIRST_KEY_COMMANDS
        .iter()
        .any(|known| name.eq_ignore_ascii_case(known))
    {
        return None;
    }
    match args.next()? {
        Arg::Simple(key) => Some(slot(key)),
        _ => None,
    }
}

/// A node, by address.
type Node = (String, u16);

/// `host:port` as a redirection names a node.
fn parse_node(addr: &str) -> Option<Node> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

/// The master of every slot.
struct SlotMap {
    /// Index into `nodes` of each slot's master, or [`UNKNOWN`].
    owner: Vec<u16>,
    nodes: Vec<Node>,
    read_at: Instant,
}

impl SlotMap {
    fn empty() -> SlotMap {
        SlotMap {
            owner: vec![UNKNOWN; usize::from(SLOTS)],
            nodes: Vec::new(),
            read_at: Instant::now(),
        }
    }

    fn new(ranges: &[SlotRange]) -> SlotMap {
        let mut map = SlotMap::empty();
        for r in ranges {
            if r.host.is_empty() || r.host == "?" || r.port == 0 || r.first > r.last {
                continue;
            }
            let node = (r.host.clone(), r.port);
            let index = match map.nodes.iter().position(|n| *n == node) {
                Some(i) => i,
                None => {
                    map.nodes.push(node);
                    map.nodes.len() - 1
                }
            };
            let last = r.last.min(SLOTS - 1);
            for s in r.first..=last {
                map.owner[usize::from(s)] = index as u16;
            }
        }
        map
    }

    fn owner(&self, slot: u16) -> Option<usize> {
        match self.owner.get(usize::from(slot)) {
            Some(&i) if i != UNKNOWN => Some(usize::from(i)),
            _ => None,
        }
    }
}

enum NodeConn {
    Up(MultiplexedConnection),
    Failed(Instant),
}

/// How a cluster connection's [`Shards::run_all`] sent its commands so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Commands sent in a per-master pipeline (first attempts).
    pub pipelined: u64,
    /// Later attempts: commands redirected (`MOVED`, `ASK`) or retried (cluster busy,
    /// master unreachable), again in per-node pipelines.
    pub resent: u64,
    /// Commands that are not [`FIRST_KEY_COMMANDS`], sent on their own through the cluster
    /// connection.
    pub direct: u64,
}

/// Where a command goes next.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    /// The master of its slot in the slot map.
    Owner,
    /// The node of a `MOVED`.
    Node(Node),
    /// The node of an `ASK` (`ASKING` first).
    Asking(Node),
}

/// A command on its way.
struct Job {
    cmd: Cmd,
    slot: u16,
    target: Target,
    /// Why the last attempt did not run it.
    error: Option<RedisError>,
}

/// What became of one pipeline.
#[derive(Default)]
struct Outcome {
    /// Not run yet: to be sent again.
    again: Vec<Job>,
    /// Some of `again` should wait a little (cluster busy, node unreachable).
    wait: bool,
    /// A command failed for good (or the pipeline timed out).
    error: Option<RedisError>,
}

impl Outcome {
    fn retry(&mut self, cmd: Cmd, slot: u16, target: Target, error: RedisError) {
        self.again.push(Job {
            cmd,
            slot,
            target,
            error: Some(error),
        });
    }
}

/// The slot map and the node connections of one cluster connection; shared by its clones.
pub struct Shards {
    /// The first seed's connection settings; a node's connection changes only the address.
    info: Option<ConnectionInfo>,
    /// The seed nodes, asked for the slot map when no known master answers.
    seeds: Vec<Node>,
    map: RwLock<Arc<SlotMap>>,
    nodes: Mutex<HashMap<Node, NodeConn>>,
    /// The map proved wrong (or could not be read) since the last read started.
    stale: AtomicBool,
    /// A background read of the map is running.
    refreshing: AtomicBool,
    last_attempt: Mutex<Option<Instant>>,
    pipelined: AtomicU64,
    resent: AtomicU64,
    direct: AtomicU64,
}

/// Clears a flag when dropped (also when the task holding it is cancelled).
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shards {
    /// Node connections use the first of `seeds`' settings (`redis://` URLs: credentials,
    /// protocol); with no usable seed every command goes through the cluster connection.
    pub fn new(seeds: &[String]) -> Shards {
        let infos: Vec<ConnectionInfo> = seeds
            .iter()
            .filter_map(|s| s.as_str().into_connection_info().ok())
            .collect();
        let info = infos
            .first()
            .filter(|i| matches!(i.addr(), ConnectionAddr::Tcp(..)))
            .cloned();
        let seeds = infos
            .iter()
            .filter_map(|i| match i.addr() {
                ConnectionAddr::Tcp(host, port) => Some((host.clone(), *port)),
                _ => None,
            })
            .collect();
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

    /// Counters of how commands were sent.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            pipelined: self.pipelined.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
            direct: self.direct.load(Ordering::Relaxed),
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
    fn due(&self) -> bool {
        let since_attempt = lock(&self.last_attempt).map_or(Duration::MAX, |t| t.elapsed());
        since_attempt >= MAP_MIN_INTERVAL
            && (self.stale.load(Ordering::Acquire)
                || self.current().read_at.elapsed() >= MAP_MAX_AGE)
    }

    fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// Reads `CLUSTER SLOTS` from a known master or a seed (the cluster connection as a
    /// last resort) and installs it.
    async fn read_map(&self, cluster: &ClusterConnection) {
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
    fn map(self: &Arc<Self>, cluster: &ClusterConnection) -> Arc<SlotMap> {
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
    async fn connection(&self, node: &Node) -> Option<MultiplexedConnection> {
        let info = self.info.as_ref()?;
        match lock(&self.nodes).get(node) {
            Some(NodeConn::Up(conn)) => return Some(conn.clone()),
            Some(NodeConn::Failed(at)) if at.elapsed() < NODE_RETRY => return None,
            _ => {}
        }
        let info = info
            .clone()
            .set_addr(ConnectionAddr::Tcp(node.0.clone(), node.1));
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

    fn forget(&self, node: &Node) {
        lock(&self.nodes).remove(node);
    }

    /// Runs independent commands whose replies are not needed: one pipeline per master,
    /// all at once, then what was not run (redirected, cluster busy, master unreachable)
    /// again, up to [`ATTEMPTS`] times. Every command is tried; the first error is returned.
    pub async fn run_all(
        self: &Arc<Self>,
        cluster: &ClusterConnection,
        cmds: Vec<Cmd>,
    ) -> RedisResult<()> {
        let mut jobs = Vec::with_capacity(cmds.len());
        let mut direct = Vec::new();
        for cmd in cmds {
            // Without usable seed settings there are no node connections.
            let slot = self.info.as_ref().and_then(|_| first_key_slot(&cmd));
            match slot {
                Some(slot) => jobs.push(Job {
                    cmd,
                    slot,
                    target: Target::Owner,
                    error: None,
                }),
                None => direct.push(cmd),
            }
        }
        let direct = async {
            if direct.is_empty() {
                return Ok(());
            }
            self.direct
                .fetch_add(direct.len() as u64, Ordering::Relaxed);
            one_by_one(cluster, direct).await
        };
        let (piped, direct) = tokio::join!(self.pipelines(cluster, jobs), direct);
        piped.and(direct)
    }

    async fn pipelines(
        self: &Arc<Self>,
        cluster: &ClusterConnection,
        mut jobs: Vec<Job>,
    ) -> RedisResult<()> {
        let mut first_error = None;
        let mut pause = FIRST_PAUSE;
        let mut wait = false;
        for attempt in 0..ATTEMPTS {
            if jobs.is_empty() {
                break;
            }
            if attempt == 0 {
                self.pipelined
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
            } else {
                if wait {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                if self.due() {
                    self.read_map(cluster).await;
                }
                self.resent.fetch_add(jobs.len() as u64, Ordering::Relaxed);
            }
            let map = self.map(cluster);
            let mut by_owner: Vec<Vec<Job>> = (0..map.nodes.len()).map(|_| Vec::new()).collect();
            let mut by_node: HashMap<(Node, bool), Vec<Job>> = HashMap::new();
            let mut outcome = Outcome::default();
            for mut job in jobs.drain(..) {
                match std::mem::replace(&mut job.target, Target::Owner) {
                    Target::Owner => match map.owner(job.slot) {
                        Some(i) => by_owner[i].push(job),
                        None => {
                            self.mark_stale();
                            outcome.wait = true;
                            job.error = Some(RedisError::from((
                                redis::ErrorKind::ClusterConnectionNotFound,
                                "no master known for the slot",
                            )));
                            outcome.again.push(job);
                        }
                    },
                    Target::Node(node) => by_node.entry((node, false)).or_default().push(job),
                    Target::Asking(node) => by_node.entry((node, true)).or_default().push(job),
                }
            }
            let mut sends: FuturesUnordered<_> = by_owner
                .into_iter()
                .enumerate()
                .filter(|(_, group)| !group.is_empty())
                .map(|(i, group)| (map.nodes[i].clone(), false, group))
                .chain(
                    by_node
                        .into_iter()
                        .map(|((node, asking), group)| (node, asking, group)),
                )
                .map(|(node, asking, group)| self.send(node, asking, group))
                .collect();
            while let Some(o) = sends.next().await {
                outcome.again.extend(o.again);
                outcome.wait |= o.wait;
                if let Some(e) = o.error {
                    first_error.get_or_insert(e);
                }
            }
            jobs = outcome.again;
            wait = outcome.wait;
        }
        if let Some(job) = jobs.into_iter().next() {
            first_error.get_or_insert(job.error.unwrap_or_else(|| {
                RedisError::from((redis::ErrorKind::Io, "Redis Cluster command not run"))
            }));
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Sends `jobs` to `node` as one pipeline (each command after an `ASKING` when
    /// `asking`) and sorts the replies.
    async fn send(&self, node: Node, asking: bool, jobs: Vec<Job>) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(mut conn) = self.connection(&node).await else {
            outcome.wait = true;
            for job in jobs {
                let error = RedisError::from((
                    redis::ErrorKind::Io,
                    "Redis Cluster node unreachable",
                    format!("{}:{}", node.0, node.1),
                ));
                outcome.retry(job.cmd, job.slot, Target::Owner, error);
            }
            return outcome;
        };
        let mut slots = Vec::with_capacity(jobs.len());
        let mut pipe = redis::pipe();
        for job in jobs {
            if asking {
                pipe.add_command(redis::cmd("ASKING"));
            }
            pipe.add_command(job.cmd);
            slots.push(job.slot);
        }
        let count = pipe.len();
        let replies = match conn.req_packed_commands(&pipe, 0, count).await {
            Ok(replies) if replies.len() == count => replies,
            Ok(replies) => {
                self.forget(&node);
                outcome.error = Some(RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "wrong number of replies to a pipeline",
                    format!("{} for {count} commands", replies.len()),
                )));
                return outcome;
            }
            Err(e) if e.is_timeout() => {
                // The commands may still run: sending them again could run them twice.
                tracing::debug!(host = %node.0, port = node.1, count, "pipeline to a Redis Cluster node timed out");
                self.mark_stale();
                outcome.error = Some(e);
                return outcome;
            }
            Err(e) => {
                // Lost with the connection, or run before it broke: sent again (at least once).
                tracing::debug!(error = %e, host = %node.0, port = node.1, "pipeline to a Redis Cluster node failed");
                self.forget(&node);
                self.mark_stale();
                outcome.wait = true;
                let cmds = pipe
                    .cmd_iter()
                    .skip(usize::from(asking))
                    .step_by(1 + usize::from(asking));
                for (cmd, slot) in cmds.zip(slots) {
                    outcome.retry(cmd.clone(), slot, Target::Owner, e.clone());
                }
                return outcome;
            }
        };
        let step = 1 + usize::from(asking);
        let cmds = pipe.cmd_iter().skip(step - 1).step_by(step);
        let replies = replies.into_iter().skip(step - 1).step_by(step);
        for ((cmd, slot), reply) in cmds.zip(slots).zip(replies) {
            if !matches!(reply, Value::ServerError(_)) {
                continue;
            }
            let Err(e) = reply.extract_error() else {
                continue;
            };
            let redirect = e.redirect_node().and_then(|(addr, _)| parse_node(addr));
            match (e.retry_method(), redirect) {
                (RetryMethod::NoRetry, _) => {
                    outcome.error.get_or_insert(e);
                }
                (RetryMethod::MovedRedirect, Some(to)) => {
                    self.mark_stale();
                    outcome.retry(cmd.clone(), slot, Target::Node(to), e);
                }
                (RetryMethod::AskRedirect, Some(to)) => {
                    outcome.retry(cmd.clone(), slot, Target::Asking(to), e);
                }
                // Cluster busy (TRYAGAIN, CLUSTERDOWN, LOADING), a demoted master
                // (READONLY), an unreadable redirection: the slot's master after a pause.
                _ => {
                    self.mark_stale();
                    outcome.wait = true;
                    outcome.retry(cmd.clone(), slot, Target::Owner, e);
                }
            }
        }
        if !outcome.again.is_empty() {
            tracing::debug!(host = %node.0, port = node.1, count = outcome.again.len(), "commands not run by a Redis Cluster node; sending again");
        }
        outcome
    }
}

/// Sends each command on its own through the cluster connection (all at once; pipelined
/// per shard connection by the crate); the first error is returned once all have finished.
pub async fn one_by_one(cluster: &ClusterConnection, cmds: Vec<Cmd>) -> RedisResult<()> {
    let mut pending: FuturesUnordered<_> = cmds
        .into_iter()
        .map(|cmd| {
            let mut conn = cluster.clone();
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

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::{Route, SlotAddr};

    #[test]
    fn slots_match_redis() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{foo}bar"), 12182);
        assert_eq!(slot(b"baz"), 4813);
        // An empty tag or an unclosed brace hashes the whole key; only the first tag counts.
        assert_eq!(slot(b"{}foo"), crc16(b"{}foo") % SLOTS);
        assert_eq!(slot(b"{foo"), crc16(b"{foo") % SLOTS);
        assert_eq!(slot(b"a{b}{c}"), slot(b"b"));
        assert_eq!(slot(b"a{{b}}"), slot(b"{b"));
        let user = uuid::Uuid::new_v4();
        assert_eq!(
            slot(format!("p:u:{{{user}}}").as_bytes()),
            slot(format!("online:{{{user}}}").as_bytes())
        );
        // The crate's own slot computation agrees.
        for i in 0..5000 {
            let key = format!("key:{i}:{{tag{}}}", i % 97);
            let key = if i % 3 == 0 { format!("plain{i}") } else { key };
            assert_eq!(
                Route::new(slot(key.as_bytes()), SlotAddr::Master),
                Route::with_key(key.as_bytes(), SlotAddr::Master),
                "{key}"
            );
        }
    }

    #[test]
    fn only_first_key_commands_are_grouped() {
        let mut spublish = redis::cmd("SPUBLISH");
        spublish.arg("u:{x}").arg(b"payload".as_slice());
        assert_eq!(first_key_slot(&spublish), Some(slot(b"x")));
        let mut set = redis::cmd("set");
        set.arg("online:{y}").arg("1").arg("EX").arg(30);
        assert_eq!(first_key_slot(&set), Some(slot(b"y")));
        let mut del = redis::cmd("DEL");
        del.arg("a").arg("b");
        assert_eq!(first_key_slot(&del), None);
        let mut eval = redis::cmd("EVAL");
        eval.arg("return 1").arg(1).arg("k");
        assert_eq!(first_key_slot(&eval), None);
        assert_eq!(first_key_slot(&redis::cmd("SET")), None);
    }

    #[test]
    fn slot_map_follows_cluster_slots() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                Value::Array(vec![bulk("10.0.0.2"), Value::Int(7001), bulk("id2")]),
                Value::Array(vec![bulk("10.0.0.5"), Value::Int(7004), bulk("id5")]),
            ]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("10.0.0.1"), Value::Int(7000), bulk("id1")]),
            ]),
            Value::Array(vec![
                Value::Int(100),
                Value::Int(200),
                Value::Array(vec![bulk(""), Value::Int(7009), bulk("id9")]),
            ]),
        ]);
        let ranges = parse_slot_ranges(reply);
        assert_eq!(ranges.len(), 3);
        assert_eq!(ranges[0].first, 0);
        let map = SlotMap::new(&ranges);
        assert_eq!(map.nodes.len(), 2);
        let node = |slot| map.owner(slot).map(|i| map.nodes[i].clone());
        assert_eq!(node(0), Some(("10.0.0.1".to_string(), 7000)));
        assert_eq!(node(5460), Some(("10.0.0.1".to_string(), 7000)));
        assert_eq!(node(5461), Some(("10.0.0.2".to_string(), 7001)));
        assert_eq!(node(16383), Some(("10.0.0.2".to_string(), 7001)));
        assert_eq!(node(16384), None);
        assert!(SlotMap::empty().owner(0).is_none());
    }
}
