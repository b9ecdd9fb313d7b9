//! One-to-one chats at a fixed total rate: senders on one node, recipients on another (or
//! the same node, for the cross-node comparison). Reports persisted-and-delivered messages
//! per second and end-to-end latency; in verify mode also lost and duplicated messages.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Peer, Recorder, befriend, bounded, connect, load_message};
use crate::Target;
use crate::stats::Percentiles;

/// Pairs ready to exchange load messages.
pub struct Pairs {
    senders: Vec<Peer>,
    _recipients: Vec<Peer>,
    conversations: Vec<Uuid>,
    rec: Arc<Recorder>,
}

/// Connects `n` pairs; the sender of pair `i` goes to node `i`, its recipient to node
/// `i + 1` when `cross_node` (else the same node), round robin.
pub async fn setup(target: &Target, n: usize, cross_node: bool) -> Result<Pairs, String> {
    let rec = Arc::new(Recorder::default());
    rec.setup.store(true, Ordering::Relaxed);
    let t = Arc::new(target.clone());
    let r = rec.clone();
    let pairs = bounded("connecting pairs", (0..n).collect(), 64, move |i| {
        let (t, r) = (t.clone(), r.clone());
        async move {
            let other = if cross_node { i + 1 } else { i };
            let mut a = connect(&t, &r, Uuid::new_v4(), i, 2 * i)
                .await
                .map_err(|e| e.to_string())?;
            let mut b = connect(&t, &r, Uuid::new_v4(), other, 2 * i + 1)
                .await
                .map_err(|e| e.to_string())?;
            let conv = befriend(&mut a, &mut b).await?;
            Ok::<_, String>((a, b, conv))
        }
    })
    .await;
    let mut out = Pairs {
        senders: Vec::new(),
        _recipients: Vec::new(),
        conversations: Vec::new(),
        rec: rec.clone(),
    };
    for p in pairs {
        let (a, b, c) = p?;
        out.senders.push(a);
        out._recipients.push(b);
        out.conversations.push(c);
    }
    rec.setup.store(false, Ordering::Relaxed);
    Ok(out)
}

/// The outcome of one rate step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// Target total rate, messages per second.
    pub target_rate: u64,
    /// Seconds from the first send to the last delivery.
    pub seconds: f64,
    /// Messages sent.
    pub sent: u64,
    /// Echoes (commits acknowledged to the sender).
    pub echoed: u64,
    /// Messages received by recipients.
    pub delivered: u64,
    /// `error` events.
    pub errors: u64,
    /// Delivered per second, up to the last delivery.
    pub delivered_per_second: f64,
    /// Send → recipient.
    pub latency: Percentiles,
    /// Send → sender's echo.
    pub echo_latency: Percentiles,
    /// Verify mode: messages never delivered.
    pub lost: Option<u64>,
    /// Verify mode: messages delivered twice.
    pub duplicates: Option<u64>,
}

impl Step {
    /// Sustained: everything sent arrived, without errors, with p99 within `p99_ms`.
    pub fn sustained(&self, p99_ms: f64) -> bool {
        self.errors == 0
            && self.delivered >= self.sent
            && self.sent > 0
            && self.latency.p99_ms <= p99_ms
    }
}

/// Sends at `rate` messages per second in total for `duration`, then waits for stragglers.
pub async fn run(pairs: &Pairs, rate: u64, duration: Duration, verify: bool) -> Step {
    // Counters are cumulative: this step is the difference.
    let base = (
        pairs.rec.delivered.load(Ordering::Relaxed),
        pairs.rec.echoed.load(Ordering::Relaxed),
        pairs.rec.errors.load(Ordering::Relaxed),
    );
    let n = pairs.senders.len();
    let stream_base = STREAMS.fetch_add(n, Ordering::Relaxed);
    let mut sent_per_stream = vec![0u64; n];
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut next = 0usize;
    while started.elapsed() < duration {
        tick.tick().await;
        let due = (rate as f64 * started.elapsed().as_secs_f64()) as u64;
        while sent < due {
            let i = next % n;
            next += 1;
            let frame = load_message(pairs.conversations[i], stream_base + i, sent_per_stream[i]);
            sent_per_stream[i] += 1;
            pairs.senders[i].conn.send(frame).await;
            sent += 1;
        }
    }
    // Everything in flight arrives (or 30 s pass: then it is counted as lost). The rate is
    // what was delivered over the time until the last delivery, so a backlog that drains
    // after the sending window does not count as throughput.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && (pairs.rec.delivered.load(Ordering::Relaxed) - base.0 < sent
            || pairs.rec.echoed.load(Ordering::Relaxed) - base.1 < sent)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let delivered = pairs.rec.delivered.load(Ordering::Relaxed) - base.0;
    let mut padded = vec![0u64; stream_base + n];
    padded[stream_base..].copy_from_slice(&sent_per_stream);
    let latency = pairs.rec.latency.take();
    let echo_latency = pairs.rec.echo_latency.take();
    Step {
        target_rate: rate,
        seconds,
        sent,
        echoed: pairs.rec.echoed.load(Ordering::Relaxed) - base.1,
        delivered,
        errors: pairs.rec.errors.load(Ordering::Relaxed) - base.2,
        delivered_per_second: delivered as f64 / seconds.max(0.001),
        latency,
        echo_latency,
        lost: verify.then(|| pairs.rec.ledger.missing(&padded)),
        duplicates: verify.then(|| pairs.rec.ledger.duplicates()),
    }
}

static STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
