//! The per-user send rate limit: a token bucket per local user, kept with the user's
//! delivery state (`per_second` tokens a second, a burst of twice that).

use std::time::Instant;

use super::Hub;
use crate::model::UserId;

/// One user's send budget.
pub(super) struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    /// A full bucket (the first refill caps it at the burst).
    pub(super) fn full() -> Bucket {
        Bucket {
            tokens: f64::MAX,
            refilled: Instant::now(),
        }
    }

    /// Refills for the time since the last take and takes one token at `now`. False when
    /// none is left.
    fn take(&mut self, per_second: u64, now: Instant) -> bool {
        let burst = (per_second * 2) as f64;
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens.min(burst) + elapsed * per_second as f64).min(burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Hub {
    /// Takes one token from the user's send budget (`per_second`, burst twice that; 0 means
    /// unlimited). False when the user is over the limit.
    pub fn allow_send(&self, user: UserId, per_second: u64) -> bool {
        if per_second == 0 {
            return true;
        }
        let mut shard = self.shard(user);
        let Some(e) = shard.users.get_mut(&user) else {
            return true;
        };
        e.send_budget.take(per_second, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Bucket;

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate() {
        let mut b = Bucket::full();
        let t0 = b.refilled;
        let taken = (0..10).filter(|_| b.take(3, t0)).count();
        assert_eq!(taken, 6, "the burst is twice the rate");
        assert!(!b.take(3, t0 + Duration::from_millis(100)));
        assert!(
            b.take(3, t0 + Duration::from_millis(400)),
            "one token a third of a second"
        );
        assert!(!b.take(3, t0 + Duration::from_millis(400)));
    }
}
