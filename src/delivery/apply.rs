//! Applying one routed event to a live user: dedupe and gap detection by seq, exact unread
//! counts from the local read cursor, viewing auto-read (stored before it is shown, see
//! `viewing`), and pushing frames to the devices.
//!
//! One event often reaches many local users (a group message, decoded once per node):
//! [`Shared`] holds what their frames have in common, so the per-recipient frames
//! (`conversation_update`, `unread_count_update`) come from a template built once.

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;

use super::{Cursor, Effects, Hub, MessageTag, Outbound, Phase, UserEntry, close, viewing};
use crate::domain::events::{self, CountFrames};
use crate::domain::routing::Routed;
use crate::metrics as m;
use crate::model::{ConversationId, Timestamp, UserId};

/// What the recipients of one routed event on this node share: the templates of their
/// count frames, built on first use.
#[derive(Default)]
pub(super) struct Shared {
    counts: Option<CountFrames>,
}

impl Shared {
    /// The count frames of this event (it names one conversation and its last message).
    fn counts(
        &mut self,
        conversation_id: ConversationId,
        last_message_time: Option<Timestamp>,
        preview: Option<&str>,
    ) -> &mut CountFrames {
        self.counts
            .get_or_insert_with(|| CountFrames::new(conversation_id, last_message_time, preview))
    }
}

impl Hub {
    /// Applies `routed` to a live user (shard lock held by the caller); `shared` is the
    /// same for every user this event is applied to.
    pub(super) fn apply(
        &self,
        user: UserId,
        entry: &mut UserEntry,
        origin: u64,
        routed: &Routed,
        shared: &mut Shared,
    ) -> Effects {
        let mut effects = Effects::default();
        match routed {
            &Routed::Message {
                conversation_id,
                seq,
                sender_id,
                created_at,
                ref preview,
                ref frame,
            } => {
                let c = entry.convs.entry(conversation_id).or_insert_with(|| {
                    // A conversation that began after this user connected: in order.
                    let before = seq - 1;
                    Cursor::at(before, 0)
                });
                if seq <= c.pushed {
                    return effects;
                }
                if seq > c.pushed + 1 {
                    tracing::debug!(%user, conversation = %conversation_id, seq, pushed = c.pushed, "gap in live delivery; repairing");
                    // A gap: something was missed. Buffer this and read the rest from
                    // PostgreSQL.
                    entry.phase = Phase::Syncing {
                        buffer: vec![(origin, routed.clone())],
                        overflowed: false,
                    };
                    effects.resync = true;
                    return effects;
                }
                c.pushed = seq;
                let tag = Some(MessageTag {
                    conversation_id,
                    seq,
                    created_at,
                });
                if sender_id == user {
                    if seq > c.read {
                        c.read = seq;
                        c.read_persisted = c.read_persisted.max(seq);
                    }
                    push_all(entry, Outbound::Text(frame.clone(), tag), None);
                    return effects;
                }
                let viewing = entry
                    .devices
                    .iter()
                    .any(|d| !d.dead && d.viewing == Some(conversation_id));
                let unread = if viewing {
                    // Read by the viewing device: stored before the count is shown (the
                    // frames below wait behind the hold), so HTTP never shows an older one.
                    c.read = seq;
                    let ticket = self.viewing.enqueue(&self.me, user, conversation_id, seq);
                    viewing::hold(entry, ticket);
                    0
                } else {
                    (seq - c.read).max(0)
                };
                let counts = shared.counts(conversation_id, Some(created_at), preview.as_deref());
                push_all(
                    entry,
                    Outbound::Text(counts.conversation_update(unread), None),
                    None,
                );
                push_all(
                    entry,
                    Outbound::Text(counts.unread_count_update(unread), None),
                    None,
                );
                push_all(entry, Outbound::Text(frame.clone(), tag), None);
            }
            Routed::Frame { frame, except } => {
                let skip = (origin == self.origin && *except != 0).then_some(*except);
                push_all(entry, Outbound::Text(frame.clone(), None), skip);
            }
            Routed::Presence {
                conversation_id,
                frame,
            } => {
                // Only once the conversation has reached this user: a brand-new private
                // conversation's first message comes before the partner's presence.
                if entry
                    .convs
                    .get(conversation_id)
                    .is_some_and(|c| c.pushed >= 1)
                {
                    push_all(entry, Outbound::Text(frame.clone(), None), None);
                } else {
                    metrics::counter!(m::PRESENCE_DROPPED).increment(1);
                }
            }
            &Routed::ReadCursor {
                conversation_id,
                read_seq,
                last_seq,
            } => {
                let c = entry.convs.entry(conversation_id).or_default();
                c.read = c.read.max(read_seq);
                c.read_persisted = c.read_persisted.max(read_seq);
                let unread = (c.pushed.max(last_seq) - c.read).max(0);
                push_all(
                    entry,
                    Outbound::Text(events::unread_count_update(conversation_id, unread), None),
                    None,
                );
            }
            &Routed::Recall {
                conversation_id,
                message_id,
                last_seq,
                last_message_time,
                ref preview,
            } => {
                let c = entry
                    .convs
                    .get(&conversation_id)
                    .copied()
                    .unwrap_or_default();
                let unread = (c.pushed.max(last_seq) - c.read).max(0);
                push_all(
                    entry,
                    Outbound::Text(events::recalled(conversation_id, message_id), None),
                    None,
                );
                let counts = shared.counts(conversation_id, last_message_time, preview.as_deref());
                push_all(
                    entry,
                    Outbound::Text(counts.conversation_update(unread), None),
                    None,
                );
            }
            Routed::Logout => {
                for d in entry.devices.iter_mut().filter(|d| !d.dead) {
                    d.dead = true;
                    d.kill.fire(close::NORMAL, "logged out");
                }
            }
            &Routed::Joined {
                conversation_id,
                last_seq,
            } => {
                entry
                    .convs
                    .entry(conversation_id)
                    .or_insert(Cursor::at(last_seq, last_seq));
            }
            Routed::Left { conversation_id } => {
                entry.convs.remove(conversation_id);
            }
        }
        effects
    }
}

/// Pushes a frame to every live device except `skip`, behind the frames held for a
/// viewing read if there are any (so the order holds).
pub(super) fn push_all(entry: &mut UserEntry, item: Outbound, skip: Option<u64>) {
    if let Some((item, skip)) = viewing::held(entry, item, skip) {
        push_now(entry, item, skip);
    }
}

/// Pushes a frame to every live device except `skip` now; a device whose queue is full is
/// closed with 1013 (what it missed comes back by cursor when it reconnects).
pub(super) fn push_now(entry: &mut UserEntry, item: Outbound, skip: Option<u64>) {
    let live = entry
        .devices
        .iter()
        .filter(|d| !d.dead && Some(d.id) != skip)
        .count();
    let mut remaining = live;
    let mut item = Some(item);
    for d in entry.devices.iter_mut() {
        if d.dead || Some(d.id) == skip {
            continue;
        }
        remaining -= 1;
        let this = if remaining == 0 {
            item.take().expect("one item per device")
        } else {
            clone_outbound(item.as_ref().expect("still there"))
        };
        match d.tx.try_send(this) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                d.dead = true;
                metrics::counter!(m::QUEUE_FULL_CLOSES).increment(1);
                d.kill.fire(close::TRY_AGAIN_LATER, "outbound queue full");
            }
            Err(TrySendError::Closed(_)) => d.dead = true,
        }
    }
}

fn clone_outbound(o: &Outbound) -> Outbound {
    match o {
        Outbound::Text(b, tag) => Outbound::Text(b.clone(), *tag),
        Outbound::Pong(b) => Outbound::Pong(b.clone()),
    }
}

/// An untagged frame pushed to all devices of a user, used by the sync paths.
pub(super) fn push_frame(entry: &mut UserEntry, frame: Bytes) {
    push_all(entry, Outbound::Text(frame, None), None);
}
