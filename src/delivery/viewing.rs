//! Viewing reads, stored before they are shown. A device viewing a conversation reads
//! every message that reaches it, and whatever HTTP later says about unread counts, on any
//! node, must not be older than the `unread_count_update` pushed (DECISIONS.md
//! "consistency of reads"); HTTP reads PostgreSQL.
//!
//! So [`apply`](super::apply) hands each such read cursor move to the [`Persister`] (a
//! ticket) and *holds* the user's outbound frames ([`Hold`]): while held, every frame for
//! that user, whatever it is, is queued in order behind the ones that carry the new count.
//! The persister's worker stores everything queued with one statement per batch (group
//! commit; a conversation of a user appears once, at its highest seq), then releases the
//! holds of those users whose tickets are stored and tells their other nodes
//! (`ReadCursor`). A failing store is retried with backoff; a hold older than
//! [`HOLD_MAX`], or one that outgrows [`HOLD_FRAMES`], is released anyway and counted
//! (frames are never dropped for it). The periodic flush still stores delivery cursors and
//! any read move the persister gave up on.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::apply::push_now;
use super::{Hub, Outbound, UserEntry};
use crate::domain::routing::Routed;
use crate::metrics as m;
use crate::model::{ConversationId, UserId};
use crate::store::members::Position;

/// A hold is released after this long even if the read cursor is not stored yet.
pub const HOLD_MAX: Duration = Duration::from_secs(2);
/// Frames held for one user before the hold is released anyway.
pub const HOLD_FRAMES: usize = super::SYNC_BUFFER;
/// One attempt to store a batch may take this long.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts before a batch is left to the periodic flush.
const ATTEMPTS: u32 = 10;

/// Frames held for one user until the persister has stored its viewing reads.
pub struct Hold {
    /// Released once every ticket up to this one is stored (a later hold extends it).
    until: u64,
    /// When the first frame was held.
    since: Instant,
    /// Held frames in order, each with the connection to skip.
    frames: Vec<(Outbound, Option<u64>)>,
    /// Told when the hold is released (a sync that writes to the queues itself waits).
    waiters: Vec<oneshot::Sender<()>>,
}

/// Why a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    /// The read cursors are stored.
    Stored,
    /// It lasted longer than [`HOLD_MAX`], or the persister gave up.
    Timeout,
    /// It held [`HOLD_FRAMES`] frames.
    Overflow,
}

/// Holds `entry`'s frames until `ticket` is stored.
pub fn hold(entry: &mut UserEntry, ticket: u64) {
    match &mut entry.hold {
        Some(h) => h.until = h.until.max(ticket),
        None => {
            entry.hold = Some(Hold {
                until: ticket,
                since: Instant::now(),
                frames: Vec::new(),
                waiters: Vec::new(),
            })
        }
    }
}

/// Queues a frame behind the hold, if there is one; otherwise gives it back.
pub fn held(
    entry: &mut UserEntry,
    item: Outbound,
    skip: Option<u64>,
) -> Option<(Outbound, Option<u64>)> {
    let Some(h) = &mut entry.hold else {
        return Some((item, skip));
    };
    if h.since.elapsed() >= HOLD_MAX {
        // The persister is stuck (it releases overdue holds itself while it retries).
        release(entry, Release::Timeout);
        return Some((item, skip));
    }
    h.frames.push((item, skip));
    if h.frames.len() >= HOLD_FRAMES {
        release(entry, Release::Overflow);
    }
    None
}

/// A receiver completed when `entry`'s current hold ends; `None` when nothing is held.
pub fn wait_released(entry: &mut UserEntry) -> Option<oneshot::Receiver<()>> {
    let h = entry.hold.as_mut()?;
    let (tx, rx) = oneshot::channel();
    h.waiters.push(tx);
    Some(rx)
}

/// Every ticket up to `ticket` is stored: ends `entry`'s hold unless a later ticket
/// extended it.
fn stored(entry: &mut UserEntry, ticket: u64) {
    if entry.hold.as_ref().is_some_and(|h| h.until <= ticket) {
        release(entry, Release::Stored);
    }
}

/// Ends `entry`'s hold: its frames go to the devices in order.
fn release(entry: &mut UserEntry, why: Release) {
    let Some(h) = entry.hold.take() else {
        return;
    };
    metrics::histogram!(m::HOLD_SECONDS).record(h.since.elapsed().as_secs_f64());
    match why {
        Release::Stored => {}
        Release::Timeout => metrics::counter!(m::HOLDS_FORCED, "reason" => "timeout").increment(1),
        Release::Overflow => {
            metrics::counter!(m::HOLDS_FORCED, "reason" => "overflow").increment(1)
        }
    }
    for (item, skip) in h.frames {
        push_now(entry, item, skip);
    }
    for w in h.waiters {
        let _ = w.send(());
    }
}

/// Viewing reads waiting to be stored, and the worker that stores them.
#[derive(Default)]
pub struct Persister {
    queue: Mutex<Queue>,
    wake: Notify,
    started: AtomicBool,
}

#[derive(Default)]
struct Queue {
    /// Highest read seq per (user, conversation) not yet taken by the worker.
    pending: HashMap<(UserId, ConversationId), i64>,
    /// The last ticket handed out.
    ticket: u64,
}

impl Persister {
    /// Queues `user`'s read cursor move in `conversation` to `seq`; returns its ticket.
    /// Starts the worker on first use.
    pub fn enqueue(
        &self,
        hub: &Weak<Hub>,
        user: UserId,
        conversation: ConversationId,
        seq: i64,
    ) -> u64 {
        let ticket = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let s = q.pending.entry((user, conversation)).or_insert(seq);
            *s = (*s).max(seq);
            q.ticket += 1;
            q.ticket
        };
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(hub.clone()));
        }
        self.wake.notify_one();
        ticket
    }

    /// Everything queued, and the last ticket it covers.
    fn take(&self) -> (Vec<Position>, u64) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let batch = q
            .pending
            .drain()
            .map(|((user_id, conversation_id), seq)| Position {
                conversation_id,
                user_id,
                seq,
            })
            .collect();
        (batch, q.ticket)
    }

    /// Users with moves queued but not taken yet.
    fn queued_users(&self) -> Vec<UserId> {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.pending.keys().map(|(u, _)| *u).collect()
    }
}

/// The worker: one batch at a time, for as long as the hub lives.
async fn run(hub: Weak<Hub>) {
    loop {
        let Some(persister) = hub.upgrade().map(|h| h.viewing.clone()) else {
            return;
        };
        persister.wake.notified().await;
        let (batch, ticket) = persister.take();
        if batch.is_empty() {
            continue;
        }
        let Some(hub) = hub.upgrade() else {
            return;
        };
        hub.store_viewing(batch, ticket).await;
    }
}

impl Hub {
    /// Stores one batch of viewing reads, retrying; then releases the holds it covers and
    /// publishes the moves to the users' other nodes.
    async fn store_viewing(&self, batch: Vec<Position>, ticket: u64) {
        metrics::histogram!(m::VIEWING_READ_BATCH).record(batch.len() as f64);
        let users: Vec<UserId> = batch
            .iter()
            .map(|p| p.user_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let stored = tokio::time::timeout(STORE_TIMEOUT, async {
                let conn = self.store.conn().await?;
                crate::store::members::advance_read_seq(&conn, &batch).await
            })
            .await;
            let error = match stored {
                Ok(Ok(())) => break,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {STORE_TIMEOUT:?}"),
            };
            attempt += 1;
            metrics::counter!(m::DB_ERRORS, "op" => "viewing_reads").increment(1);
            tracing::warn!(attempt, rows = batch.len(), %error, "storing viewing reads failed; retrying");
            if started.elapsed() >= HOLD_MAX {
                // Frames are not kept from the devices for longer than this.
                let mut overdue = users.clone();
                overdue.extend(self.viewing.queued_users());
                self.release_overdue(&overdue);
            }
            if attempt >= ATTEMPTS {
                tracing::error!(
                    rows = batch.len(),
                    "viewing reads left to the periodic flush"
                );
                for user in &users {
                    let mut shard = self.shard(*user);
                    if let Some(e) = shard.users.get_mut(user) {
                        release(e, Release::Timeout);
                    }
                    shard.dirty.insert(*user);
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
        }
        metrics::counter!(m::VIEWING_READS_STORED).increment(batch.len() as u64);
        for p in &batch {
            let mut shard = self.shard(p.user_id);
            let Some(e) = shard.users.get_mut(&p.user_id) else {
                continue;
            };
            if let Some(c) = e.convs.get_mut(&p.conversation_id) {
                c.read_persisted = c.read_persisted.max(p.seq);
            }
            stored(e, ticket);
        }
        for p in &batch {
            let env = self.services.envelope(&Routed::ReadCursor {
                conversation_id: p.conversation_id,
                read_seq: p.seq,
                last_seq: p.seq,
            });
            // Other nodes holding devices of this user; our own copy is dropped by origin.
            self.bus.route_remote(p.user_id, env).await;
        }
    }

    /// Releases the holds of `users` that are older than [`HOLD_MAX`].
    fn release_overdue(&self, users: &[UserId]) {
        for user in users {
            let mut shard = self.shard(*user);
            if let Some(e) = shard.users.get_mut(user)
                && e.hold
                    .as_ref()
                    .is_some_and(|h| h.since.elapsed() >= HOLD_MAX)
            {
                release(e, Release::Timeout);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use bytes::Bytes;
    use tokio::sync::mpsc;

    use super::*;
    use crate::delivery::apply::push_all;
    use crate::delivery::{Device, Phase, rate};

    fn entry(devices: &[(u64, mpsc::Sender<Outbound>)]) -> UserEntry {
        UserEntry {
            devices: devices
                .iter()
                .map(|(id, tx)| Device {
                    id: *id,
                    tx: tx.clone(),
                    ack_mode: false,
                    viewing: None,
                    dead: false,
                    kill: Arc::default(),
                })
                .collect(),
            phase: Phase::Live,
            convs: HashMap::new(),
            subscribed: true,
            sub_waiters: Vec::new(),
            sync_waiters: Vec::new(),
            send_budget: rate::Bucket::full(),
            chatter: rate::Chatter::default(),
            hold: None,
        }
    }

    fn text(s: &'static str) -> Outbound {
        Outbound::Text(Bytes::from_static(s.as_bytes()), None)
    }

    fn received(rx: &mut mpsc::Receiver<Outbound>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(Outbound::Text(b, _)) = rx.try_recv() {
            out.push(String::from_utf8(b.to_vec()).unwrap());
        }
        out
    }

    #[test]
    fn held_frames_go_out_in_order_once_the_last_ticket_is_stored() {
        let (tx1, mut rx1) = mpsc::channel(16);
        let (tx2, mut rx2) = mpsc::channel(16);
        let mut e = entry(&[(1, tx1), (2, tx2)]);
        push_all(&mut e, text("before"), None);
        hold(&mut e, 3);
        push_all(&mut e, text("count"), None);
        push_all(&mut e, text("typing"), Some(1));
        hold(&mut e, 5);
        push_all(&mut e, text("later"), None);
        assert_eq!(received(&mut rx1), ["before"]);
        assert_eq!(received(&mut rx2), ["before"]);
        let mut waiter = wait_released(&mut e).expect("held");
        stored(&mut e, 4);
        assert!(received(&mut rx1).is_empty(), "ticket 5 extended the hold");
        assert!(waiter.try_recv().is_err());
        stored(&mut e, 5);
        assert_eq!(received(&mut rx1), ["count", "later"], "the skip holds too");
        assert_eq!(received(&mut rx2), ["count", "typing", "later"]);
        assert!(waiter.try_recv().is_ok());
        assert!(wait_released(&mut e).is_none());
        push_all(&mut e, text("after"), None);
        assert_eq!(received(&mut rx2), ["after"]);
    }

    #[test]
    fn a_hold_that_fills_up_is_released_without_losing_frames() {
        let (tx, mut rx) = mpsc::channel(HOLD_FRAMES + 10);
        let mut e = entry(&[(1, tx)]);
        hold(&mut e, 1);
        for _ in 0..HOLD_FRAMES - 1 {
            push_all(&mut e, text("x"), None);
        }
        assert!(received(&mut rx).is_empty());
        push_all(&mut e, text("y"), None);
        let got = received(&mut rx);
        assert_eq!(got.len(), HOLD_FRAMES);
        assert_eq!(got.last().map(String::as_str), Some("y"));
        assert!(e.hold.is_none());
        stored(&mut e, 1);
        push_all(&mut e, text("z"), None);
        assert_eq!(received(&mut rx), ["z"]);
    }
}
