//! Admission control: a send the node cannot write soon is refused at once with a
//! retryable `overloaded` error, instead of joining a queue that only grows.
//!
//! Three signals, each cheap to read on every send:
//! * the shard's queue in time, not only in count: the jobs waiting times the recent cost
//!   of a job (an average over the shard's last batches), against [`Limits::queue_target`].
//!   A burst on a calm shard may exceed the target for up to [`Limits::burst`] (a client
//!   of the original service does not retry `overloaded`, and a few thousand sends at once
//!   are normal for it); once the shard has refused anything, the allowance is withheld
//!   until it has been calm for twice that long, so sustained overload meets the target;
//! * the node's own saturation: how late a timer fires on the runtime (a task that sleeps
//!   [`LAG_TICK`] and measures the overshoot), against [`Limits::lag_limit`]. It catches a
//!   node whose CPU is exhausted by something other than the writer (fan-out, delivery);
//! * the deadline: a job that waited past [`Limits::deadline`] by the time its batch starts
//!   is refused before it is written (the client retries it with the same `client_msg_id`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics as m;

/// How often the lag probe wakes up.
pub const LAG_TICK: Duration = Duration::from_millis(10);

/// The thresholds (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Refuse a send when the shard's queue would take longer than this to drain.
    pub queue_target: Duration,
    /// How much work beyond the target a calm shard accepts from a burst.
    pub burst: Duration,
    /// Refuse a queued send that waited longer than this when its batch starts.
    pub deadline: Duration,
    /// Refuse sends while the runtime's timers fire this late.
    pub lag_limit: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue_target: Duration::from_millis(1000),
            burst: Duration::from_millis(2000),
            deadline: Duration::from_millis(4000),
            lag_limit: Duration::from_millis(500),
        }
    }
}

/// Why a send was refused (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The shard's queue is long in time.
    Queue,
    /// The node's runtime is saturated.
    Lag,
    /// The job waited past the deadline.
    Deadline,
    /// The queue is full in count (a last resort; the time bound comes first).
    Full,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Queue => "queue",
            Refusal::Lag => "lag",
            Refusal::Deadline => "deadline",
            Refusal::Full => "full",
        }
    }

    /// Counts the refusal.
    pub fn count(self) {
        metrics::counter!(m::SENDS_REFUSED, "reason" => self.label()).increment(1);
    }
}

/// The fewest jobs in a batch whose time counts towards a shard's pace.
pub const MIN_SAMPLE_JOBS: usize = 16;

/// One shard's recent pace: nanoseconds a job costs, averaged over its last batches.
#[derive(Default)]
pub struct Pace {
    ns_per_job: AtomicU64,
    /// When the shard last refused a send (nanoseconds since the admission's epoch, plus
    /// one; zero: never).
    refused_at: AtomicU64,
}

impl Pace {
    /// A batch of `jobs` took `took`. Batches smaller than [`MIN_SAMPLE_JOBS`] say little
    /// about a queue: their time is mostly the batch's fixed cost (a commit, an fsync), which
    /// a long queue shares among up to a whole batch of jobs, so dividing it by a handful of
    /// jobs would make a burst look many times longer to drain than it is.
    pub fn record(&self, jobs: usize, took: Duration) {
        if jobs < MIN_SAMPLE_JOBS {
            return;
        }
        let sample = (took.as_nanos() / jobs as u128).min(u64::MAX as u128) as u64;
        let old = self.ns_per_job.load(Ordering::Relaxed);
        // An average that follows a slowdown within a few batches.
        let new = if old == 0 {
            sample
        } else {
            (old * 3 + sample) / 4
        };
        self.ns_per_job.store(new, Ordering::Relaxed);
    }

    /// How long `queued` jobs take at the recent pace.
    pub fn drain_time(&self, queued: usize) -> Duration {
        Duration::from_nanos(
            self.ns_per_job
                .load(Ordering::Relaxed)
                .saturating_mul(queued as u64),
        )
    }
}

/// The node-wide admission state: the limits and the runtime lag probe.
#[derive(Clone)]
pub struct Admission {
    limits: Limits,
    lag_ns: Arc<AtomicU64>,
    epoch: Instant,
}

impl Admission {
    /// Starts the lag probe.
    pub fn start(limits: Limits) -> Admission {
        let lag_ns = Arc::new(AtomicU64::new(0));
        let probe = Arc::downgrade(&lag_ns);
        tokio::spawn(async move {
            let mut smoothed = 0u64;
            loop {
                let before = Instant::now();
                tokio::time::sleep(LAG_TICK).await;
                let Some(lag) = probe.upgrade() else { return };
                let late = before.elapsed().saturating_sub(LAG_TICK).as_nanos() as u64;
                // Rises at once, falls over a few ticks: one late tick is a signal, one
                // punctual tick is not yet relief.
                smoothed = late.max((smoothed * 7 + late) / 8);
                lag.store(smoothed, Ordering::Relaxed);
                metrics::gauge!(m::RUNTIME_LAG).set(smoothed as f64 / 1e9);
            }
        });
        Admission {
            limits,
            lag_ns,
            epoch: Instant::now(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a new send may join a shard queue holding `queued` jobs at `pace`; when not,
    /// why and after how long to try again.
    pub fn check(&self, pace: &Pace, queued: usize) -> Result<(), (Refusal, u64)> {
        let lag = Duration::from_nanos(self.lag_ns.load(Ordering::Relaxed));
        if lag > self.limits.lag_limit {
            return Err((Refusal::Lag, retry_after(lag)));
        }
        let wait = pace.drain_time(queued);
        if wait <= self.limits.queue_target {
            return Ok(());
        }
        let now = self.epoch.elapsed().as_nanos() as u64 + 1;
        let refused = pace.refused_at.load(Ordering::Relaxed);
        let calm =
            refused == 0 || now.saturating_sub(refused) > 2 * self.limits.burst.as_nanos() as u64;
        if calm && wait <= self.limits.queue_target + self.limits.burst {
            return Ok(());
        }
        pace.refused_at.store(now, Ordering::Relaxed);
        Err((Refusal::Queue, retry_after(wait)))
    }

    /// Whether a job received at `received` is still worth writing.
    pub fn fresh(&self, received: Instant) -> bool {
        received.elapsed() <= self.limits.deadline
    }
}

/// The delay suggested to a refused client: about the time the backlog needs, within
/// 50 ms..2 s.
pub fn retry_after(backlog: Duration) -> u64 {
    (backlog.as_millis() as u64).clamp(50, 2000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_in_time() {
        let pace = Pace::default();
        assert_eq!(pace.drain_time(1000), Duration::ZERO, "no pace yet");
        pace.record(100, Duration::from_millis(10)); // 100 µs a job
        assert_eq!(pace.drain_time(300), Duration::from_millis(30));
        pace.record(20, Duration::from_millis(20)); // slower: 1 ms a job
        assert!(pace.drain_time(300) > Duration::from_millis(60));
        let before = pace.drain_time(300);
        pace.record(0, Duration::from_secs(1));
        pace.record(2, Duration::from_secs(1));
        assert_eq!(
            pace.drain_time(300),
            before,
            "an empty or small batch (mostly its commit) says nothing"
        );
    }

    #[tokio::test]
    async fn checks_the_queue_and_the_deadline() {
        let a = Admission::start(Limits {
            queue_target: Duration::from_millis(50),
            burst: Duration::ZERO,
            deadline: Duration::from_millis(200),
            lag_limit: Duration::from_secs(3600),
        });
        let pace = Pace::default();
        pace.record(16, Duration::from_millis(16));
        assert!(a.check(&pace, 10).is_ok());
        let (why, after) = a.check(&pace, 100).unwrap_err();
        assert_eq!(why, Refusal::Queue);
        assert_eq!(after, 100);
        assert!(a.fresh(Instant::now()));
        assert!(!a.fresh(Instant::now() - Duration::from_millis(300)));
        assert_eq!(retry_after(Duration::from_millis(1)), 50);
        assert_eq!(retry_after(Duration::from_secs(60)), 2000);
    }

    #[tokio::test]
    async fn a_burst_on_a_calm_shard_is_taken_and_sustained_overload_is_not() {
        let a = Admission::start(Limits {
            queue_target: Duration::from_millis(50),
            burst: Duration::from_millis(100),
            deadline: Duration::from_secs(1),
            lag_limit: Duration::from_secs(3600),
        });
        let pace = Pace::default();
        pace.record(16, Duration::from_millis(16)); // 1 ms a job
        assert!(
            a.check(&pace, 120).is_ok(),
            "120 ms of work: within the burst"
        );
        let (why, _) = a.check(&pace, 200).unwrap_err();
        assert_eq!(why, Refusal::Queue, "past the target and the burst");
        // Having refused, the shard gets no allowance until it has been calm a while.
        let (why, _) = a.check(&pace, 60).unwrap_err();
        assert_eq!(
            why,
            Refusal::Queue,
            "no burst allowance right after a refusal"
        );
        assert!(a.check(&pace, 40).is_ok(), "within the target, always");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            a.check(&pace, 120).is_ok(),
            "calm again: the allowance is back"
        );
    }
}
