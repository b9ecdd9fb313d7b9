//! The cluster bus: one Redis channel per user, and a few fan-out channels every node
//! subscribes.
//!
//! * [`Bus::route`] hands an envelope's body to the local sink when the user has devices
//!   here and queues the envelope for a pipelined `PUBLISH` on the user's channel, so it
//!   also reaches the user's devices on other nodes. Every envelope starts with the origin
//!   node id ([`super::envelope`]); a node drops its own envelopes when Redis echoes them
//!   back ([`super::dispatch`]).
//! * [`Bus::route_many`] does the same for one event to many users (a group's members): at
//!   or above `GROUP_FANOUT_MIN_MEMBERS` recipients it publishes ONE envelope carrying the
//!   recipient list on the conversation's fan-out channel, which every node subscribes, and
//!   each node hands it to its sink once for the listed users it holds; below, one publish
//!   per user as `route` does. Either way the local recipients get it directly, decoded once.
//! * One subscriber task subscribes a user's channel when the local sink starts wanting it
//!   (first local device) and unsubscribes when it stops (last device gone), and tells the
//!   sink to repair what its users missed when a subscription was lost:
//!   [`super::subscriber`] on one Redis server, [`super::sharded`] (sharded Pub/Sub,
//!   `SPUBLISH`/`SSUBSCRIBE`, so a user's traffic reaches only the shard owning the
//!   channel's slot) on a Redis Cluster.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use super::dispatch::Dispatch;
use super::envelope::{self, HEADER_LEN};
use super::wishes::Wishes;
use super::{Keys, Redis};
use crate::config::RedisConfig;
use crate::metrics as m;
use crate::model::{ConversationId, UserId};

pub use super::dispatch::LocalSink;
pub use super::envelope::origin_of;

enum Target {
    User(UserId),
    /// Fan-out channel `k`; the payload names the recipients.
    Fanout(usize),
    Control,
}

/// Handle to the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    dispatch: Arc<Dispatch>,
    wishes: Arc<Wishes>,
    publish_tx: mpsc::Sender<(Target, Bytes)>,
    sink: std::sync::OnceLock<Weak<dyn LocalSink>>,
    keys: Keys,
    /// Recipients from which [`Bus::route_many`] publishes one fan-out envelope; 0: never.
    fanout_min: usize,
}

impl Bus {
    /// Starts the publisher task on `publisher` (a multiplexed connection). The subscriber
    /// starts with [`Bus::start_subscriber`] once the sink exists. `fanout_min`: recipients
    /// from which [`Bus::route_many`] uses a fan-out channel (0: never).
    pub fn new(node_id: &str, keys: Keys, publisher: Redis, fanout_min: usize) -> Bus {
        let (publish_tx, publish_rx) = mpsc::channel(100_000);
        let inner = Arc::new(Inner {
            dispatch: Arc::new(Dispatch::new(origin_of(node_id), keys.clone())),
            wishes: Arc::new(Wishes::default()),
            publish_tx,
            sink: std::sync::OnceLock::new(),
            keys: keys.clone(),
            fanout_min,
        });
        tokio::spawn(publish_loop(
            publisher,
            keys,
            origin_of(node_id),
            publish_rx,
        ));
        Bus { inner }
    }

    /// An empty envelope with this node's header, for the caller to append a body to.
    pub fn envelope(&self, capacity: usize) -> BytesMut {
        envelope::with_header(self.inner.dispatch.origin, capacity)
    }

    /// Delivers `envelope` (made by [`Bus::envelope`]) to `user` wherever they are
    /// connected.
    pub async fn route(&self, user: UserId, envelope: Bytes) {
        if let Some(sink) = self.inner.sink.get().and_then(Weak::upgrade)
            && sink.wants(user)
            && envelope.len() >= HEADER_LEN
        {
            sink.deliver(
                user,
                self.inner.dispatch.origin,
                envelope.slice(HEADER_LEN..),
            );
        }
        self.publish(Target::User(user), envelope).await;
    }

    /// Delivers `envelope` (made by [`Bus::envelope`]) to each of `users` wherever they are
    /// connected; `conversation` picks the fan-out channel, so one conversation's envelopes
    /// stay in order. From `GROUP_FANOUT_MIN_MEMBERS` users on, one envelope carrying the
    /// list goes to the fan-out channel that every node subscribes; below, one per user's
    /// channel. The local sink gets the body once for all of them either way.
    pub async fn route_many(
        &self,
        users: &[UserId],
        envelope: Bytes,
        conversation: ConversationId,
    ) {
        self.route_many_of(users, envelope, conversation, users.len())
            .await;
    }

    /// [`Bus::route_many`] to some of a conversation of `members` members, on the path its
    /// messages take: the fan-out channel when `members` reaches `GROUP_FANOUT_MIN_MEMBERS`
    /// however few `users` there are. So an event for a few members (`Joined` for those
    /// just added) is not overtaken by the messages that follow it, which on a Redis Cluster
    /// a user channel on another shard would allow.
    pub async fn route_many_of(
        &self,
        users: &[UserId],
        envelope: Bytes,
        conversation: ConversationId,
        members: usize,
    ) {
        if users.is_empty() || envelope.len() < HEADER_LEN {
            return;
        }
        if let Some(sink) = self.inner.sink.get().and_then(Weak::upgrade) {
            sink.deliver_many(
                users,
                self.inner.dispatch.origin,
                envelope.slice(HEADER_LEN..),
            );
        }
        let min = self.inner.fanout_min;
        if min == 0 || members.max(users.len()) < min {
            for user in users {
                self.publish(Target::User(*user), envelope.clone()).await;
            }
            return;
        }
        metrics::histogram!(m::FANOUT_RECIPIENTS).record(users.len() as f64);
        let k = self.inner.keys.fanout_index(conversation);
        let env = envelope::fanout(self.inner.dispatch.origin, users, &envelope[HEADER_LEN..]);
        self.publish(Target::Fanout(k), env).await;
    }

    /// Delivers `envelope` to `user`'s devices on other nodes only.
    pub async fn route_remote(&self, user: UserId, envelope: Bytes) {
        self.publish(Target::User(user), envelope).await;
    }

    /// Sends `message` to the control handler of every other node (the caller handles it
    /// here itself).
    pub async fn broadcast_control(&self, message: Bytes) {
        let mut env = self.envelope(message.len());
        env.extend_from_slice(&message);
        self.publish(Target::Control, env.freeze()).await;
    }

    async fn publish(&self, target: Target, envelope: Bytes) {
        if self
            .inner
            .publish_tx
            .send((target, envelope))
            .await
            .is_err()
        {
            tracing::error!("publisher task is gone");
        }
    }

    /// Tells the subscriber that `user`'s wish for a subscription may have changed.
    pub fn user_changed(&self, user: UserId) {
        self.inner.wishes.changed(user);
    }

    /// Starts the subscriber task for `sink` against the Redis of `config`; it ends when
    /// `stop` completes.
    pub fn start_subscriber(
        &self,
        config: &RedisConfig,
        sink: Arc<dyn LocalSink>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let _ = self.inner.sink.set(Arc::downgrade(&sink));
        let (dispatch, wishes) = (self.inner.dispatch.clone(), self.inner.wishes.clone());
        let sink = Arc::downgrade(&sink);
        let task = if config.is_cluster() {
            tokio::spawn(super::sharded::subscribe_loop(
                dispatch,
                wishes,
                config.clone(),
                sink,
                super::sharded::PUSH_QUEUE,
            ))
        } else {
            tokio::spawn(super::subscriber::subscribe_loop(
                dispatch,
                wishes,
                config.clone(),
                sink,
            ))
        };
        tokio::spawn(async move {
            stop.await;
            task.abort();
        });
    }
}

/// Control message body: the users that follow (16 bytes each) may have missed published
/// events; the nodes holding them repair from PostgreSQL. Sent by a publisher whose
/// publishes failed or timed out, once publishing works again.
pub const CONTROL_REPAIR: &[u8] = b"repair:";
/// Users named in one repair message at most.
const REPAIR_CHUNK: usize = 1000;
/// How soon a failed repair request is tried again when nothing else is published.
const REPAIR_RETRY: Duration = Duration::from_secs(1);
/// Users remembered for repair at most; past it, every node repairs every local user.
const REPAIR_MAX: usize = 100_000;

/// The users of a [`CONTROL_REPAIR`] message body; `Some(empty)` means everyone.
pub fn repair_users(body: &[u8]) -> Option<Vec<UserId>> {
    let ids = body.strip_prefix(CONTROL_REPAIR)?;
    if ids.len() % 16 != 0 {
        return None;
    }
    Some(
        ids.chunks_exact(16)
            .map(|c| UserId::from_bytes(c.try_into().expect("16 bytes")))
            .collect(),
    )
}

/// Users whose published events may be lost (a publish failed or timed out), to be repaired
/// by their nodes once publishing works again: a publish is never dropped silently.
#[derive(Default)]
struct Unrepaired {
    users: std::collections::HashSet<UserId>,
    everyone: bool,
}

impl Unrepaired {
    fn add(&mut self, user: UserId) {
        if self.everyone {
            return;
        }
        self.users.insert(user);
        if self.users.len() > REPAIR_MAX {
            self.users.clear();
            self.everyone = true;
        }
    }

    fn is_empty(&self) -> bool {
        !self.everyone && self.users.is_empty()
    }

    /// The repair control envelopes to publish.
    fn envelopes(&self, origin: u64) -> Vec<Bytes> {
        let bodies: Vec<Vec<u8>> = if self.everyone {
            vec![CONTROL_REPAIR.to_vec()]
        } else {
            let users: Vec<UserId> = self.users.iter().copied().collect();
            users
                .chunks(REPAIR_CHUNK)
                .map(|chunk| {
                    let mut b = CONTROL_REPAIR.to_vec();
                    for u in chunk {
                        b.extend_from_slice(u.as_bytes());
                    }
                    b
                })
                .collect()
        };
        bodies
            .into_iter()
            .map(|body| {
                let mut env = envelope::with_header(origin, body.len());
                env.extend_from_slice(&body);
                env.freeze()
            })
            .collect()
    }
}

async fn publish_loop(
    conn: Redis,
    keys: Keys,
    origin: u64,
    mut rx: mpsc::Receiver<(Target, Bytes)>,
) {
    let mut batch = Vec::with_capacity(1024);
    let control = keys.control_channel();
    // Sharded Pub/Sub on a cluster: the message goes only to the shard owning the channel.
    let publish = if conn.is_cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    let fanout_channels = keys.fanout_channels();
    let mut channel = Vec::with_capacity(64);
    let mut last_error_log = std::time::Instant::now() - Duration::from_secs(60);
    let mut unrepaired = Unrepaired::default();
    let mut users = Vec::with_capacity(1024);
    // This batch's fan-out envelopes: their recipients are repaired if the batch fails.
    let mut fanouts = Vec::new();
    loop {
        if unrepaired.is_empty() {
            if rx.recv_many(&mut batch, 1024).await == 0 {
                return;
            }
        } else {
            // Try the repair request again within a second even when nothing else is sent.
            let waited = tokio::time::timeout(REPAIR_RETRY, rx.recv_many(&mut batch, 1024)).await;
            if waited == Ok(0) {
                return;
            }
        }
        users.clear();
        fanouts.clear();
        let mut cmds = batch
            .drain(..)
            .map(|(target, payload)| {
                let mut cmd = redis::cmd(publish);
                match target {
                    Target::User(user) => {
                        users.push(user);
                        keys.user_channel_into(&mut channel, user);
                        cmd.arg(&channel[..])
                    }
                    Target::Fanout(k) => {
                        fanouts.push(payload.clone());
                        cmd.arg(&fanout_channels[k])
                    }
                    Target::Control => cmd.arg(&control),
                };
                cmd.arg(payload.as_ref());
                cmd
            })
            .collect::<Vec<_>>();
        // Publishing works again after a failure: ask for the repair first.
        let repairs = if unrepaired.is_empty() {
            0
        } else {
            let envs = unrepaired.envelopes(origin);
            let n = envs.len();
            for env in envs.into_iter().rev() {
                let mut cmd = redis::cmd(publish);
                cmd.arg(&control).arg(env.as_ref());
                cmds.insert(0, cmd);
            }
            n
        };
        let n = (cmds.len() - repairs) as u64;
        match tokio::time::timeout(Duration::from_secs(2), conn.run_all(cmds)).await {
            Ok(Ok(())) => {
                metrics::counter!(m::REDIS_PUBLISHED).increment(n);
                if !fanouts.is_empty() {
                    metrics::counter!(m::FANOUT_PUBLISHED).increment(fanouts.len() as u64);
                }
                if repairs > 0 {
                    tracing::info!(
                        users = unrepaired.users.len(),
                        everyone = unrepaired.everyone,
                        "publishing works again; asked the nodes to repair the users whose events failed"
                    );
                    metrics::counter!(m::REDIS_REPAIRS_REQUESTED).increment(repairs as u64);
                    unrepaired = Unrepaired::default();
                }
            }
            result => {
                // The messages are in PostgreSQL; the users' nodes repair them from there once
                // the repair request gets through (and after any resubscription anyway).
                metrics::counter!(m::REDIS_PUBLISH_ERRORS).increment(n);
                for u in &users {
                    unrepaired.add(*u);
                }
                for env in &fanouts {
                    let recipients =
                        envelope::split(env).and_then(|(_, body)| envelope::split_fanout(&body));
                    for u in recipients.map(|(users, _)| users).unwrap_or_default() {
                        unrepaired.add(u);
                    }
                }
                if last_error_log.elapsed() > Duration::from_secs(5) {
                    last_error_log = std::time::Instant::now();
                    match result {
                        Ok(Err(e)) => tracing::warn!(
                            error = %e, failed = n, to_repair = unrepaired.users.len(),
                            "Redis publish failed; the users will be repaired"
                        ),
                        _ => tracing::warn!(
                            failed = n,
                            to_repair = unrepaired.users.len(),
                            "Redis publish timed out; the users will be repaired"
                        ),
                    }
                }
            }
        }
    }
}
