//! Gap repairs, bounded and batched across users. A user whose live delivery has a gap (a
//! missed seq, a lost Redis subscription, a dropped push) is put into *syncing* (live
//! events buffered) and queued here, once however often it is asked for. One worker per
//! node repairs the queued users in rounds of at most [`ROUND`]: one query for their
//! memberships and one read of what they all miss ([`missing::missing_many`], a query per
//! chunk of conversations, not per user), then each user's sync is finished (sent, buffer
//! replayed) concurrently within the round. So however many users need repair at once,
//! PostgreSQL sees a few batched reads at a time, never one query per user.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::missing::{self, Want};
use super::{Hub, Phase};
use crate::metrics as m;
use crate::model::UserId;
use crate::store::members::Membership;

/// Users repaired per round (one memberships query, one batched read of what they miss).
const ROUND: usize = 500;

/// Users waiting for a repair, in order, each once.
#[derive(Default)]
pub struct Repairs {
    queue: Mutex<Queue>,
    wake: Notify,
    started: AtomicBool,
}

#[derive(Default)]
struct Queue {
    order: Vec<UserId>,
    queued: HashSet<UserId>,
}

impl Repairs {
    /// The next round's users (at most [`ROUND`]); wakes the worker again if more wait.
    fn take(&self) -> Vec<UserId> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.order.len().min(ROUND);
        let round: Vec<UserId> = q.order.drain(..n).collect();
        for u in &round {
            q.queued.remove(u);
        }
        if !q.order.is_empty() {
            self.wake.notify_one();
        }
        round
    }
}

impl Hub {
    /// Repairs `users` from PostgreSQL (after a gap, or for everyone after Redis came back):
    /// their live events are buffered from now on, and the worker reads what they miss.
    pub(super) fn resync(&self, users: Vec<UserId>) {
        for user in &users {
            let mut shard = self.shard(*user);
            if let Some(e) = shard.users.get_mut(user)
                && matches!(e.phase, Phase::Live)
            {
                e.phase = Phase::Syncing {
                    buffer: Vec::new(),
                    overflowed: false,
                };
            }
        }
        {
            let mut q = self.repairs.queue.lock().unwrap_or_else(|e| e.into_inner());
            for user in users {
                if q.queued.insert(user) {
                    q.order.push(user);
                }
            }
        }
        if !self.repairs.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(self.me.clone()));
        }
        self.repairs.wake.notify_one();
    }

    /// One round: batched reads for `users`, then every user's sync finished.
    async fn repair_round(self: Arc<Self>, users: Vec<UserId>) {
        metrics::histogram!(m::REPAIR_ROUND_USERS).record(users.len() as f64);
        let limit = self.services.settings().offline_max_per_connect.max(1) as usize;
        let mut attempt = 0u32;
        let memberships = loop {
            match missing::memberships(&self.store, &users).await {
                Ok(ms) => break ms,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "resync read failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt.min(10) as u64)).await;
                }
            }
        };
        let mut by_user: HashMap<UserId, Vec<Membership>> = HashMap::new();
        for m in memberships {
            by_user.entry(m.user_id).or_default().push(m);
        }
        // What each user has here (its devices may be ahead of the stored cursor).
        let mut wants: Vec<(UserId, Vec<Want>)> = Vec::with_capacity(users.len());
        for user in &users {
            let ms = by_user.get(user).map_or(&[][..], Vec::as_slice);
            let shard = self.shard(*user);
            let Some(e) = shard.users.get(user) else {
                continue;
            };
            let w = ms
                .iter()
                .map(|m| Want {
                    conversation_id: m.conversation_id,
                    after: e
                        .convs
                        .get(&m.conversation_id)
                        .map_or(m.delivered_seq, |c| c.pushed),
                    last_seq: m.last_seq,
                })
                .collect();
            wants.push((*user, w));
        }
        let mut missing = loop {
            match missing::missing_many(&self.store, &wants, limit).await {
                Ok(mi) => break mi,
                Err(e) => {
                    tracing::warn!(users = wants.len(), error = %e, "resync fetch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let mut finishing = tokio::task::JoinSet::new();
        for (user, _) in wants {
            let missed = missing.remove(&user).unwrap_or_default();
            metrics::counter!(m::GAP_REPAIRS).increment(missed.messages.len() as u64);
            let ms = by_user.remove(&user).unwrap_or_default();
            let hub = self.clone();
            finishing.spawn(async move { hub.finish_sync(user, &ms, missed, false).await });
        }
        while finishing.join_next().await.is_some() {}
    }
}

/// The repair worker: one round at a time, for as long as the hub lives.
async fn run(hub: Weak<Hub>) {
    loop {
        let Some(repairs) = hub.upgrade().map(|h| h.repairs.clone()) else {
            return;
        };
        repairs.wake.notified().await;
        let users = repairs.take();
        if users.is_empty() {
            continue;
        }
        let Some(hub) = hub.upgrade() else {
            return;
        };
        hub.repair_round(users).await;
    }
}
