//! What the hub holds for one connection: its outbound queue item type, its close switch
//! (and the close codes it carries) and its device record; and the hub's bookkeeping of
//! connections and session tasks, viewing, and closing every device.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc};

use super::Hub;
use crate::model::Timestamp;
use crate::model::{ConversationId, UserId};

/// Close codes (RFC 6455 §7.4.1) and when we use them.
pub mod close {
    /// Normal: logout, the 19th device, the client's own close.
    pub const NORMAL: u16 = 1000;
    /// The connection was silent for too long.
    pub const GOING_AWAY: u16 = 1001;
    /// An invalid frame (bad UTF-8, bad fragments).
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A client that kept sending frames over its budget (`ws::budget`).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame or message over 64 KiB.
    pub const TOO_BIG: u16 = 1009;
    /// The node is restarting or draining: reconnect (to another node).
    pub const RESTART: u16 = 1012;
    /// The client did not read fast enough: its queue filled. Reconnect; nothing is lost.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// An unexpected server error.
    pub const INTERNAL: u16 = 1011;
}

/// The message a text frame delivers: writing the frame advances the delivery cursor, and
/// its age is the delivery latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageTag {
    /// The message's conversation.
    pub conversation_id: ConversationId,
    /// Its seq there.
    pub seq: i64,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// Something for a connection's writer.
#[derive(Debug)]
pub enum Outbound {
    /// A text frame; tagged when it delivers a message.
    Text(Bytes, Option<MessageTag>),
    /// A pong answering the client's ping.
    Pong(Bytes),
}

/// Tells a connection's writer to close the connection with a code.
#[derive(Default)]
pub struct Kill {
    code: Mutex<Option<(u16, &'static str)>>,
    notify: Notify,
}

impl Kill {
    /// Asks for a close; the first request wins.
    pub fn fire(&self, code: u16, reason: &'static str) {
        let mut c = self.code.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_none() {
            *c = Some((code, reason));
        }
        drop(c);
        self.notify.notify_one();
    }

    /// The close requested, if any.
    pub fn requested(&self) -> Option<(u16, &'static str)> {
        *self.code.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Completes once a close is requested.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.requested().is_some() {
                return;
            }
            notified.await;
        }
    }
}

/// One connected device of a local user.
pub struct Device {
    /// Connection id (unique on this node).
    pub id: u64,
    /// Its bounded outbound queue.
    pub tx: mpsc::Sender<Outbound>,
    /// Delivery cursor moves only by `ack` frames from this device.
    pub ack_mode: bool,
    /// Conversation this device is viewing.
    pub viewing: Option<ConversationId>,
    /// Closing: no more frames.
    pub dead: bool,
    /// Closes it.
    pub kill: Arc<Kill>,
}

impl Hub {
    /// A new connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A session task started; pair with [`Hub::session_ended`].
    pub fn session_started(&self) {
        self.sessions.fetch_add(1, Ordering::SeqCst);
    }

    /// A session task finished (its close frame is written).
    pub fn session_ended(&self) {
        if self.sessions.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.sessions_done.notify_waiters();
        }
    }

    /// Waits until every session task has finished, or `timeout`. True when all did.
    pub async fn wait_sessions(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, async {
            loop {
                let done = self.sessions_done.notified();
                if self.sessions.load(Ordering::SeqCst) == 0 {
                    return;
                }
                done.await;
            }
        })
        .await
        .is_ok()
    }

    /// Open connections on this node.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Sets the conversation a device is viewing.
    pub fn set_viewing(&self, user: UserId, conn: u64, conversation: Option<ConversationId>) {
        let mut shard = self.shard(user);
        if let Some(d) = shard
            .users
            .get_mut(&user)
            .and_then(|e| e.devices.iter_mut().find(|d| d.id == conn))
        {
            d.viewing = conversation;
        }
    }

    /// Closes every device with `code` (drain, shutdown), spread over `over`.
    pub async fn close_all(&self, code: u16, reason: &'static str, over: Duration) {
        let kills: Vec<Arc<Kill>> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .users
                    .values()
                    .flat_map(|e| e.devices.iter().map(|d| d.kill.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        if kills.is_empty() {
            return;
        }
        let pause = (over / kills.len() as u32).min(Duration::from_millis(50));
        let n = kills.len();
        for (i, kill) in kills.into_iter().enumerate() {
            kill.fire(code, reason);
            if i + 1 < n && !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    }
}
