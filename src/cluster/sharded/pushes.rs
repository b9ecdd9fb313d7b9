//! The pushes of the sharded subscriber's cluster connection: the sender redis-rs calls (a
//! bounded queue that never blocks), the reader that hands messages to the dispatch, and
//! the record of subscriptions lost on the way, for the subscriber loop.
//!
//! redis-rs calls the push sender from the task that drives every shard connection, so the
//! sender must not wait; it only tries to queue. A push that finds the queue full is
//! dropped and counted, and what it leaves in doubt is recorded as lost: a user's message
//! or `SUNSUBSCRIBE` makes that user's subscription lost (subscribed again, then repaired
//! from PostgreSQL, as for a moved slot); anything else (a control or fan-out message, a
//! dropped connection) makes every subscription lost, as for a dropped shard connection. Every
//! message is in PostgreSQL before it is published, so a burst the node cannot keep up
//! with costs a repair, not memory without bound.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use redis::aio::{AsyncPushSender, SendError};
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc};

use crate::cluster::dispatch::{Dispatch, LocalSink};
use crate::metrics as m;
use crate::model::UserId;

/// Pushes waiting for the reader, at most: as many as the publisher's queue holds.
pub(in crate::cluster) const PUSH_QUEUE: usize = 100_000;

/// Subscriptions lost without being asked (ended by the cluster, or whose pushes were
/// dropped), and a wake-up for the subscriber loop.
#[derive(Default)]
pub(super) struct Lost {
    state: Mutex<Taken>,
    notify: Notify,
}

/// What was lost since the last [`Lost::take`].
#[derive(Default)]
pub(super) struct Taken {
    /// Every subscription is in doubt.
    pub(super) all: bool,
    pub(super) users: HashSet<UserId>,
}

impl Lost {
    /// Every subscription is in doubt.
    pub(super) fn all(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).all = true;
        self.notify.notify_one();
    }

    /// `user`'s subscription is in doubt.
    pub(super) fn user(&self, user: UserId) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .users
            .insert(user);
        self.notify.notify_one();
    }

    /// What was lost since the last call.
    pub(super) fn take(&self) -> Taken {
        std::mem::take(&mut *self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Completes when something was lost (or had been since the last wake-up).
    pub(super) async fn notified(&self) {
        self.notify.notified().await
    }
}

/// The push sender given to redis-rs.
#[derive(Clone)]
pub(super) struct PushQueue {
    tx: mpsc::Sender<PushInfo>,
    dispatch: Arc<Dispatch>,
    lost: Arc<Lost>,
}

/// A push queue of `capacity` and its receiving end, for [`read`].
pub(super) fn queue(
    capacity: usize,
    dispatch: Arc<Dispatch>,
    lost: Arc<Lost>,
) -> (PushQueue, mpsc::Receiver<PushInfo>) {
    let (tx, rx) = mpsc::channel(capacity);
    (PushQueue { tx, dispatch, lost }, rx)
}

impl AsyncPushSender for PushQueue {
    fn send(&self, push: PushInfo) -> Result<(), SendError> {
        // The reader acts on these only (not on the replies to our own SSUBSCRIBEs).
        if !matches!(
            push.kind,
            PushKind::SMessage | PushKind::SUnsubscribe | PushKind::Disconnection
        ) {
            return Ok(());
        }
        match self.tx.try_send(push) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(push)) => {
                metrics::counter!(m::REDIS_PUSHES_DROPPED).increment(1);
                let user = match push.kind {
                    PushKind::SMessage | PushKind::SUnsubscribe => {
                        channel_of(&push).and_then(|c| self.dispatch.user_of(c))
                    }
                    _ => None,
                };
                match user {
                    Some(user) => self.lost.user(user),
                    None => self.lost.all(),
                }
                Ok(())
            }
            Err(TrySendError::Closed(_)) => Err(SendError),
        }
    }
}

/// The channel a push names.
fn channel_of(push: &PushInfo) -> Option<&str> {
    match push.data.first() {
        Some(Value::BulkString(c)) => std::str::from_utf8(c).ok(),
        _ => None,
    }
}

/// Reads the queued pushes of every shard connection: messages to the dispatch, ended
/// subscriptions and dropped connections to [`Lost`].
pub(super) async fn read(
    mut rx: mpsc::Receiver<PushInfo>,
    sink: Weak<dyn LocalSink>,
    dispatch: Arc<Dispatch>,
    lost: Arc<Lost>,
) {
    while let Some(push) = rx.recv().await {
        let Some(sink) = sink.upgrade() else { return };
        match (&push.kind, channel_of(&push)) {
            (PushKind::SMessage, Some(channel)) => {
                let Some(Value::BulkString(payload)) = push.data.get(1) else {
                    continue;
                };
                dispatch.on_message(&*sink, channel, Bytes::copy_from_slice(payload));
            }
            (PushKind::SUnsubscribe, Some(channel)) => {
                // Ours (the user left) or the cluster's (the slot moved): only a user still
                // wanted here needs the channel back.
                if channel == dispatch.control || dispatch.is_fanout(channel) {
                    lost.all();
                } else if let Some(user) = dispatch.user_of(channel)
                    && sink.wants(user)
                {
                    lost.user(user);
                }
            }
            (PushKind::Disconnection, _) => lost.all(),
            _ => {}
        }
    }
}
