//! [`Shards::run_all`]: a batch of independent commands sent as one pipeline per master,
//! every reply checked, and what a node did not run sent again (see [`super::shards`] for
//! the whole design); [`Shards::stats`] counts how commands went. This module uses
//! `shards` and `slots`, and neither of them uses it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, RedisError, RedisResult, RetryMethod, Value};

use super::shards::Shards;
use super::slots::{Node, first_key_slot, parse_node};

/// Attempts per command: the first pipeline, then redirections and retries.
const ATTEMPTS: usize = 5;
/// Pause before a retry that has to wait (cluster busy, master unreachable), doubled for
/// each further one.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// How a cluster connection's [`Shards::run_all`] sent its commands so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Commands sent in a per-master pipeline (first attempts).
    pub pipelined: u64,
    /// Later attempts: commands redirected (`MOVED`, `ASK`) or retried (cluster busy,
    /// master unreachable), again in per-node pipelines.
    pub resent: u64,
    /// Commands that are not [`FIRST_KEY_COMMANDS`](super::slots::FIRST_KEY_COMMANDS), sent
    /// on their own through the cluster connection.
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

impl Shards {
    /// Counters of how commands were sent.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            pipelined: self.pipelined.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
            direct: self.direct.load(Ordering::Relaxed),
        }
    }

    /// Runs independent commands whose replies are not needed: one pipeline per master,
    /// all at once, then what was not run (redirected, cluster busy, master unreachable)
    /// again, up to `ATTEMPTS` (5) times. Every command is tried; the first error is returned.
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
async fn one_by_one(cluster: &ClusterConnection, cmds: Vec<Cmd>) -> RedisResult<()> {
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
