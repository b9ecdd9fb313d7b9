//! One-to-one chats at a fixed total rate: senders on one node, recipients on another (or
//! the same node, for the cross-node comparison). Reports messages accepted, refused (and
//! sent again) and delivered, the achieved delivery rate over the delivery window, and
//! end-to-end latency; in verify mode also lost and duplicated messages.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Peer, Recorder, befriend, bounded, connect};
use crate::Target;
use crate::stats::{Percentiles, now_micros};

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
    /// Offered total rate, messages per second.
    pub target_rate: u64,
    /// Seconds from the first send to the last delivery (the delivery window).
    pub seconds: f64,
    /// Seconds of sending (the offered rate is `sent` over these).
    #[serde(default)]
    pub sending_seconds: f64,
    /// Messages sent (each counted once, however often it was sent again).
    pub sent: u64,
    /// Messages accepted: acknowledged by their sender's echo (a commit).
    pub echoed: u64,
    /// Messages received by recipients.
    pub delivered: u64,
    /// `error` events other than refusals.
    pub errors: u64,
    /// Refused attempts (`overloaded`, `rate_limited`): never counted as lost.
    #[serde(default)]
    pub refused: u64,
    /// Attempts made again after a refusal, with the same `client_msg_id`.
    #[serde(default)]
    pub retried: u64,
    /// Messages still not accepted when the step gave up waiting (30 s after sending).
    #[serde(default)]
    pub never_accepted: u64,
    /// Delivered per second over the delivery window (achieved, not offered).
    pub delivered_per_second: f64,
    /// First send → recipient (a refused message's retries included).
    pub latency: Percentiles,
    /// Accepted attempt's send → recipient.
    #[serde(default)]
    pub accepted_latency: Percentiles,
    /// First send → sender's echo.
    pub echo_latency: Percentiles,
    /// Verify mode: accepted messages never delivered.
    pub lost: Option<u64>,
    /// Verify mode: messages delivered twice.
    pub duplicates: Option<u64>,
}

impl Step {
    /// Sustained: everything sent was accepted at once (no refusal) and arrived, without
    /// errors, with p99 within `p99_ms`.
    pub fn sustained(&self, p99_ms: f64) -> bool {
        self.errors == 0
            && self.refused == 0
            && self.delivered >= self.sent
            && self.sent > 0
            && self.latency.p99_ms <= p99_ms
    }
}

/// Sends at `rate` messages per second in total for `duration`, then waits for stragglers
/// (and for refused sends to be accepted on a retry).
pub async fn run(pairs: &Pairs, rate: u64, duration: Duration, verify: bool) -> Step {
    let rec = &pairs.rec;
    // Counters are cumulative: this step is the difference.
    let base = (
        rec.delivered.load(Ordering::Relaxed),
        rec.echoed.load(Ordering::Relaxed),
        rec.errors.load(Ordering::Relaxed),
        rec.refused.load(Ordering::Relaxed),
        rec.retried.load(Ordering::Relaxed),
        rec.ledger.duplicates(),
    );
    let n = pairs.senders.len();
    let stream_base = STREAMS.fetch_add(n, Ordering::Relaxed);
    let mut sent_per_stream = vec![0u64; n];
    let started = Instant::now();
    let started_us = now_micros();
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
            pairs.senders[i]
                .send_load(pairs.conversations[i], stream_base + i, sent_per_stream[i])
                .await;
            sent_per_stream[i] += 1;
            sent += 1;
        }
    }
    let sending_seconds = started.elapsed().as_secs_f64();
    // Everything in flight is accepted and arrives (or 30 s pass: then what was never
    // accepted is given up, and what was accepted but not delivered is lost).
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && (rec.delivered.load(Ordering::Relaxed) - base.0 < sent
            || rec.echoed.load(Ordering::Relaxed) - base.1 < sent)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let given_up: HashSet<_> = pairs.senders.iter().flat_map(Peer::give_up).collect();
    let delivered = rec.delivered.load(Ordering::Relaxed) - base.0;
    // The rate is what was delivered up to the last delivery, so a backlog that drains
    // after the sending window does not count as throughput.
    let last = rec.last_delivery_us.load(Ordering::Relaxed);
    let seconds = if last > started_us {
        (last - started_us) as f64 / 1e6
    } else {
        started.elapsed().as_secs_f64()
    };
    let mut padded = vec![0u64; stream_base + n];
    padded[stream_base..].copy_from_slice(&sent_per_stream);
    Step {
        target_rate: rate,
        seconds,
        sending_seconds,
        sent,
        echoed: rec.echoed.load(Ordering::Relaxed) - base.1,
        delivered,
        errors: rec.errors.load(Ordering::Relaxed) - base.2,
        refused: rec.refused.load(Ordering::Relaxed) - base.3,
        retried: rec.retried.load(Ordering::Relaxed) - base.4,
        never_accepted: given_up.len() as u64,
        delivered_per_second: delivered as f64 / seconds.max(0.001),
        latency: rec.latency.take(),
        accepted_latency: rec.accepted_latency.take(),
        echo_latency: rec.echo_latency.take(),
        lost: verify.then(|| rec.ledger.missing(&padded, &given_up)),
        duplicates: verify.then(|| rec.ledger.duplicates() - base.5),
    }
}

static STREAMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
