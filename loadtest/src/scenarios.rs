//! What every scenario shares: users connected with a recorder that measures end-to-end
//! latency from the timestamp each load message carries, and the set-up of private pairs.
//!
//! Load messages carry `lt:<first send µs>:<stream>:<n>[:<attempt µs>]` as their text
//! ([`crate::frames`]): the recipient computes the latency from the first send (and from
//! the accepted attempt) and, in verify mode, marks `n` of `stream` received, so a run can
//! tell lost and duplicated messages apart. Senders send through their [`Outbox`]: a
//! refused send is counted as refused, never as lost, and sent again with the same
//! `client_msg_id` after the server's `retry_after_ms`.

pub mod connections;
pub mod fanout;
pub mod parity;
pub mod throughput;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::Target;
use crate::api;
use crate::client::{self, Conn};
use crate::frames::{self, Event};
use crate::outbox::{Echo, Key, Outbox};
use crate::stats::{Latency, now_micros};

/// Per-stream receipt bitmaps, for exactly-once checks.
#[derive(Default)]
pub struct Ledger {
    streams: Mutex<Vec<Vec<u8>>>,
    duplicates: AtomicU64,
}

impl Ledger {
    fn mark(&self, stream: usize, n: usize) {
        let mut s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() <= stream {
            s.resize(stream + 1, Vec::new());
        }
        let bits = &mut s[stream];
        if bits.len() <= n / 8 {
            bits.resize(n / 8 + 1, 0);
        }
        let mask = 1u8 << (n % 8);
        if bits[n / 8] & mask != 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        } else {
            bits[n / 8] |= mask;
        }
    }

    /// How many of `sent[stream]` messages never arrived, leaving out those in
    /// `given_up` (never accepted by the server, so not its to deliver).
    pub fn missing(&self, sent: &[u64], given_up: &HashSet<Key>) -> u64 {
        let s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        sent.iter()
            .enumerate()
            .map(|(stream, &count)| {
                let bits = s.get(stream);
                (0..count as usize)
                    .filter(|&n| {
                        bits.is_none_or(|b| {
                            b.get(n / 8).is_none_or(|byte| byte & (1 << (n % 8)) == 0)
                        }) && !given_up.contains(&(stream, n as u64))
                    })
                    .count() as u64
            })
            .sum()
    }

    /// Messages that arrived twice.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

/// What the connections of a run record.
#[derive(Default)]
pub struct Recorder {
    /// Recipient side: load messages from others.
    pub delivered: AtomicU64,
    /// Sender side: sends accepted, i.e. the first echo of each of one's own load messages
    /// (the server's commit acknowledgement).
    pub echoed: AtomicU64,
    /// Sender side: refusals (`overloaded`, `rate_limited`), one per refused attempt.
    pub refused: AtomicU64,
    /// Sender side: sends made again after a refusal.
    pub retried: AtomicU64,
    /// Other `error` events.
    pub errors: AtomicU64,
    /// First send → recipient's `message` (retries included).
    pub latency: Latency,
    /// The accepted attempt's send → recipient's `message` (as `latency` unless a message
    /// was refused and sent again).
    pub accepted_latency: Latency,
    /// First send → sender's echo (the commit acknowledgement).
    pub echo_latency: Latency,
    /// Receipts for exactly-once checks (recipient side).
    pub ledger: Ledger,
    /// When the last load message reached a recipient, µs since the epoch.
    pub last_delivery_us: AtomicU64,
    /// While true, frames also go to the users' set-up channels.
    pub setup: AtomicBool,
}

/// A connected user.
pub struct Peer {
    /// Its id.
    pub id: Uuid,
    /// Its connection.
    pub conn: Conn,
    /// Its load messages not yet accepted.
    pub outbox: Arc<Outbox>,
    /// Parsed frames while the recorder is in set-up mode.
    pub events: mpsc::UnboundedReceiver<Value>,
}

impl Peer {
    /// Sends load message `n` of `stream` into `conversation` with its `client_msg_id`,
    /// tracked until accepted (refusals are sent again). False when the connection is gone.
    pub async fn send_load(&self, conversation: Uuid, stream: usize, n: u64) -> bool {
        let frame = self.outbox.first_send(conversation, stream, n);
        self.conn.send(frame).await
    }

    /// Gives up the sends not accepted yet (no more retries); returns them.
    pub fn give_up(&self) -> Vec<Key> {
        self.outbox.book().abandon()
    }
}

/// When an `overloaded` refusal gives no `retry_after_ms`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_millis(200);
/// When a `rate_limited` refusal gives no `retry_after_ms` (the limit is per second).
pub const DEFAULT_RATE_LIMITED_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Sends `key` again through `outbox` after `delay` (plus up to a quarter, spread by the
/// message number, so refused sends do not come back all at once).
fn retry_later(rec: &Arc<Recorder>, outbox: &Arc<Outbox>, key: Key, delay: Duration) {
    let (rec, outbox) = (rec.clone(), outbox.clone());
    let delay = delay + delay * (key.1 % 16) as u32 / 64;
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if outbox.resend(key).await {
            rec.retried.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Handles one text frame for `me`.
fn on_frame(
    rec: &Arc<Recorder>,
    outbox: &Arc<Outbox>,
    me: &[u8; 36],
    frame: &[u8],
    setup: &mpsc::UnboundedSender<Value>,
) {
    if rec.setup.load(Ordering::Relaxed) {
        if let Ok(v) = serde_json::from_slice::<Value>(frame) {
            let _ = setup.send(v);
        }
        return;
    }
    match frames::recognise(frame) {
        Event::Load { load, sender } => {
            let now = now_micros();
            let lag = now.saturating_sub(load.first_sent_us);
            if sender.as_bytes().eq_ignore_ascii_case(me) {
                let (echo, moved) = outbox.book().echoed((load.stream, load.n), load.attempt_us);
                if echo != Echo::Repeat {
                    rec.echoed.fetch_add(1, Ordering::Relaxed);
                    rec.echo_latency.record(lag);
                }
                // Refusals guessed wrong: the sends they belonged to go again now.
                for key in moved {
                    retry_later(rec, outbox, key, Duration::ZERO);
                }
            } else {
                rec.delivered.fetch_add(1, Ordering::Relaxed);
                rec.latency.record(lag);
                rec.accepted_latency
                    .record(now.saturating_sub(load.attempt_us));
                rec.ledger.mark(load.stream, load.n as usize);
                rec.last_delivery_us.fetch_max(now, Ordering::Relaxed);
            }
        }
        Event::Refused {
            retry_after_ms,
            refused,
            rate_limited,
        } => {
            rec.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(key) = outbox.book().refused(refused) {
                let default = if rate_limited {
                    DEFAULT_RATE_LIMITED_RETRY_AFTER
                } else {
                    DEFAULT_RETRY_AFTER
                };
                let delay = retry_after_ms.map_or(default, Duration::from_millis);
                retry_later(rec, outbox, key, delay);
            }
        }
        Event::Error => {
            rec.errors.fetch_add(1, Ordering::Relaxed);
        }
        Event::Other => {}
    }
}

/// Connects user `id` to node `node` (source address by `slot`).
pub async fn connect(
    target: &Target,
    rec: &Arc<Recorder>,
    id: Uuid,
    node: usize,
    slot: usize,
) -> std::io::Result<Peer> {
    let (tx, rx) = mpsc::unbounded_channel();
    let rec2 = rec.clone();
    let outbox = Arc::new(Outbox::default());
    let outbox2 = outbox.clone();
    let mut me = [0u8; 36];
    id.hyphenated().encode_lower(&mut me);
    let conn = client::connect(
        target.node_addr(node),
        target.source(slot),
        &api::token(&target.secret, id, false),
        false,
        Box::new(move |frame| on_frame(&rec2, &outbox2, &me, frame, &tx)),
    )
    .await?;
    outbox.attach(conn.downgrade());
    Ok(Peer {
        id,
        conn,
        outbox,
        events: rx,
    })
}

/// A load message frame without `client_msg_id` (as the original's tests send), not
/// tracked by an outbox: parity tests count its echo but never send it again.
pub fn load_message(conversation: Uuid, stream: usize, n: u64) -> Bytes {
    let now = now_micros();
    frames::load_frame(conversation, stream, n, now, now, false)
}

/// Waits for the next event of type `ty` on a peer in set-up mode.
pub async fn wait_for(peer: &mut Peer, ty: &str, timeout: Duration) -> Result<Value, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, peer.events.recv()).await {
            Ok(Some(v)) if v["type"] == ty => return Ok(v["data"].clone()),
            Ok(Some(v)) if v["type"] == "error" => {
                return Err(format!("error event: {}", v["data"]));
            }
            Ok(Some(_)) => continue,
            _ => return Err(format!("no {ty} within {timeout:?}")),
        }
    }
}

/// Sends a set-up `message` frame (with a `client_msg_id`) and waits for its echo; a send
/// the server refuses as `overloaded` or `rate_limited` (many pairs set up at once) is sent
/// again after its `retry_after_ms`, with the same `client_msg_id`.
async fn send_set_up(peer: &mut Peer, frame: String) -> Result<Value, String> {
    for _ in 0..50 {
        peer.conn.send(Bytes::from(frame.clone())).await;
        match wait_for(peer, "message", Duration::from_secs(30)).await {
            Ok(echo) => return Ok(echo),
            Err(e) if e.contains("\"overloaded\"") || e.contains("\"rate_limited\"") => {
                let after = e
                    .split("\"retry_after_ms\":")
                    .nth(1)
                    .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(200);
                tokio::time::sleep(Duration::from_millis(after)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err("set-up send refused 50 times".into())
}

/// A private conversation between two peers in which both have spoken (so the
/// first-message limit no longer applies). Returns its id.
pub async fn befriend(a: &mut Peer, b: &mut Peer) -> Result<Uuid, String> {
    let hello = format!(
        r#"{{"type":"message","data":{{"receiver_id":"{}","message_type":"text","content":"hi","client_msg_id":"hi-{}"}}}}"#,
        b.id, a.id
    );
    let echo = send_set_up(a, hello).await?;
    let conv: Uuid = echo["conversation_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or("no conversation id")?;
    wait_for(b, "message", Duration::from_secs(30)).await?;
    let reply = format!(
        r#"{{"type":"message","data":{{"conversation_id":"{conv}","message_type":"text","content":"hello","client_msg_id":"hello-{}"}}}}"#,
        b.id
    );
    send_set_up(b, reply).await?;
    wait_for(a, "message", Duration::from_secs(30)).await?;
    Ok(conv)
}

/// Runs `f` over `items` with at most `parallel` at a time, showing progress.
pub async fn bounded<T, F, Fut, R>(label: &str, items: Vec<T>, parallel: usize, f: F) -> Vec<R>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = R> + Send,
    R: Send + 'static,
{
    use tokio::task::JoinSet;
    let total = items.len() as u64;
    let mut out = Vec::with_capacity(items.len());
    let mut set = JoinSet::new();
    let mut it = items.into_iter().enumerate();
    let mut results: Vec<Option<R>> = Vec::new();
    for _ in 0..parallel {
        if let Some((i, item)) = it.next() {
            let f = f.clone();
            set.spawn(async move { (i, f(item).await) });
        }
    }
    let mut done = 0u64;
    while let Some(r) = set.join_next().await {
        let (i, r) = r.expect("task panicked");
        if results.len() <= i {
            results.resize_with(i + 1, || None);
        }
        results[i] = Some(r);
        done += 1;
        if done.is_multiple_of(100) || done == total {
            crate::stats::progress(label, done, total);
        }
        if let Some((i, item)) = it.next() {
            let f = f.clone();
            set.spawn(async move { (i, f(item).await) });
        }
    }
    out.extend(results.into_iter().map(|r| r.expect("every item ran")));
    out
}
