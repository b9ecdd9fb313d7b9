//! Delivery and read cursors of local users, and storing them in PostgreSQL.
//!
//! A frame written to a socket is not yet a frame received: if this node dies (or the
//! connection breaks) right after the write, the bytes can be lost in flight. So a written
//! seq becomes *confirmed* only after it has stayed written for [`CONFIRM`]; the periodic
//! flush stores confirmed positions, and a crash replays at most the last few seconds on
//! the next connection (at least once, deduplicated by message id). A connection that ends
//! with a close handshake, or an `ack` frame, confirms at once (exactly once).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Hub;
use crate::model::{ConversationId, UserId};
use crate::store::members::Position;

/// How long a written seq stays written before it counts as delivered.
pub const CONFIRM: Duration = Duration::from_secs(5);

/// Delivery state of one conversation for one local user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Highest seq pushed to the devices.
    pub pushed: i64,
    /// Highest seq written to a socket (or acknowledged).
    pub written: i64,
    /// Highest seq known delivered: acknowledged, or written at least [`CONFIRM`] ago.
    pub confirmed: i64,
    /// A written seq and when it was written, waiting to be confirmed.
    pub candidate: Option<(i64, Instant)>,
    /// Delivery cursor as last stored in PostgreSQL.
    pub persisted: i64,
    /// Read cursor.
    pub read: i64,
    /// Read cursor as last stored by this node.
    pub read_persisted: i64,
}

impl Cursor {
    /// A cursor at `delivered` with the read cursor at `read` (all stored already).
    pub fn at(delivered: i64, read: i64) -> Cursor {
        Cursor {
            pushed: delivered,
            written: delivered,
            confirmed: delivered,
            candidate: None,
            persisted: delivered,
            read,
            read_persisted: read,
        }
    }
}

/// Which delivery positions to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Confirmed ones only (periodic flush; a connection that broke).
    Confirmed,
    /// Everything written (a connection closed with a handshake).
    All,
}

/// Cursor positions to store.
pub type Positions = Vec<Position>;

/// Promotes written seqs old enough to confirmed, and returns the positions of one user
/// that differ from what was stored: (delivery, read). The second value is true when
/// something is still waiting to be confirmed (the user must be looked at again).
pub fn to_store(
    user: UserId,
    convs: &mut HashMap<ConversationId, Cursor>,
    mode: Mode,
) -> (Positions, Positions) {
    let (d, r, _) = to_store_at(user, convs, mode, Instant::now());
    (d, r)
}

fn to_store_at(
    user: UserId,
    convs: &mut HashMap<ConversationId, Cursor>,
    mode: Mode,
    now: Instant,
) -> (Positions, Positions, bool) {
    let mut delivered = Vec::new();
    let mut read = Vec::new();
    let mut waiting = false;
    for (conv, c) in convs.iter_mut() {
        if mode == Mode::All {
            c.confirmed = c.confirmed.max(c.written);
            c.candidate = None;
        }
        if let Some((seq, at)) = c.candidate
            && now.duration_since(at) >= CONFIRM
        {
            c.confirmed = c.confirmed.max(seq);
            c.candidate = None;
        }
        if c.written > c.confirmed && c.candidate.is_none() {
            c.candidate = Some((c.written, now));
        }
        waiting |= c.candidate.is_some();
        if c.confirmed > c.persisted {
            delivered.push(Position {
                conversation_id: *conv,
                user_id: user,
                seq: c.confirmed,
            });
        }
        if c.read > c.read_persisted {
            read.push(Position {
                conversation_id: *conv,
                user_id: user,
                seq: c.read,
            });
        }
    }
    (delivered, read, waiting)
}

impl Hub {
    /// A frame written to a socket: advances the written position of a non-ack device.
    pub fn written(&self, user: UserId, conversation: ConversationId, seq: i64) {
        let mut shard = self.shard(user);
        let Some(e) = shard.users.get_mut(&user) else {
            return;
        };
        if let Some(c) = e.convs.get_mut(&conversation)
            && seq > c.written
        {
            c.written = seq;
            shard.dirty.insert(user);
        }
    }

    /// An `ack` frame: the device has everything up to `seq` in the conversation.
    pub fn ack(&self, user: UserId, conversation: ConversationId, seq: i64) {
        let mut shard = self.shard(user);
        let Some(e) = shard.users.get_mut(&user) else {
            return;
        };
        if let Some(c) = e.convs.get_mut(&conversation) {
            let seq = seq.min(c.pushed);
            if seq > c.confirmed {
                c.written = c.written.max(seq);
                c.confirmed = seq;
                shard.dirty.insert(user);
            }
        }
    }

    /// Stores every confirmed change (called every second).
    pub async fn flush_cursors(&self) {
        self.flush(Mode::Confirmed).await;
    }

    /// Stores every change, confirmed or not (shutdown, after every client was closed with a
    /// handshake).
    pub async fn flush_all_cursors(&self) {
        self.flush(Mode::All).await;
    }

    async fn flush(&self, mode: Mode) {
        let mut delivered = Vec::new();
        let mut read = Vec::new();
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let dirty: Vec<UserId> = shard.dirty.drain().collect();
            for user in dirty {
                let Some(e) = shard.users.get_mut(&user) else {
                    continue;
                };
                let (d, r, waiting) = to_store_at(user, &mut e.convs, mode, now);
                delivered.extend(d);
                read.extend(r);
                if waiting {
                    shard.dirty.insert(user);
                }
            }
        }
        if delivered.is_empty() && read.is_empty() {
            return;
        }
        match self.store_cursors(&delivered, &read).await {
            Ok(()) => {
                for p in &delivered {
                    self.with_cursor(p.user_id, p.conversation_id, |c| {
                        c.persisted = c.persisted.max(p.seq)
                    });
                }
                for p in &read {
                    self.with_cursor(p.user_id, p.conversation_id, |c| {
                        c.read_persisted = c.read_persisted.max(p.seq)
                    });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "storing cursors failed; will retry");
                for p in delivered.iter().chain(read.iter()) {
                    self.shard(p.user_id).dirty.insert(p.user_id);
                }
            }
        }
    }

    fn with_cursor(&self, user: UserId, conv: ConversationId, f: impl FnOnce(&mut Cursor)) {
        if let Some(c) = self
            .shard(user)
            .users
            .get_mut(&user)
            .and_then(|e| e.convs.get_mut(&conv))
        {
            f(c);
        }
    }

    /// Writes delivery and read positions (forward only).
    pub(super) async fn store_cursors(
        &self,
        delivered: &[Position],
        read: &[Position],
    ) -> crate::error::Result<()> {
        if delivered.is_empty() && read.is_empty() {
            return Ok(());
        }
        let conn = self.store.conn().await?;
        crate::store::members::advance_delivered(&conn, delivered).await?;
        crate::store::members::advance_read_seq(&conn, read).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_seqs_are_confirmed_after_a_delay_or_a_handshake() {
        let user = UserId::new_v4();
        let conv = ConversationId::new_v4();
        let mut convs = HashMap::from([(conv, Cursor::at(3, 3))]);
        convs.get_mut(&conv).unwrap().written = 7;
        let t0 = Instant::now();
        let (d, _, waiting) = to_store_at(user, &mut convs, Mode::Confirmed, t0);
        assert!(d.is_empty(), "just written: not delivered yet");
        assert!(waiting);
        convs.get_mut(&conv).unwrap().written = 9;
        let (d, _, _) = to_store_at(user, &mut convs, Mode::Confirmed, t0 + CONFIRM / 2);
        assert!(d.is_empty());
        let (d, _, waiting) = to_store_at(user, &mut convs, Mode::Confirmed, t0 + CONFIRM);
        assert_eq!(
            d,
            [Position {
                conversation_id: conv,
                user_id: user,
                seq: 7
            }],
            "what was written before the delay counts"
        );
        assert!(waiting, "9 waits its turn");
        let (d, _, _) = to_store_at(user, &mut convs, Mode::All, t0 + CONFIRM);
        assert_eq!(
            d,
            [Position {
                conversation_id: conv,
                user_id: user,
                seq: 9
            }],
            "a handshake confirms everything written"
        );
    }
}
