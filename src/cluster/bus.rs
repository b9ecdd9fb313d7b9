//! The cluster bus: one Redis channel per user.
//!
//! * [`Bus::route`] hands an envelope to the local sink when the user has devices here and
//!   queues it for a pipelined `PUBLISH` on the user's channel, so it also reaches the
//!   user's devices on other nodes. Every envelope starts with the origin node id; a node
//!   drops its own envelopes when Redis echoes them back.
//! * One subscriber task owns one dedicated Pub/Sub connection. It subscribes a user's
//!   channel when the local sink starts wanting it (first local device) and unsubscribes
//!   when it stops (last device gone), reconciling against the sink's current state so a
//!   quick disconnect/reconnect cannot leave a connected user unsubscribed. When the
//!   connection is lost it reconnects with backoff, resubscribes every local user and tells
//!   the sink, which repairs what its users missed from PostgreSQL.
//! * On a Redis Cluster the same shape uses sharded Pub/Sub (`SPUBLISH`, `SSUBSCRIBE`), so
//!   a user's traffic reaches only the shard owning the channel's slot; the subscriber is
//!   in [`super::sharded`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use super::{Keys, Redis};
use crate::config::RedisConfig;
use crate::metrics as m;

/// Envelope format version.
const VERSION: u8 = 1;
/// Bytes before the body: version, origin node hash.
pub const HEADER_LEN: usize = 9;
/// Channels per SUBSCRIBE/UNSUBSCRIBE command.
const SUBSCRIBE_CHUNK: usize = 500;

/// What the bus delivers to and asks of this node's connections (implemented by the hub).
pub trait LocalSink: Send + Sync + 'static {
    /// An envelope for `user` (header included), from this node or from Redis.
    fn deliver(&self, user: Uuid, envelope: Bytes);
    /// True while `user` has devices on this node (so their channel should be subscribed).
    fn wants(&self, user: Uuid) -> bool;
    /// Every user with devices on this node.
    fn users(&self) -> Vec<Uuid>;
    /// These users' channels are subscribed now.
    fn subscribed(&self, users: &[Uuid]);
    /// The subscription connection was lost and is back: live events may have been missed.
    fn reconnected(&self);
    /// These users' subscriptions were ended by Redis and are back: repair what they may
    /// have missed.
    fn repair(&self, users: Vec<Uuid>);
    /// A message on the control channel.
    fn control(&self, message: Bytes);
}

enum Target {
    User(Uuid),
    Control,
}

/// Handle to the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) origin: u64,
    pub(super) keys: Keys,
    publish_tx: mpsc::Sender<(Target, Bytes)>,
    changed: Mutex<HashSet<Uuid>>,
    pub(super) changed_notify: Notify,
    sink: std::sync::OnceLock<Weak<dyn LocalSink>>,
}

impl Inner {
    /// The users whose wish for a subscription may have changed since the last call.
    pub(super) fn take_changed(&self) -> Vec<Uuid> {
        self.changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect()
    }
}

/// Hash of a node id, carried in every envelope.
pub fn origin_of(node_id: &str) -> u64 {
    // FNV-1a: stable across processes and builds.
    node_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl Bus {
    /// Starts the publisher task on `publisher` (a multiplexed connection). The subscriber
    /// starts with [`Bus::start_subscriber`] once the sink exists.
    pub fn new(node_id: &str, keys: Keys, publisher: Redis) -> Bus {
        let (publish_tx, publish_rx) = mpsc::channel(100_000);
        let inner = Arc::new(Inner {
            origin: origin_of(node_id),
            keys: keys.clone(),
            publish_tx,
            changed: Mutex::new(HashSet::new()),
            changed_notify: Notify::new(),
            sink: std::sync::OnceLock::new(),
        });
        tokio::spawn(publish_loop(publisher, keys, publish_rx));
        Bus { inner }
    }

    /// An empty envelope with this node's header, for the caller to append a body to.
    pub fn envelope(&self, capacity: usize) -> BytesMut {
        let mut b = BytesMut::with_capacity(HEADER_LEN + capacity);
        b.put_u8(VERSION);
        b.put_u64(self.inner.origin);
        b
    }

    /// The body of an envelope, or `None` when it is malformed.
    pub fn body(envelope: &Bytes) -> Option<Bytes> {
        (envelope.len() >= HEADER_LEN && envelope[0] == VERSION)
            .then(|| envelope.slice(HEADER_LEN..))
    }

    fn origin(envelope: &[u8]) -> Option<u64> {
        (envelope.len() >= HEADER_LEN)
            .then(|| u64::from_be_bytes(envelope[1..9].try_into().expect("8 bytes")))
    }

    /// Delivers `envelope` to `user` wherever they are connected.
    pub async fn route(&self, user: Uuid, envelope: Bytes) {
        if let Some(sink) = self.inner.sink.get().and_then(Weak::upgrade)
            && sink.wants(user)
        {
            sink.deliver(user, envelope.clone());
        }
        self.publish(Target::User(user), envelope).await;
    }

    /// Delivers `envelope` to `user`'s devices on other nodes only.
    pub async fn route_remote(&self, user: Uuid, envelope: Bytes) {
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
    pub fn user_changed(&self, user: Uuid) {
        self.inner
            .changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user);
        self.inner.changed_notify.notify_one();
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
        let task = if config.is_cluster() {
            tokio::spawn(super::sharded::subscribe_loop(
                self.inner.clone(),
                config.clone(),
                Arc::downgrade(&sink),
            ))
        } else {
            tokio::spawn(subscribe_loop(
                self.inner.clone(),
                config.url.clone(),
                Arc::downgrade(&sink),
            ))
        };
        tokio::spawn(async move {
            stop.await;
            task.abort();
        });
    }
}

async fn publish_loop(conn: Redis, keys: Keys, mut rx: mpsc::Receiver<(Target, Bytes)>) {
    let mut batch = Vec::with_capacity(1024);
    let control = keys.control_channel();
    // Sharded Pub/Sub on a cluster: the message goes only to the shard owning the channel.
    let publish = if conn.is_cluster() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    let mut channel = Vec::with_capacity(64);
    let mut last_error_log = std::time::Instant::now() - Duration::from_secs(60);
    loop {
        if rx.recv_many(&mut batch, 1024).await == 0 {
            return;
        }
        let cmds = batch
            .drain(..)
            .map(|(target, payload)| {
                let mut cmd = redis::cmd(publish);
                match target {
                    Target::User(user) => {
                        keys.user_channel_into(&mut channel, user);
                        cmd.arg(&channel[..])
                    }
                    Target::Control => cmd.arg(&control),
                };
                cmd.arg(payload.as_ref());
                cmd
            })
            .collect::<Vec<_>>();
        let n = cmds.len() as u64;
        match tokio::time::timeout(Duration::from_secs(2), conn.run_all(cmds)).await {
            Ok(Ok(())) => metrics::counter!(m::REDIS_PUBLISHED).increment(n),
            result => {
                // Nothing is lost: every message is in PostgreSQL, and receivers repair gaps.
                metrics::counter!(m::REDIS_PUBLISH_ERRORS).increment(n);
                if last_error_log.elapsed() > Duration::from_secs(5) {
                    last_error_log = std::time::Instant::now();
                    match result {
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, dropped = n, "Redis publish failed")
                        }
                        _ => tracing::warn!(dropped = n, "Redis publish timed out"),
                    }
                }
            }
        }
    }
}

/// The user of a channel named by [`Keys::user_channel`] (hash-tagged or not).
pub(super) fn parse_user_channel(channel: &str, prefix: &str) -> Option<Uuid> {
    let id = channel.strip_prefix(prefix)?.strip_prefix("u:")?;
    let id = id
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(id);
    Uuid::try_parse(id).ok()
}

async fn subscribe_loop(inner: Arc<Inner>, url: String, sink: Weak<dyn LocalSink>) {
    let keys = inner.keys.clone();
    let control = keys.control_channel();
    let mut first = true;
    let mut delay = Duration::from_millis(100);
    loop {
        let client = match redis::Client::open(url.as_str()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "invalid Redis URL for the subscriber");
                return;
            }
        };
        let connected =
            tokio::time::timeout(Duration::from_secs(3), client.get_async_pubsub()).await;
        let pubsub = match connected {
            Ok(Ok(p)) => p,
            other => {
                if let Ok(Err(e)) = other {
                    tracing::warn!(error = %e, "Redis subscriber connection failed, retrying");
                }
                metrics::counter!(m::REDIS_SUBSCRIBE_ERRORS).increment(1);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let Some(sink) = sink.upgrade() else { return };
        let (mut sink_cmd, stream) = pubsub.split();
        let lost = Arc::new(Notify::new());
        let dispatcher = tokio::spawn(dispatch(
            stream,
            Arc::downgrade(&sink),
            keys.clone(),
            inner.origin,
            lost.clone(),
        ));
        let lost_signal = lost.notified();
        tokio::pin!(lost_signal);

        let result = async {
            with_timeout(sink_cmd.subscribe(&control)).await?;
            // Take the pending changes first so none is lost, then subscribe everyone wanted.
            inner.take_changed();
            let users = sink.users();
            for chunk in users.chunks(SUBSCRIBE_CHUNK) {
                let channels: Vec<String> = chunk.iter().map(|u| keys.user_channel(*u)).collect();
                with_timeout(sink_cmd.subscribe(&channels)).await?;
                sink.subscribed(chunk);
            }
            Ok::<_, redis::RedisError>(users.into_iter().collect::<HashSet<Uuid>>())
        }
        .await;
        let mut subscribed = match result {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Redis resubscribe failed, reconnecting");
                metrics::counter!(m::REDIS_SUBSCRIBE_ERRORS).increment(1);
                dispatcher.abort();
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        delay = Duration::from_millis(100);
        if first {
            first = false;
            tracing::info!("Redis subscriber connected");
        } else {
            tracing::info!(
                users = subscribed.len(),
                "Redis subscriber reconnected; resubscribed every local user"
            );
            metrics::counter!(m::REDIS_RESUBSCRIPTIONS).increment(1);
            sink.reconnected();
        }

        let mut ping = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = &mut lost_signal => break,
                _ = inner.changed_notify.notified() => {
                    let changed = inner.take_changed();
                    let (mut add, mut remove) = (Vec::new(), Vec::new());
                    for user in changed {
                        match (sink.wants(user), subscribed.contains(&user)) {
                            (true, false) => add.push(user),
                            (false, true) => remove.push(user),
                            (true, true) => sink.subscribed(&[user]),
                            (false, false) => {}
                        }
                    }
                    let mut failed = false;
                    for chunk in remove.chunks(SUBSCRIBE_CHUNK) {
                        let channels: Vec<String> = chunk.iter().map(|u| keys.user_channel(*u)).collect();
                        if with_timeout(sink_cmd.unsubscribe(&channels)).await.is_err() {
                            failed = true;
                            break;
                        }
                        for u in chunk {
                            subscribed.remove(u);
                        }
                    }
                    for chunk in add.chunks(SUBSCRIBE_CHUNK) {
                        if failed {
                            break;
                        }
                        let channels: Vec<String> = chunk.iter().map(|u| keys.user_channel(*u)).collect();
                        if with_timeout(sink_cmd.subscribe(&channels)).await.is_err() {
                            failed = true;
                            break;
                        }
                        subscribed.extend(chunk.iter().copied());
                        sink.subscribed(chunk);
                    }
                    if failed {
                        metrics::counter!(m::REDIS_SUBSCRIBE_ERRORS).increment(1);
                        break;
                    }
                }
                _ = ping.tick() => {
                    if with_timeout(sink_cmd.ping::<redis::Value>()).await.is_err() {
                        tracing::warn!("Redis subscriber ping failed, reconnecting");
                        break;
                    }
                }
            }
        }
        dispatcher.abort();
        tracing::warn!("Redis subscriber connection lost, reconnecting");
    }
}

async fn with_timeout<T>(
    f: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(Duration::from_secs(3), f).await {
        Ok(r) => r,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "Redis command timed out",
        ))),
    }
}

async fn dispatch(
    mut stream: redis::aio::PubSubStream,
    sink: Weak<dyn LocalSink>,
    keys: Keys,
    origin: u64,
    lost: Arc<Notify>,
) {
    let control = keys.control_channel();
    while let Some(msg) = stream.next().await {
        let Some(sink) = sink.upgrade() else { return };
        let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
        on_message(
            &*sink,
            &keys,
            &control,
            origin,
            msg.get_channel_name(),
            payload,
        );
    }
    lost.notify_one();
}

/// Hands a message received on `channel` to the sink: a user's envelope to `deliver`, the
/// control channel's to `control`; this node's own envelopes are dropped.
pub(super) fn on_message(
    sink: &dyn LocalSink,
    keys: &Keys,
    control: &str,
    origin: u64,
    channel: &str,
    payload: Bytes,
) {
    if Bus::origin(&payload) == Some(origin) {
        return;
    }
    if channel == control {
        if let Some(body) = Bus::body(&payload) {
            sink.control(body);
        }
        return;
    }
    match parse_user_channel(channel, keys.prefix()) {
        Some(user) => {
            metrics::counter!(m::REDIS_RECEIVED).increment(1);
            sink.deliver(user, payload);
        }
        None => tracing::debug!(channel, "message on an unknown channel"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_round_trip() {
        let user = Uuid::new_v4();
        for keys in [Keys::new("p:"), Keys::for_cluster("p:")] {
            let name = keys.user_channel(user);
            let mut buf = b"stale".to_vec();
            keys.user_channel_into(&mut buf, user);
            assert_eq!(buf, name.as_bytes());
            assert_eq!(parse_user_channel(&name, "p:"), Some(user), "{name}");
            assert_eq!(parse_user_channel(&name, "q:"), None);
        }
        assert_eq!(
            Keys::for_cluster("p:").user_channel(user),
            format!("p:u:{{{user}}}")
        );
        assert_eq!(parse_user_channel("p:u:nope", "p:"), None);
        assert_eq!(parse_user_channel("p:u:{nope}", "p:"), None);
    }

    #[test]
    fn origins_differ() {
        assert_ne!(origin_of("node-a"), origin_of("node-b"));
        assert_eq!(origin_of("node-a"), origin_of("node-a"));
    }
}
