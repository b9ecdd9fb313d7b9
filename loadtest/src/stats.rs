//! Latency histograms (HDR, microseconds) and the numbers a scenario reports.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch (the clock messages carry for end-to-end latency).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// A shared latency histogram (1 µs .. 60 s, 3 significant digits).
pub struct Latency {
    hist: Mutex<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")),
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Records one latency in microseconds.
    pub fn record(&self, micros: u64) {
        let _ = self
            .hist
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(micros.clamp(1, 60_000_000));
    }

    /// The percentiles so far, then starts over.
    pub fn take(&self) -> Percentiles {
        let p = self.percentiles();
        self.hist.lock().unwrap_or_else(|e| e.into_inner()).reset();
        p
    }

    /// The percentiles so far.
    pub fn percentiles(&self) -> Percentiles {
        let h = self.hist.lock().unwrap_or_else(|e| e.into_inner());
        let ms = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// A one-line progress display on stderr.
pub fn progress(label: &str, done: u64, total: u64) {
    let width = 30;
    let filled = if total == 0 {
        width
    } else {
        (done * width / total.max(1)).min(width)
    } as usize;
    eprint!(
        "\r{label:<28} [{}{}] {done}/{total}   ",
        "#".repeat(filled),
        ".".repeat(width as usize - filled)
    );
    if done >= total {
        eprintln!();
    }
}
