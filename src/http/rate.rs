//! The per-user HTTP request rate: a token bucket per caller (`HTTP_RATE_PER_SECOND`
//! tokens a second, `HTTP_RATE_BURST` at once) on this node. Over it the answer is 429
//! `rate_limited` with `Retry-After`.
//!
//! Per node, not cluster-wide: a cluster-wide bucket costs a Redis round trip on every
//! request, and the limit is there to stop a script, not to meter a client exactly. A
//! Gateway that spreads one user's requests over N nodes lets through at most N times the
//! rate, which still stops a runaway client.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::UserId;

const SHARDS: usize = 16;
/// A shard forgets full buckets (the same as absent ones) once it holds this many users,
/// then again each time it has doubled since.
const PRUNE_AT: usize = 4096;

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

#[derive(Default)]
struct Shard {
    buckets: HashMap<UserId, Bucket>,
    prune_at: usize,
}

/// The buckets of every caller of this node.
pub struct HttpRate {
    rate: f64,
    burst: f64,
    shards: Vec<Mutex<Shard>>,
}

impl HttpRate {
    /// `per_second` requests a second per user, `burst` at once; `per_second` 0 = no limit.
    pub fn new(per_second: u32, burst: u32) -> Self {
        HttpRate {
            rate: per_second as f64,
            burst: burst.max(1) as f64,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The configured rate (requests a second; 0 = none).
    pub fn per_second(&self) -> u32 {
        self.rate as u32
    }

    /// Takes a token for a request of `user` at `now`; `Err(wait)` when none is left, with
    /// the time until one is.
    pub fn take(&self, user: UserId, now: Instant) -> Result<(), Duration> {
        if self.rate == 0.0 {
            return Ok(());
        }
        let shard = &self.shards[(user.as_uuid().as_u128() as usize) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if shard.buckets.len() >= shard.prune_at.max(PRUNE_AT) {
            let (rate, burst) = (self.rate, self.burst);
            shard.buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.refilled).as_secs_f64() * rate < burst
            });
            // Amortised: the next pass when the shard has doubled.
            shard.prune_at = shard.buckets.len() * 2;
        }
        let b = shard.buckets.entry(user).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(b.refilled).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate_per_user() {
        let r = HttpRate::new(10, 3);
        let (a, b) = (UserId::new_v4(), UserId::new_v4());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.take(a, t0).is_ok());
        }
        let wait = r.take(a, t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        assert!(r.take(b, t0).is_ok(), "buckets are per user");
        assert!(r.take(a, t0 + Duration::from_millis(100)).is_ok());
        assert!(r.take(a, t0 + Duration::from_millis(100)).is_err());
        assert!((0..1000).all(|_| HttpRate::new(0, 1).take(a, t0).is_ok()));
    }

    #[test]
    fn full_buckets_are_forgotten_and_others_kept() {
        let r = HttpRate::new(1, 2);
        let len = || -> usize {
            r.shards
                .iter()
                .map(|s| s.lock().unwrap().buckets.len())
                .sum()
        };
        let t0 = Instant::now();
        let early = PRUNE_AT * SHARDS / 2;
        for _ in 0..early {
            r.take(UserId::new_v4(), t0).unwrap();
        }
        assert_eq!(len(), early, "no shard reached the pruning size yet");
        // 10 s later every early bucket is full again; `busy` empties its own.
        let later = t0 + Duration::from_secs(10);
        let busy = UserId::new_v4();
        assert!(r.take(busy, later).is_ok() && r.take(busy, later).is_ok());
        let fresh = PRUNE_AT * SHARDS * 2;
        for _ in 0..fresh {
            let _ = r.take(UserId::new_v4(), later);
        }
        assert!(
            len() <= fresh + 1,
            "the early buckets were forgotten: {}",
            len()
        );
        assert!(r.take(busy, later).is_err(), "a partly used bucket is kept");
    }
}
