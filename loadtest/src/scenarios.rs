//! What every scenario shares: users connected with a recorder that measures end-to-end
//! latency from the timestamp each load message carries, and the set-up of private pairs.
//!
//! Load messages carry `lt:<send µs>:<stream>:<n>` as their text ([`crate::frames`],
//! which recognises frames by their parsed `type`, whatever the order of keys): the
//! recipient computes the latency from the first field and, in verify mode, marks `n` of
//! `stream` received, so a run can tell lost and duplicated messages apart.

pub mod connections;
pub mod fanout;
pub mod parity;
pub mod throughput;

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

    /// How many of `sent[stream]` messages never arrived.
    pub fn missing(&self, sent: &[u64]) -> u64 {
        let s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        sent.iter()
            .enumerate()
            .map(|(stream, &count)| {
                let bits = s.get(stream);
                (0..count as usize)
                    .filter(|n| {
                        bits.is_none_or(|b| {
                            b.get(n / 8).is_none_or(|byte| byte & (1 << (n % 8)) == 0)
                        })
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
    /// Sender side: echoes of one's own load messages.
    pub echoed: AtomicU64,
    /// `error` events.
    pub errors: AtomicU64,
    /// Send → recipient's `message`.
    pub latency: Latency,
    /// Send → sender's echo (the commit acknowledgement).
    pub echo_latency: Latency,
    /// Receipts for exactly-once checks (recipient side).
    pub ledger: Ledger,
    /// While true, frames also go to the users' set-up channels.
    pub setup: AtomicBool,
}

/// A connected user.
pub struct Peer {
    /// Its id.
    pub id: Uuid,
    /// Its connection.
    pub conn: Conn,
    /// Parsed frames while the recorder is in set-up mode.
    pub events: mpsc::UnboundedReceiver<Value>,
}

/// Handles one text frame for `me`.
fn on_frame(rec: &Recorder, me: &[u8; 36], frame: &[u8], setup: &mpsc::UnboundedSender<Value>) {
    if rec.setup.load(Ordering::Relaxed) {
        if let Ok(v) = serde_json::from_slice::<Value>(frame) {
            let _ = setup.send(v);
        }
        return;
    }
    match frames::recognise(frame) {
        Event::Load { load, sender } => {
            let lag = now_micros().saturating_sub(load.first_sent_us);
            if sender.as_bytes().eq_ignore_ascii_case(me) {
                rec.echoed.fetch_add(1, Ordering::Relaxed);
                rec.echo_latency.record(lag);
            } else {
                rec.delivered.fetch_add(1, Ordering::Relaxed);
                rec.latency.record(lag);
                rec.ledger.mark(load.stream, load.n as usize);
            }
        }
        Event::Refused { .. } | Event::Error => {
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
    let mut me = [0u8; 36];
    id.hyphenated().encode_lower(&mut me);
    let conn = client::connect(
        target.node_addr(node),
        target.source(slot),
        &api::token(&target.secret, id, false),
        false,
        Box::new(move |frame| on_frame(&rec2, &me, frame, &tx)),
    )
    .await?;
    Ok(Peer {
        id,
        conn,
        events: rx,
    })
}

/// A load message frame.
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

/// A private conversation between two peers in which both have spoken (so the
/// first-message limit no longer applies). Returns its id.
pub async fn befriend(a: &mut Peer, b: &mut Peer) -> Result<Uuid, String> {
    let hello = format!(
        r#"{{"type":"message","data":{{"receiver_id":"{}","message_type":"text","content":"hi"}}}}"#,
        b.id
    );
    a.conn.send(Bytes::from(hello)).await;
    let echo = wait_for(a, "message", Duration::from_secs(30)).await?;
    let conv: Uuid = echo["conversation_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or("no conversation id")?;
    wait_for(b, "message", Duration::from_secs(30)).await?;
    let reply = format!(
        r#"{{"type":"message","data":{{"conversation_id":"{conv}","message_type":"text","content":"hello"}}}}"#
    );
    b.conn.send(Bytes::from(reply)).await;
    wait_for(b, "message", Duration::from_secs(30)).await?;
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
