//! The per-user send rate limit: a token bucket per local user, kept with the user's
//! delivery state (`per_second` tokens a second, a burst of twice that); an HTTP forward
//! takes one token per message it sends, at once (a user without a device on this node
//! gets a bucket of its own here). Beside it, the
//! user's chatter: when `heartbeat` last refreshed presence and when `typing` last
//! published per conversation, so neither costs a Redis round trip per frame.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Hub;
use crate::model::{ConversationId, UserId};

/// A heartbeat refreshes the user's presence at most this often; the node's periodic
/// refresh (every 10 s, TTL 30 s) keeps every connected user online in between.
pub const HEARTBEAT_REFRESH_EVERY: Duration = Duration::from_secs(10);

/// When the user's heartbeat and typing frames last cost something.
#[derive(Default)]
pub(super) struct Chatter {
    heartbeat_refreshed: Option<Instant>,
    typing: HashMap<ConversationId, Instant>,
}

impl Chatter {
    /// True when a heartbeat at `now` should refresh presence (and records it).
    fn heartbeat(&mut self, now: Instant) -> bool {
        match self.heartbeat_refreshed {
            Some(t) if now.saturating_duration_since(t) < HEARTBEAT_REFRESH_EVERY => false,
            _ => {
                self.heartbeat_refreshed = Some(now);
                true
            }
        }
    }

    /// True when typing in `conversation` at `now` should be published (and records it):
    /// at most once per `every`.
    fn typing(&mut self, conversation: ConversationId, every: Duration, now: Instant) -> bool {
        if every.is_zero() {
            return true;
        }
        if let Some(t) = self.typing.get(&conversation)
            && now.saturating_duration_since(*t) < every
        {
            return false;
        }
        // Forget conversations whose interval has passed, so the map stays small.
        if self.typing.len() >= 32 {
            self.typing
                .retain(|_, t| now.saturating_duration_since(*t) < every);
        }
        self.typing.insert(conversation, now);
        true
    }
}

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

    /// Takes `n` tokens at once at `now`, when the bucket holds `n` or, for more than the
    /// burst, is full: a send of more messages than the burst leaves the bucket in debt,
    /// which the refill pays back before the next send, so the rate holds over time.
    /// Otherwise takes nothing and returns the milliseconds until it would succeed.
    fn take_many(&mut self, n: u64, per_second: u64, now: Instant) -> Result<(), u64> {
        let burst = (per_second * 2) as f64;
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens.min(burst) + elapsed * per_second as f64).min(burst);
        self.refilled = now;
        let need = (n as f64).min(burst);
        if self.tokens >= need {
            self.tokens -= n as f64;
            Ok(())
        } else {
            Err((((need - self.tokens) / per_second as f64) * 1000.0).ceil() as u64)
        }
    }

    /// True when the bucket is full at `now` (as good as absent).
    fn full_at(&self, per_second: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens + elapsed * per_second as f64 >= (per_second * 2) as f64
    }
}

/// Away budgets a hub shard holds before it forgets the full ones.
const AWAY_PRUNE_AT: usize = 1024;

impl Hub {
    /// Takes `n` tokens at once from the user's send budget (see [`Bucket::take_many`]):
    /// the budget of the user's devices here, or, without one, a budget kept for the user
    /// on this node (handed to the user's first device). `Err` carries the milliseconds to
    /// wait. `per_second` 0 means unlimited.
    pub fn allow_sends(&self, user: UserId, n: u64, per_second: u64) -> Result<(), u64> {
        if per_second == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut shard = self.shard(user);
        if let Some(e) = shard.users.get_mut(&user) {
            return e.send_budget.take_many(n, per_second, now);
        }
        if shard.away_budgets.len() >= AWAY_PRUNE_AT {
            shard
                .away_budgets
                .retain(|_, b| !b.full_at(per_second, now));
        }
        shard
            .away_budgets
            .entry(user)
            .or_insert_with(Bucket::full)
            .take_many(n, per_second, now)
    }

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

    /// True when a `heartbeat` of `user` should refresh presence: at most once per
    /// [`HEARTBEAT_REFRESH_EVERY`] per user on this node.
    pub fn allow_heartbeat_refresh(&self, user: UserId) -> bool {
        let mut shard = self.shard(user);
        match shard.users.get_mut(&user) {
            Some(e) => e.chatter.heartbeat(Instant::now()),
            None => false,
        }
    }

    /// True when `user` typing in `conversation` should be published: at most once per
    /// `every` per (user, conversation) on this node; extra ones are dropped silently.
    pub fn allow_typing(
        &self,
        user: UserId,
        conversation: ConversationId,
        every: Duration,
    ) -> bool {
        let mut shard = self.shard(user);
        match shard.users.get_mut(&user) {
            Some(e) => e.chatter.typing(conversation, every, Instant::now()),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Bucket;

    #[test]
    fn heartbeats_and_typing_are_coalesced() {
        let mut c = super::Chatter::default();
        let t0 = std::time::Instant::now();
        assert!(c.heartbeat(t0));
        assert!(!c.heartbeat(t0 + Duration::from_secs(9)));
        assert!(c.heartbeat(t0 + super::HEARTBEAT_REFRESH_EVERY));
        let (a, b) = (
            crate::model::ConversationId::new_v4(),
            crate::model::ConversationId::new_v4(),
        );
        let every = Duration::from_secs(2);
        assert!(c.typing(a, every, t0));
        assert!(!c.typing(a, every, t0 + Duration::from_millis(1999)));
        assert!(c.typing(b, every, t0), "per conversation");
        assert!(c.typing(a, every, t0 + every));
        assert!(c.typing(a, Duration::ZERO, t0), "0 turns the throttle off");
        // Many conversations: entries whose interval has passed are forgotten, recent ones
        // kept (the frame budget bounds how many a connection can add in an interval).
        let t1 = t0 + Duration::from_secs(10);
        for _ in 0..100 {
            assert!(c.typing(crate::model::ConversationId::new_v4(), every, t1));
        }
        assert!(
            !c.typing.contains_key(&a),
            "a's interval had passed: forgotten"
        );
        assert_eq!(c.typing.len(), 100);
        assert!(c.typing(a, every, t1 + every));
        assert_eq!(c.typing.len(), 1, "every other interval had passed");
    }

    #[test]
    fn many_at_once_all_or_nothing_and_debt_past_the_burst() {
        let mut b = Bucket::full();
        let t0 = b.refilled;
        assert_eq!(b.take_many(5, 3, t0), Ok(()), "within the burst of 6");
        assert!(b.take_many(2, 3, t0).is_err(), "one left: two are refused");
        assert_eq!(
            b.take_many(1, 3, t0),
            Ok(()),
            "nothing was taken by the refusal"
        );
        let t1 = t0 + Duration::from_secs(2);
        assert!(b.full_at(3, t1));
        assert_eq!(
            b.take_many(12, 3, t1),
            Ok(()),
            "a full bucket lets 12 through"
        );
        // 6 in debt: 7 tokens to earn (7/3 s) before one send passes again.
        assert_eq!(b.take_many(1, 3, t1), Err(2334));
        assert!(b.take_many(1, 3, t1 + Duration::from_millis(2300)).is_err());
        assert!(b.take_many(1, 3, t1 + Duration::from_millis(2400)).is_ok());
    }

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
