//! Reading what a user has not received from PostgreSQL: the offline drain when the first
//! device connects, and finishing a sync (the drain's, or a repair's from `repair`). Both
//! end by replaying the live events buffered meanwhile, deduplicated by seq.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::apply::{Shared, push_frame};
use super::missing::{self, Missing, Want};
use super::{Cursor, Effects, Hub, MessageTag, Outbound, Phase, Shard, close, viewing};
use crate::domain::events;
use crate::metrics as m;
use crate::model::{ConversationId, UserId};
use crate::store::members::Membership;

impl Hub {
    /// The first device of `user` connected: subscribe, drain by cursor, go live.
    pub(super) async fn initial_sync(self: std::sync::Arc<Self>, user: UserId) {
        self.wait_flushed(user).await;
        let (tx, rx) = oneshot::channel();
        let already = {
            let mut shard = self.shard(user);
            match shard.users.get_mut(&user) {
                None => return,
                Some(e) if e.subscribed => true,
                Some(e) => {
                    e.sub_waiters.push(tx);
                    false
                }
            }
        };
        if !already
            && tokio::time::timeout(Duration::from_secs(3), rx)
                .await
                .is_err()
        {
            // Redis is slow or down: drain from PostgreSQL anyway; the resubscription after
            // Redis returns repairs whatever was published meanwhile.
            tracing::warn!(%user, "subscription not confirmed in time; draining anyway");
        }
        let limit = self.services.settings().offline_max_per_connect as usize;
        let result = async {
            let memberships = missing::memberships(&self.store, &[user]).await?;
            let wants: Vec<Want> = memberships
                .iter()
                .map(|m| Want {
                    conversation_id: m.conversation_id,
                    after: m.delivered_seq,
                    last_seq: m.last_seq,
                })
                .collect();
            let missing = missing::missing(&self.store, &wants, limit).await?;
            Ok::<_, crate::error::Error>((memberships, missing))
        }
        .await;
        match result {
            Ok((memberships, missing)) => {
                let n = missing.messages.len();
                self.finish_sync(user, &memberships, missing, true).await;
                metrics::counter!(m::OFFLINE_DELIVERED).increment(n as u64);
                // The newest unread notification, whenever there is one (DECISIONS.md).
                match self.services.latest_unread_frame(user).await {
                    Ok(Some(frame)) => {
                        if let Some(entry) = self.shard(user).users.get_mut(&user) {
                            push_frame(entry, frame);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(%user, error = %e, "latest notification lookup failed")
                    }
                }
            }
            Err(e) => {
                tracing::error!(%user, error = %e, "offline drain failed; retrying");
                metrics::counter!(m::DB_ERRORS, "op" => "offline_drain").increment(1);
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.resync(vec![user]);
            }
        }
    }

    /// Waits until a previous session's cursors for `user` are stored.
    async fn wait_flushed(&self, user: UserId) {
        let rx = self
            .flushing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user)
            .cloned();
        if let Some(mut rx) = rx {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|done| *done)).await;
        }
    }

    /// Sends what was read from PostgreSQL (awaiting queue space, so a large drain slows
    /// down instead of overflowing the queue), replays the buffered live events and goes
    /// live. Live events stay buffered until then, so the order holds.
    pub(super) async fn finish_sync(
        &self,
        user: UserId,
        memberships: &[Membership],
        missing: Missing,
        offline: bool,
    ) {
        // 1. Cursors, and which messages are new to this user's devices here.
        let mut outgoing: Vec<(bytes::Bytes, MessageTag)> = Vec::new();
        let mut touched: HashMap<ConversationId, (i64, crate::model::Timestamp, Option<String>)> =
            HashMap::new();
        let (senders, held): (Vec<(mpsc::Sender<Outbound>, Arc<super::Kill>)>, _) = {
            let mut shard = self.shard(user);
            let Some(entry) = shard.users.get_mut(&user) else {
                return;
            };
            for m in memberships {
                let c = entry
                    .convs
                    .entry(m.conversation_id)
                    .or_insert(Cursor::at(m.delivered_seq, m.read_seq));
                c.read = c.read.max(m.read_seq);
                c.read_persisted = c.read_persisted.max(m.read_seq);
            }
            for msg in &missing.messages {
                let Some(c) = entry.convs.get_mut(&msg.conversation_id) else {
                    continue;
                };
                if msg.seq <= c.pushed {
                    continue;
                }
                c.pushed = msg.seq;
                if msg.sender_id == user && msg.seq > c.read {
                    c.read = msg.seq;
                }
                let frame = if offline {
                    events::offline_message(msg)
                } else {
                    events::message(msg, true)
                };
                outgoing.push((
                    frame,
                    MessageTag {
                        conversation_id: msg.conversation_id,
                        seq: msg.seq,
                        created_at: msg.created_at,
                    },
                ));
                touched.insert(
                    msg.conversation_id,
                    (
                        msg.seq,
                        msg.created_at,
                        events::preview(&msg.message_type, msg.content.as_deref(), msg.is_recalled),
                    ),
                );
            }
            let senders = entry
                .devices
                .iter()
                .filter(|d| !d.dead)
                .map(|d| (d.tx.clone(), d.kill.clone()))
                .collect();
            (senders, viewing::wait_released(entry))
        };

        // 2. Send them, waiting for queue space (a device stuck for 10 s is closed), after
        // the frames held for a viewing read from before the sync (they come first).
        if let Some(released) = held {
            let _ = tokio::time::timeout(viewing::HOLD_MAX * 2, released).await;
        }
        for (tx, kill) in &senders {
            for (frame, tag) in &outgoing {
                let sent = tokio::time::timeout(
                    Duration::from_secs(10),
                    tx.send(Outbound::Text(frame.clone(), Some(*tag))),
                )
                .await;
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => {
                        metrics::counter!(m::QUEUE_FULL_CLOSES).increment(1);
                        kill.fire(close::TRY_AGAIN_LATER, "outbound queue full");
                        break;
                    }
                }
            }
        }

        // 3. Announce what was left out, replay the buffer, go live.
        let mut effects = Effects::default();
        {
            let mut shard = self.shard(user);
            let Shard { users, dirty, .. } = &mut *shard;
            let Some(entry) = users.get_mut(&user) else {
                return;
            };
            // Older messages left out were announced; the cursor moves past them.
            for t in &missing.truncated {
                if let Some(c) = entry.convs.get_mut(&t.conversation_id) {
                    c.pushed = c.pushed.max(t.newest_skipped_seq);
                    c.written = c.written.max(t.newest_skipped_seq);
                    dirty.insert(user);
                }
            }
            if !missing.truncated.is_empty() {
                push_frame(entry, events::offline_truncated(&missing.truncated));
            }
            if !offline {
                for (conv, (seq, at, preview)) in touched {
                    let read = entry.convs.get(&conv).map_or(0, |c| c.read);
                    let unread = (seq - read).max(0);
                    push_frame(
                        entry,
                        events::conversation_update(conv, Some(at), preview.as_deref(), unread),
                    );
                    push_frame(entry, events::unread_count_update(conv, unread));
                }
            }
            let (buffer, overflowed) = match std::mem::replace(&mut entry.phase, Phase::Live) {
                Phase::Syncing { buffer, overflowed } => (buffer, overflowed),
                Phase::Live => (Vec::new(), false),
            };
            for (origin, routed) in buffer {
                let e = self.apply(user, entry, origin, &routed, &mut Shared::default());
                effects.resync |= e.resync;
                if matches!(entry.phase, Phase::Syncing { .. }) {
                    // A gap inside the buffer: the rest is re-read anyway.
                    break;
                }
            }
            if matches!(entry.phase, Phase::Live) {
                for w in entry.sync_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            if overflowed && matches!(entry.phase, Phase::Live) {
                entry.phase = Phase::Syncing {
                    buffer: Vec::new(),
                    overflowed: false,
                };
                effects.resync = true;
            }
        }
        if effects.resync {
            self.resync(vec![user]);
        }
    }
}
