//! The subscriber on a Redis Cluster: sharded Pub/Sub (`SSUBSCRIBE`) of the per-user
//! channels and the control channel.
//!
//! One RESP3 cluster connection keeps one connection per shard and routes each `SSUBSCRIBE`
//! to the shard owning the channel's slot; messages come back as pushes. The control and
//! fan-out channels are subscribed with the users, every time everything is; losing one
//! of them puts every subscription in doubt. Subscriptions
//! follow the local sink's wishes exactly as on a single server (reconciled from the set of
//! changed users, concurrent commands, pipelined per shard connection).
//!
//! What can silently end a subscription, and what this task does about it:
//! * a shard connection drops (a master killed, a failover): a `Disconnection` push;
//! * a slot moves to another shard (resharding): the old owner sends `SUNSUBSCRIBE` for the
//!   channels of that slot;
//! * anything else that changes the slot map: a check of `CLUSTER SLOTS` every few seconds.
//!
//! On each, the channels concerned (all of them for a dropped connection or a changed
//! topology) are subscribed again, routed by the current slot map (a `MOVED` reply
//! refreshes it), retried with backoff until the cluster answers, and then the sink repairs
//! what those users may have missed from PostgreSQL, as after a Redis restart.
//!
//! Pushes reach this task through a bounded queue that never blocks redis-rs; a push that
//! finds it full is dropped and what it leaves in doubt is handled the same way (see
//! [`pushes`]).

mod pushes;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::model::UserId;
use futures_util::stream::{self, StreamExt};
use redis::cluster_async::ClusterConnection;

use super::Keys;
use super::conn::cluster_builder;
use super::conn::slots::slot_ranges;
use super::dispatch::{Dispatch, LocalSink};
use super::wishes::Wishes;
use crate::config::RedisConfig;
use crate::metrics as m;
use pushes::Lost;
pub(super) use pushes::PUSH_QUEUE;

/// Subscription commands in flight at once. redis-rs 1.8.1's cluster connection was seen
/// to stall for good in its slot refresh when about 256 or more commands were in flight
/// right after a resharding (50 and 128 never did), so this stays well below.
const CONCURRENCY: usize = 64;
/// How often the slot map is compared with the last one seen.
const TOPOLOGY_CHECK: Duration = Duration::from_secs(5);

/// Runs until the node stops (the task is aborted). `push_queue` bounds the pushes waiting
/// for the reader ([`PUSH_QUEUE`]).
pub(super) async fn subscribe_loop(
    dispatch: Arc<Dispatch>,
    wishes: Arc<Wishes>,
    config: RedisConfig,
    sink: Weak<dyn LocalSink>,
    push_queue: usize,
) {
    let lost = Arc::new(Lost::default());
    let (push_tx, push_rx) = pushes::queue(push_queue, dispatch.clone(), lost.clone());
    let mut delay = Duration::from_millis(100);
    let conn = loop {
        let client = cluster_builder(&config)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(push_tx.clone())
            .build();
        let connected = match client {
            Ok(client) => {
                tokio::time::timeout(Duration::from_secs(5), client.get_async_connection()).await
            }
            Err(e) => {
                tracing::error!(error = %e, "invalid Redis Cluster configuration");
                return;
            }
        };
        match connected {
            Ok(Ok(conn)) => break conn,
            other => {
                if let Ok(Err(e)) = other {
                    tracing::warn!(error = %e, "Redis Cluster subscriber connection failed, retrying");
                }
                metrics::counter!(m::REDIS_SUBSCRIBE_ERRORS).increment(1);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    };
    tokio::spawn(pushes::read(
        push_rx,
        sink.clone(),
        dispatch.clone(),
        lost.clone(),
    ));
    let keys = &dispatch.keys;
    let mut first = true;
    let mut topology = slot_ranges(&conn).await.unwrap_or_default();
    loop {
        let Some(sink) = sink.upgrade() else { return };
        // Everything, from scratch: take the pending changes first so none is lost.
        wishes.take();
        lost.take();
        let users = sink.users();
        let mut channels = vec![dispatch.control.clone()];
        channels.extend(dispatch.fanout.iter().cloned());
        channels.extend(users.iter().map(|u| keys.user_channel(*u)));
        if let Err(e) = each(&conn, "SSUBSCRIBE", channels).await {
            tracing::warn!(error = %e, "Redis Cluster resubscribe failed, retrying");
            metrics::counter!(m::REDIS_SUBSCRIBE_ERRORS).increment(1);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            continue;
        }
        delay = Duration::from_millis(100);
        sink.subscribed(&users);
        let mut subscribed: HashSet<UserId> = users.into_iter().collect();
        if first {
            first = false;
            tracing::info!("Redis Cluster subscriber connected");
        } else {
            tracing::info!(
                users = subscribed.len(),
                "Redis Cluster subscriptions restored; repairing from PostgreSQL"
            );
            metrics::counter!(m::REDIS_RESUBSCRIPTIONS).increment(1);
            sink.reconnected();
        }
        let mut check = tokio::time::interval(TOPOLOGY_CHECK);
        check.reset();
        loop {
            tokio::select! {
                _ = wishes.notified() => {
                    if reconcile(&conn, keys, &wishes, &*sink, &mut subscribed).await.is_err() {
                        metrics::counter!(m::REDIS_SUBSCRIBE_ERRORS).increment(1);
                        break;
                    }
                }
                _ = lost.notified() => {
                    let taken = lost.take();
                    if taken.all {
                        tracing::warn!("every Redis Cluster subscription in doubt (a shard connection or a push dropped); resubscribing");
                        break;
                    }
                    let again: Vec<UserId> = taken.users.into_iter().filter(|u| sink.wants(*u)).collect();
                    let channels = again.iter().map(|u| keys.user_channel(*u)).collect();
                    if each(&conn, "SSUBSCRIBE", channels).await.is_err() {
                        break;
                    }
                    tracing::info!(users = again.len(), "channels lost (moved to another shard, or a push dropped); resubscribed");
                    metrics::counter!(m::REDIS_RESUBSCRIPTIONS).increment(1);
                    subscribed.extend(again.iter().copied());
                    sink.repair(again);
                }
                _ = check.tick() => {
                    match slot_ranges(&conn).await {
                        Ok(now) if now != topology => {
                            topology = now;
                            tracing::info!("Redis Cluster slot map changed; resubscribing");
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "CLUSTER SLOTS failed"),
                    }
                }
            }
        }
    }
}

/// Subscribes the users who now want it and unsubscribes those who no longer do.
async fn reconcile(
    conn: &ClusterConnection,
    keys: &Keys,
    wishes: &Wishes,
    sink: &dyn LocalSink,
    subscribed: &mut HashSet<UserId>,
) -> redis::RedisResult<()> {
    let (mut add, mut remove) = (Vec::new(), Vec::new());
    for user in wishes.take() {
        match (sink.wants(user), subscribed.contains(&user)) {
            (true, false) => add.push(user),
            (false, true) => remove.push(user),
            (true, true) => sink.subscribed(&[user]),
            (false, false) => {}
        }
    }
    let channels = remove.iter().map(|u| keys.user_channel(*u)).collect();
    each(conn, "SUNSUBSCRIBE", channels).await?;
    for u in &remove {
        subscribed.remove(u);
    }
    let channels = add.iter().map(|u| keys.user_channel(*u)).collect();
    each(conn, "SSUBSCRIBE", channels).await?;
    subscribed.extend(add.iter().copied());
    sink.subscribed(&add);
    Ok(())
}

/// Sends `command` for each channel (channels of different slots cannot share a command),
/// many at a time; fails if any fails.
async fn each(
    conn: &ClusterConnection,
    command: &str,
    channels: Vec<String>,
) -> redis::RedisResult<()> {
    let results: Vec<redis::RedisResult<()>> = stream::iter(channels)
        .map(|channel| {
            let mut conn = conn.clone();
            async move {
                let call = async {
                    if command == "SSUBSCRIBE" {
                        conn.ssubscribe(&channel).await
                    } else {
                        conn.sunsubscribe(&channel).await
                    }
                };
                match tokio::time::timeout(Duration::from_secs(5), call).await {
                    Ok(r) => r,
                    Err(_) => Err(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "Redis Cluster subscription timed out",
                    ))),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}
