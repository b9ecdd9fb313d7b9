//! Delivery: this node's connected users and their devices (the hub), and the per-user
//! delivery state that makes delivery lossless and free of duplicates. It sits beside
//! `domain` (it uses the domain, `store` and `cluster`; the domain never uses it) and under
//! `ws`, which only moves frames between sockets and the hub.
//!
//! For each local user the hub keeps, per conversation, the highest seq pushed to the
//! user's devices (`pushed`), the highest written to a socket or acknowledged (`written`,
//! the delivery cursor, flushed to PostgreSQL in batches and when the last device leaves)
//! and the read cursor (`read`, so unread counts are computed here, exactly). A message
//! whose seq is not `pushed + 1` is either a duplicate (dropped) or follows a gap: the
//! user switches to *syncing*, live events are buffered, what is missing is read from
//! PostgreSQL, and the buffer is replayed. The first device of a user starts the same way
//! (subscribe first, then drain by cursor, then release live events), so nothing falls
//! between the offline drain and live delivery.
//!
//! Here: the hub, its per-user state, devices coming and going, and what arrives on the
//! user channels ([`LocalSink`]). `apply`: one live event (dedupe, gaps, unread counts).
//! `cursors`: delivery and read cursors, their confirmation and storage. `sync`: the
//! offline drain and the repair, with `missing` (what a user missed, read from
//! PostgreSQL). `viewing`: viewing reads stored before the frames that show them (the
//! user's frames are held meanwhile). `device`: a connection's queue, close switch and
//! bookkeeping. `rate`: the per-user send rate limit.

mod apply;
mod cursors;
mod device;
mod missing;
mod rate;
mod repair;
mod sync;
mod viewing;

pub use cursors::{CONFIRM, Cursor};
pub use device::{Device, Kill, MessageTag, Outbound, close};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use tokio::sync::{Notify, oneshot, watch};

use crate::cluster::bus::{Bus, LocalSink};
use crate::domain::Services;
use crate::domain::presence::Registered;
use crate::domain::routing::Routed;
use crate::metrics as m;
use crate::model::{ConversationId, UserId};
use crate::store::Store;

const SHARDS: usize = 64;
/// Live events buffered for one syncing user before the buffer is dropped and the user
/// is resynchronized from PostgreSQL instead.
const SYNC_BUFFER: usize = 10_000;

enum Phase {
    /// Live events are buffered until PostgreSQL has been read.
    Syncing {
        buffer: Vec<(u64, Routed)>,
        overflowed: bool,
    },
    Live,
}

struct UserEntry {
    devices: Vec<Device>,
    phase: Phase,
    convs: HashMap<ConversationId, Cursor>,
    subscribed: bool,
    sub_waiters: Vec<oneshot::Sender<()>>,
    /// Devices waiting for the current sync to finish before their handshake completes.
    sync_waiters: Vec<oneshot::Sender<()>>,
    send_budget: rate::Bucket,
    /// When heartbeat and typing last cost a Redis round trip.
    chatter: rate::Chatter,
    /// Outbound frames held until a viewing read is stored (see `viewing`).
    hold: Option<viewing::Hold>,
}

#[derive(Default)]
struct Shard {
    users: HashMap<UserId, UserEntry>,
    dirty: HashSet<UserId>,
    /// Send budgets of users without a device here, spent by HTTP forwards.
    away_budgets: HashMap<UserId, rate::Bucket>,
}

/// What the hub is built from; the composition root (`app.rs`) fills it in.
pub struct Deps {
    /// The product's rules (device registration, envelopes, notifications, control).
    pub services: Services,
    /// PostgreSQL: cursors stored, missed messages read.
    pub store: Store,
    /// Per-user channels: subscriptions and routing to this user's other nodes.
    pub bus: Bus,
}

/// The hub. Shared as `Arc<Hub>`.
pub struct Hub {
    shards: Box<[Mutex<Shard>]>,
    services: Services,
    store: Store,
    bus: Bus,
    origin: u64,
    next_conn: AtomicU64,
    connections: AtomicUsize,
    /// Session tasks still running (they outlive their device by the close handshake).
    sessions: AtomicUsize,
    sessions_done: Notify,
    /// Users whose last device left and whose cursors are being stored.
    flushing: Mutex<HashMap<UserId, watch::Receiver<bool>>>,
    /// Viewing reads waiting to be stored.
    viewing: Arc<viewing::Persister>,
    /// Users waiting for a gap repair.
    repairs: Arc<repair::Repairs>,
    me: Weak<Hub>,
}

/// Side effects decided under a shard lock and run after it is released.
#[derive(Default)]
struct Effects {
    /// Start a resync of the user.
    resync: bool,
}

impl Hub {
    /// A hub for this node.
    pub fn new(deps: Deps) -> Arc<Hub> {
        let origin = crate::cluster::bus::origin_of(&deps.services.config().node_id);
        Arc::new_cyclic(|me| Hub {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            services: deps.services,
            store: deps.store,
            bus: deps.bus,
            origin,
            next_conn: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
            sessions: AtomicUsize::new(0),
            sessions_done: Notify::new(),
            flushing: Mutex::new(HashMap::new()),
            viewing: Arc::default(),
            repairs: Arc::default(),
            me: me.clone(),
        })
    }

    fn arc(&self) -> Arc<Hub> {
        self.me.upgrade().expect("hub is alive while used")
    }

    fn shard(&self, user: UserId) -> MutexGuard<'_, Shard> {
        let i = (user.as_u128() % SHARDS as u128) as usize;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The domain services.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Adds a device. When it is the user's first on this node, the user's channel is
    /// subscribed and pending messages are drained before live events flow. The returned
    /// receiver completes when the device is live (the handshake waits for it, so whatever
    /// is committed after the client sees `101` arrives as a live `message`).
    pub fn add_device(&self, user: UserId, device: Device) -> oneshot::Receiver<()> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(m::WS_CONNECTIONS).increment(1.0);
        let (tx, rx) = oneshot::channel();
        let first = {
            let mut shard = self.shard(user);
            match shard.users.get_mut(&user) {
                Some(entry) => {
                    entry.devices.push(device);
                    match entry.phase {
                        Phase::Live => {
                            let _ = tx.send(());
                        }
                        Phase::Syncing { .. } => entry.sync_waiters.push(tx),
                    }
                    false
                }
                None => {
                    // A budget spent by HTTP forwards while the user had no device here.
                    let send_budget = shard
                        .away_budgets
                        .remove(&user)
                        .unwrap_or_else(rate::Bucket::full);
                    shard.users.insert(
                        user,
                        UserEntry {
                            devices: vec![device],
                            phase: Phase::Syncing {
                                buffer: Vec::new(),
                                overflowed: false,
                            },
                            convs: HashMap::new(),
                            subscribed: false,
                            sub_waiters: Vec::new(),
                            sync_waiters: vec![tx],
                            send_budget,
                            chatter: rate::Chatter::default(),
                            hold: None,
                        },
                    );
                    true
                }
            }
        };
        if first {
            self.bus.user_changed(user);
            tokio::spawn(self.arc().initial_sync(user));
        }
        rx
    }

    /// Removes a device; when it was the user's last here, stores the user's cursors
    /// before returning (so a reconnect anywhere finds them) and unsubscribes. `clean`: the
    /// connection closed with a close handshake, so what was written was received; otherwise
    /// only what was written long enough ago counts as delivered (see `cursors`).
    pub async fn remove_device(&self, user: UserId, conn: u64, clean: bool) {
        let removed = {
            let mut shard = self.shard(user);
            let Some(entry) = shard.users.get_mut(&user) else {
                return;
            };
            let before = entry.devices.len();
            entry.devices.retain(|d| d.id != conn);
            if entry.devices.len() == before {
                return;
            }
            if entry.devices.is_empty() {
                shard.dirty.remove(&user);
                shard.users.remove(&user)
            } else {
                None
            }
        };
        self.connections.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(m::WS_CONNECTIONS).decrement(1.0);
        let Some(entry) = removed else {
            return;
        };
        self.bus.user_changed(user);
        let (tx, rx) = watch::channel(false);
        self.flushing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user, rx);
        let mut convs = entry.convs;
        let (delivered, read) = cursors::to_store(
            user,
            &mut convs,
            if clean {
                cursors::Mode::All
            } else {
                cursors::Mode::Confirmed
            },
        );
        if let Err(e) = self.store_cursors(&delivered, &read).await {
            tracing::warn!(%user, error = %e, "could not store delivery cursors; the next connect may repeat messages");
        }
        self.flushing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&user);
        let _ = tx.send(true);
    }

    /// Registers every local device in presence again (after this node was reaped while
    /// alive) and announces the users who were taken offline.
    pub async fn reregister_presence(&self) {
        let devices: Vec<(UserId, u64)> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .users
                    .iter()
                    .flat_map(|(u, e)| {
                        e.devices
                            .iter()
                            .filter(|d| !d.dead)
                            .map(|d| (*u, d.id))
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for (user, conn) in devices {
            match self.services.register_device(user, conn).await {
                Ok(Registered::Accepted {
                    first_anywhere: true,
                }) => {
                    if let Err(e) = self.services.presence_changed(user, true).await {
                        tracing::warn!(%user, error = %e, "online announcement failed");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "presence re-registration failed");
                    return;
                }
            }
        }
    }

    /// Users with devices here.
    pub fn local_users(&self) -> Vec<UserId> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .users
                    .keys()
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl LocalSink for Hub {
    fn deliver(&self, user: UserId, origin: u64, body: Bytes) {
        self.deliver_many(&[user], origin, body);
    }

    /// Decodes the body once and applies it to each of `users` with devices here (a hash
    /// look-up skips the others); a user still syncing buffers it.
    fn deliver_many(&self, users: &[UserId], origin: u64, body: Bytes) {
        let Some(routed) = Routed::decode(body) else {
            tracing::debug!(users = users.len(), "malformed envelope dropped");
            return;
        };
        let mut shared = apply::Shared::default();
        let mut resync = Vec::new();
        for &user in users {
            let mut shard = self.shard(user);
            let Some(entry) = shard.users.get_mut(&user) else {
                continue;
            };
            match &mut entry.phase {
                Phase::Syncing { buffer, overflowed } => {
                    if buffer.len() < SYNC_BUFFER {
                        buffer.push((origin, routed.clone()));
                    } else {
                        *overflowed = true;
                    }
                }
                Phase::Live => {
                    if self.apply(user, entry, origin, &routed, &mut shared).resync {
                        resync.push(user);
                    }
                }
            }
        }
        if !resync.is_empty() {
            self.resync(resync);
        }
    }

    fn wants(&self, user: UserId) -> bool {
        self.shard(user).users.contains_key(&user)
    }

    fn users(&self) -> Vec<UserId> {
        self.local_users()
    }

    fn subscribed(&self, users: &[UserId]) {
        for user in users {
            let mut shard = self.shard(*user);
            if let Some(e) = shard.users.get_mut(user) {
                e.subscribed = true;
                for w in e.sub_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        }
    }

    fn reconnected(&self) {
        // Whatever was published while the subscription was down is in PostgreSQL.
        self.services.control_interrupted();
        self.repair(self.local_users());
    }

    fn repair(&self, users: Vec<UserId>) {
        if !users.is_empty() {
            self.resync(users);
        }
    }

    fn control(&self, message: Bytes) {
        // Another node's publishes failed: its users here may have missed events.
        if let Some(users) = crate::cluster::bus::repair_users(&message) {
            let local = if users.is_empty() {
                self.local_users()
            } else {
                users.into_iter().filter(|u| self.wants(*u)).collect()
            };
            return self.repair(local);
        }
        let services = self.services.clone();
        tokio::spawn(async move { services.on_control(&message).await });
    }
}
