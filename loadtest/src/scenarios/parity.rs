//! The original service's three performance tests, run against dinq-message, with the
//! original's published figures beside ours (PROTOCOL.md §10, the original README).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Peer, Recorder, befriend, bounded, connect, load_message};
use crate::Target;
use crate::stats::Percentiles;

/// One parity test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParityResult {
    /// Which test.
    pub name: String,
    /// What the original claims.
    pub original: String,
    /// Messages attempted.
    pub attempted: u64,
    /// Messages acknowledged (echo).
    pub succeeded: u64,
    /// Wall time.
    pub seconds: f64,
    /// Acknowledged messages per second.
    pub messages_per_second: f64,
    /// Send → echo.
    pub latency: Percentiles,
}

/// 100 pairs, concurrently: A writes B by receiver id, B replies by conversation id
/// (TestPerformance_ConcurrentMessages). Original: 100 pairs in < 5 s, 800-1,000 msg/s.
pub async fn pairs(target: &Target, n: usize) -> Result<ParityResult, String> {
    let rec = Arc::new(Recorder::default());
    rec.setup.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let t = Arc::new(target.clone());
    let r = rec.clone();
    let results = bounded("parity: pairs", (0..n).collect(), n, move |i| {
        let (t, r) = (t.clone(), r.clone());
        async move {
            let mut a = connect(&t, &r, Uuid::new_v4(), i, 2 * i)
                .await
                .map_err(|e| e.to_string())?;
            let mut b = connect(&t, &r, Uuid::new_v4(), i + 1, 2 * i + 1)
                .await
                .map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            befriend(&mut a, &mut b).await?;
            Ok::<_, String>(t0.elapsed())
        }
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let lat = crate::stats::Latency::default();
    let mut ok = 0;
    for d in results.iter().flatten() {
        ok += 1;
        // Two messages each way round trip (send → echo → delivery → reply → echo).
        lat.record(d.as_micros() as u64 / 2);
    }
    Ok(ParityResult {
        name: "100 pairs exchanging messages".into(),
        original: "100 pairs < 5 s; 800-1,000 msg/s; avg < 50 ms, p95 < 100 ms".into(),
        attempted: 2 * n as u64,
        succeeded: 2 * ok,
        seconds,
        messages_per_second: (2 * ok) as f64 / seconds,
        latency: lat.percentiles(),
    })
}

/// `conns` connections send `each` messages with 10 ms pacing, latency to the echo
/// (TestPerformance_WebSocketCapacity). Original: avg < 50 ms, p95 < 100 ms claimed.
pub async fn capacity(target: &Target, conns: usize, each: u64) -> Result<ParityResult, String> {
    let rec = Arc::new(Recorder::default());
    rec.setup.store(true, Ordering::Relaxed);
    let pairs = connect_pairs(target, &rec, conns / 2).await?;
    rec.setup.store(false, Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (a, b, conv)) in pairs.into_iter().enumerate() {
        tasks.spawn(async move {
            for n in 0..each {
                a.conn.send(load_message(conv, 2 * i, n)).await;
                b.conn.send(load_message(conv, 2 * i + 1, n)).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (a, b)
        });
    }
    let report = EchoReport {
        name: "500 connections x 5 messages",
        original: "success >= 80%; avg < 1 s, p95 < 3 s asserted; avg < 50 ms, p95 < 100 ms claimed",
        attempted: conns as u64 * each,
        wait: Duration::from_secs(10),
    };
    report.finish(tasks, &rec, started).await
}

/// `users` users each send `each` messages as fast as acknowledged, in their own
/// conversation (TestPerformance_HighThroughput). Original: >= 50 msg/s asserted,
/// 500-700 TPS claimed.
pub async fn high_throughput(
    target: &Target,
    users: usize,
    each: u64,
) -> Result<ParityResult, String> {
    let rec = Arc::new(Recorder::default());
    rec.setup.store(true, Ordering::Relaxed);
    let pairs = connect_pairs(target, &rec, users).await?;
    rec.setup.store(false, Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (a, b, conv)) in pairs.into_iter().enumerate() {
        tasks.spawn(async move {
            for n in 0..each {
                a.conn.send(load_message(conv, i, n)).await;
            }
            (a, b)
        });
    }
    let report = EchoReport {
        name: "100 users x 50 messages",
        original: ">= 50 msg/s asserted; 500-700 TPS claimed",
        attempted: users as u64 * each,
        wait: Duration::from_secs(20),
    };
    report.finish(tasks, &rec, started).await
}

/// Connects `n` pairs of fresh users (each pair on two nodes) and opens their
/// conversation; setup traffic is not measured.
async fn connect_pairs(
    target: &Target,
    rec: &Arc<Recorder>,
    n: usize,
) -> Result<Vec<(Peer, Peer, Uuid)>, String> {
    let t = Arc::new(target.clone());
    let r = rec.clone();
    bounded("parity: connecting", (0..n).collect(), 64, move |i| {
        let (t, r) = (t.clone(), r.clone());
        async move {
            let mut a = connect(&t, &r, Uuid::new_v4(), i, 2 * i)
                .await
                .map_err(|e| e.to_string())?;
            let mut b = connect(&t, &r, Uuid::new_v4(), i + 1, 2 * i + 1)
                .await
                .map_err(|e| e.to_string())?;
            let conv = befriend(&mut a, &mut b).await?;
            Ok::<_, String>((a, b, conv))
        }
    })
    .await
    .into_iter()
    .collect()
}

/// How a send-and-count-echoes parity test is reported.
struct EchoReport {
    name: &'static str,
    original: &'static str,
    attempted: u64,
    /// How long to wait for the last echoes once every send is out.
    wait: Duration,
}

impl EchoReport {
    /// Waits for the senders (kept open until then) and the echoes, and reports.
    async fn finish(
        self,
        mut senders: tokio::task::JoinSet<(Peer, Peer)>,
        rec: &Recorder,
        started: Instant,
    ) -> Result<ParityResult, String> {
        let mut keep = Vec::new();
        while let Some(r) = senders.join_next().await {
            keep.push(r.map_err(|e| e.to_string())?);
        }
        let deadline = Instant::now() + self.wait;
        while rec.echoed.load(Ordering::Relaxed) < self.attempted && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        let succeeded = rec.echoed.load(Ordering::Relaxed);
        Ok(ParityResult {
            name: self.name.into(),
            original: self.original.into(),
            attempted: self.attempted,
            succeeded,
            seconds,
            messages_per_second: succeeded as f64 / seconds,
            latency: rec.echo_latency.percentiles(),
        })
    }
}
