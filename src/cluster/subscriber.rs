//! The subscriber on one Redis server: one dedicated Pub/Sub connection.
//!
//! It subscribes the control channel, the fan-out channels and the channel of every user the
//! local sink wants (in that order, so a user counts as subscribed only once the fan-out
//! channels are too),
//! then follows the sink's wishes ([`super::wishes`]), reconciling against the sink's current
//! state so a quick disconnect/reconnect cannot leave a connected user unsubscribed.
//! Received messages go to [`super::dispatch`]. When the connection is lost (the stream
//! ends, a command or the 2 s ping fails) it reconnects with backoff, resubscribes every
//! local user and tells the sink, which repairs what its users missed from PostgreSQL.
//!
//! redis-rs queues a Pub/Sub connection's messages in an unbounded channel of its own
//! between the socket and the stream read here; the reader does nothing but dispatch them.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::dispatch::{Dispatch, LocalSink};
use super::wishes::Wishes;
use crate::metrics as m;
use crate::model::UserId;

/// Channels per SUBSCRIBE/UNSUBSCRIBE command.
const SUBSCRIBE_CHUNK: usize = 500;

/// Runs until the node stops (the task is aborted).
pub(super) async fn subscribe_loop(
    dispatch: Arc<Dispatch>,
    wishes: Arc<Wishes>,
    config: crate::config::RedisConfig,
    sink: Weak<dyn LocalSink>,
) {
    let keys = &dispatch.keys;
    let control = &dispatch.control;
    let mut first = true;
    let mut delay = Duration::from_millis(100);
    loop {
        let client = match super::conn::client(&config, &config.url) {
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
        let reader = tokio::spawn(read(
            stream,
            Arc::downgrade(&sink),
            dispatch.clone(),
            lost.clone(),
        ));
        let lost_signal = lost.notified();
        tokio::pin!(lost_signal);

        let result = async {
            with_timeout(sink_cmd.subscribe(control)).await?;
            with_timeout(sink_cmd.subscribe(&dispatch.fanout)).await?;
            // Take the pending changes first so none is lost, then subscribe everyone wanted.
            wishes.take();
            let users = sink.users();
            for chunk in users.chunks(SUBSCRIBE_CHUNK) {
                let channels: Vec<String> = chunk.iter().map(|u| keys.user_channel(*u)).collect();
                with_timeout(sink_cmd.subscribe(&channels)).await?;
                sink.subscribed(chunk);
            }
            Ok::<_, redis::RedisError>(users.into_iter().collect::<HashSet<UserId>>())
        }
        .await;
        let mut subscribed = match result {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Redis resubscribe failed, reconnecting");
                metrics::counter!(m::REDIS_SUBSCRIBE_ERRORS).increment(1);
                reader.abort();
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
                _ = wishes.notified() => {
                    let changed = wishes.take();
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
        reader.abort();
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

/// Reads the connection's messages into the dispatch; signals `lost` when the stream ends.
async fn read(
    mut stream: redis::aio::PubSubStream,
    sink: Weak<dyn LocalSink>,
    dispatch: Arc<Dispatch>,
    lost: Arc<Notify>,
) {
    while let Some(msg) = stream.next().await {
        let Some(sink) = sink.upgrade() else { return };
        let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
        dispatch.on_message(&*sink, msg.get_channel_name(), payload);
    }
    lost.notify_one();
}
