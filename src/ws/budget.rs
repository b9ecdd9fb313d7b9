//! The per-connection budget for frames other than `message` (which has its own per-user
//! rate, `max_messages_per_second`): a token bucket of `rate` frames a second and `burst`
//! at once. A frame over the budget is answered with an `error` (`too_many_frames`) and
//! ignored; a client that goes on sending refused frames — `burst` refusals in a row — is
//! closed with 1008 (policy violation).

use std::time::{Duration, Instant};

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the budget: run it.
    Run,
    /// Over the budget: refuse it; a token is due after this long.
    Refuse(Duration),
    /// Refused again and again: close the connection.
    Close,
}

/// One connection's budget.
#[derive(Debug)]
pub struct FrameBudget {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    /// Refusals since the last frame that ran.
    strikes: u32,
}

impl FrameBudget {
    /// A full bucket of `burst` tokens refilled at `rate` a second; `rate` 0 turns the
    /// budget off.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        FrameBudget {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            refilled: now,
            strikes: 0,
        }
    }

    /// Takes a token for a frame arriving at `now`.
    pub fn take(&mut self, now: Instant) -> Verdict {
        if self.rate == 0.0 {
            return Verdict::Run;
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.strikes = 0;
            return Verdict::Run;
        }
        self.strikes += 1;
        if self.strikes as f64 > self.burst {
            return Verdict::Close;
        }
        Verdict::Refuse(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_then_a_close_for_persistent_abuse() {
        let t0 = Instant::now();
        let mut b = FrameBudget::new(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(b.take(t0), Verdict::Run);
        }
        let Verdict::Refuse(wait) = b.take(t0) else {
            panic!("the sixth frame at once is refused")
        };
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        // One token every 100 ms.
        assert_eq!(b.take(t0 + Duration::from_millis(100)), Verdict::Run);
        assert!(matches!(
            b.take(t0 + Duration::from_millis(100)),
            Verdict::Refuse(_)
        ));
        // A frame that runs forgives earlier refusals.
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!(b.take(t1), Verdict::Run);
        for _ in 0..5 {
            assert!(matches!(b.take(t1), Verdict::Refuse(_)));
        }
        assert_eq!(b.take(t1), Verdict::Close, "burst + 1 refusals in a row");
        // Idle time refills up to the burst, no more.
        let mut b = FrameBudget::new(10, 5, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| b.take(later) == Verdict::Run).count(), 5);
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let t0 = Instant::now();
        let mut b = FrameBudget::new(0, 1, t0);
        assert!((0..1000).all(|_| b.take(t0) == Verdict::Run));
    }
}
