//! A sender's outbox: the load messages one connection sent that the server has neither
//! acknowledged (the sender's echo) nor refused, and which of them to send again after a
//! refusal (`overloaded` or `rate_limited`), always with the same `client_msg_id`, so a
//! send that was in fact stored comes back as the original and is never stored twice.
//!
//! A refusal that names its send (`data.client_msg_id`) marks that send. One that does not
//! (the original contract's errors carry no id) marks the oldest pending send not already
//! marked: every send before the refused one has been accepted or refused by then (a
//! connection's sends are admitted in order), but an accepted one may still wait for its
//! echo, so the guess can be wrong. It is corrected as soon as the truth shows: when a
//! send marked by a guess is echoed, or when the echo of a send comes from an attempt
//! before some it was sent again on guesses, each of those guesses belonged to another
//! send, and its mark moves to the oldest unmarked pending send. Sending again a send that
//! was stored costs one duplicate echo and nothing else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use uuid::Uuid;

use crate::client::WeakConn;
use crate::frames;
use crate::stats::now_micros;

/// A load message: (stream, number in the stream).
pub type Key = (usize, u64);

/// Why a pending send is to be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// The refusal named it.
    Named,
    /// The refusal named no send; this is the oldest candidate.
    Guessed,
}

#[derive(Debug)]
struct Pending {
    /// Position in send order (later attempts go to the end).
    order: u64,
    conversation: Uuid,
    first_sent_us: u64,
    /// Every attempt: when it was sent, and whether on a guessed mark (the last is the
    /// current one).
    attempts: Vec<(u64, bool)>,
    mark: Option<Mark>,
}

/// How an echo counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// The first acknowledgement of a pending send: it is accepted.
    First,
    /// Another acknowledgement of a send already accepted (the original, returned for a
    /// send made again), or of one given up.
    Repeat,
    /// A load message this outbox never tracked (sent without it, e.g. by parity tests).
    Untracked,
}

/// What to send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resend {
    /// Its conversation.
    pub conversation: Uuid,
    /// When it was first sent, µs.
    pub first_sent_us: u64,
    /// This attempt, µs.
    pub attempt_us: u64,
}

/// The bookkeeping of one connection's sends (no I/O; see [`Outbox`]).
#[derive(Debug, Default)]
pub struct Book {
    next: u64,
    order: BTreeMap<u64, Key>,
    pending: HashMap<Key, Pending>,
    streams: HashSet<usize>,
}

impl Book {
    /// Records the first send of `key`.
    pub fn sent(&mut self, key: Key, conversation: Uuid, sent_us: u64) {
        self.streams.insert(key.0);
        let order = self.next;
        self.next += 1;
        self.order.insert(order, key);
        self.pending.insert(
            key,
            Pending {
                order,
                conversation,
                first_sent_us: sent_us,
                attempts: vec![(sent_us, false)],
                mark: None,
            },
        );
    }

    /// Marks the oldest pending send that is not marked yet, by a guess.
    fn guess(&mut self) -> Option<Key> {
        let key = *self
            .order
            .values()
            .find(|k| self.pending.get(k).is_some_and(|p| p.mark.is_none()))?;
        self.pending.get_mut(&key)?.mark = Some(Mark::Guessed);
        Some(key)
    }

    /// The echo of `key`, from the attempt sent at `attempt_us`. Returns how it counts, and
    /// the sends now marked for sending again because guesses turned out wrong.
    pub fn echoed(&mut self, key: Key, attempt_us: u64) -> (Echo, Vec<Key>) {
        let Some(p) = self.pending.remove(&key) else {
            let how = if self.streams.contains(&key.0) {
                Echo::Repeat
            } else {
                Echo::Untracked
            };
            return (how, Vec::new());
        };
        self.order.remove(&p.order);
        // The attempt that was stored: the ones after it were not refused sends of this
        // message, so the guesses they were sent on belonged to other sends.
        let stored = p
            .attempts
            .iter()
            .position(|&(t, _)| t == attempt_us)
            .unwrap_or(p.attempts.len() - 1);
        let wrong = p.attempts[stored + 1..]
            .iter()
            .filter(|&&(_, on_guess)| on_guess)
            .count()
            + usize::from(p.mark == Some(Mark::Guessed));
        let moved = (0..wrong).filter_map(|_| self.guess()).collect();
        (Echo::First, moved)
    }

    /// A refusal, naming its send or not. Returns the send marked for sending again (none
    /// when the named send is not pending, or nothing is).
    pub fn refused(&mut self, named: Option<Key>) -> Option<Key> {
        match named {
            Some(key) => {
                let p = self.pending.get_mut(&key)?;
                if p.mark.is_some() {
                    return None;
                }
                p.mark = Some(Mark::Named);
                Some(key)
            }
            None => self.guess(),
        }
    }

    /// Time to send `key` again: what to send, if it is still pending and marked. The
    /// attempt goes to the end of the send order.
    pub fn resend(&mut self, key: Key, now_us: u64) -> Option<Resend> {
        let p = self.pending.get_mut(&key)?;
        let mark = p.mark.take()?;
        p.attempts.push((now_us, mark == Mark::Guessed));
        self.order.remove(&p.order);
        p.order = self.next;
        self.next += 1;
        self.order.insert(p.order, key);
        Some(Resend {
            conversation: p.conversation,
            first_sent_us: p.first_sent_us,
            attempt_us: now_us,
        })
    }

    /// Gives up every pending send (never accepted); returns them.
    pub fn abandon(&mut self) -> Vec<Key> {
        self.order.clear();
        self.pending.drain().map(|(k, _)| k).collect()
    }

    /// Sends neither acknowledged nor given up.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// One connection's [`Book`] and the way back to its socket.
#[derive(Default)]
pub struct Outbox {
    book: Mutex<Book>,
    conn: OnceLock<WeakConn>,
}

impl Outbox {
    /// The connection sends go through (set once, when it is open).
    pub fn attach(&self, conn: WeakConn) {
        let _ = self.conn.set(conn);
    }

    /// The book, locked.
    pub fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The frame of message `n` of `stream` (with its `client_msg_id`), recorded as sent.
    pub fn first_send(&self, conversation: Uuid, stream: usize, n: u64) -> Bytes {
        let now = now_micros();
        self.book().sent((stream, n), conversation, now);
        frames::load_frame(conversation, stream, n, now, now, true)
    }

    /// Sends `key` again if it is still marked; true when it went out.
    pub async fn resend(&self, key: Key) -> bool {
        let Some(r) = self.book().resend(key, now_micros()) else {
            return false;
        };
        let Some(conn) = self.conn.get().and_then(WeakConn::upgrade) else {
            return false;
        };
        let frame = frames::load_frame(
            r.conversation,
            key.0,
            key.1,
            r.first_sent_us,
            r.attempt_us,
            true,
        );
        conn.send(frame).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(sends: u64) -> Book {
        let mut b = Book::default();
        for n in 0..sends {
            b.sent((1, n), Uuid::nil(), 100 + n);
        }
        b
    }

    #[test]
    fn a_named_refusal_is_sent_again_once_and_accepted_once() {
        let mut b = book(3);
        assert_eq!(b.refused(Some((1, 1))), Some((1, 1)));
        assert_eq!(b.refused(Some((1, 1))), None, "already marked");
        assert_eq!(b.echoed((1, 0), 100), (Echo::First, vec![]));
        let r = b.resend((1, 1), 500).expect("marked");
        assert_eq!((r.first_sent_us, r.attempt_us), (101, 500));
        assert_eq!(b.resend((1, 1), 600), None, "one resend per refusal");
        assert_eq!(b.echoed((1, 1), 500), (Echo::First, vec![]));
        assert_eq!(b.echoed((1, 1), 500), (Echo::Repeat, vec![]));
        assert_eq!(b.echoed((9, 0), 1), (Echo::Untracked, vec![]));
        assert_eq!(b.pending(), 1);
        assert_eq!(b.abandon(), vec![(1, 2)]);
        assert_eq!(b.echoed((1, 2), 102), (Echo::Repeat, vec![]));
    }

    #[test]
    fn a_refusal_naming_no_send_marks_the_oldest_pending_one() {
        let mut b = book(3);
        assert_eq!(b.echoed((1, 0), 100).0, Echo::First);
        assert_eq!(b.refused(None), Some((1, 1)));
        assert_eq!(b.refused(None), Some((1, 2)));
        assert_eq!(b.refused(None), None, "nothing left to guess");
        assert_eq!(b.refused(Some((1, 7))), None, "never sent");
    }

    #[test]
    fn a_wrong_guess_moves_when_the_guessed_send_is_echoed() {
        // Sends 0, 1, 2; 0 was accepted (its echo is late), 1 refused.
        let mut b = book(3);
        assert_eq!(b.refused(None), Some((1, 0)), "the guess");
        // 0's echo shows it was accepted: the refusal was another send's.
        assert_eq!(b.echoed((1, 0), 100), (Echo::First, vec![(1, 1)]));
        assert!(b.resend((1, 0), 400).is_none(), "0 is not sent again");
        assert!(b.resend((1, 1), 400).is_some());
        assert_eq!(b.echoed((1, 1), 400), (Echo::First, vec![]));
        assert_eq!(b.echoed((1, 2), 102), (Echo::First, vec![]));
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn a_wrong_guess_moves_when_an_earlier_attempt_is_echoed() {
        // 0 accepted but slow; 1 refused; the guess picks 0 and sends it again first.
        let mut b = book(2);
        assert_eq!(b.refused(None), Some((1, 0)));
        assert!(b.resend((1, 0), 400).is_some());
        // The echo of 0's first attempt: the resend was not needed, 1 is the refused one.
        assert_eq!(b.echoed((1, 0), 100), (Echo::First, vec![(1, 1)]));
        // The resend's answer (the original) comes too and counts once only.
        assert_eq!(b.echoed((1, 0), 100), (Echo::Repeat, vec![]));
        assert!(b.resend((1, 1), 500).is_some());
        assert_eq!(b.echoed((1, 1), 500), (Echo::First, vec![]));
    }

    #[test]
    fn every_wrong_guess_moves_when_a_send_was_sent_again_on_several() {
        // 0 accepted (echo late); 1 and 2 refused. Both refusals are guessed onto 0, which
        // is sent again twice; its first attempt's echo hands both marks on.
        let mut b = book(3);
        assert_eq!(b.refused(None), Some((1, 0)));
        assert!(b.resend((1, 0), 400).is_some());
        assert_eq!(
            b.refused(None),
            Some((1, 1)),
            "1 is now the oldest unmarked"
        );
        assert!(b.resend((1, 1), 450).is_some());
        // 1's resend is refused too, and the guess picks 2 (sent before 0's and 1's
        // attempts), then 0 again for 2's own refusal.
        assert_eq!(b.refused(None), Some((1, 2)));
        assert_eq!(b.refused(None), Some((1, 0)));
        assert!(b.resend((1, 0), 500).is_some());
        assert!(b.resend((1, 2), 500).is_some());
        // 0's first attempt was stored: its two resends were on guesses that were wrong.
        let (echo, moved) = b.echoed((1, 0), 100);
        assert_eq!(echo, Echo::First);
        assert_eq!(moved, vec![(1, 1), (1, 2)]);
        for k in moved {
            assert!(b.resend(k, 600).is_some());
        }
        assert_eq!(b.echoed((1, 1), 600).0, Echo::First);
        assert_eq!(b.echoed((1, 2), 600).0, Echo::First);
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn a_right_guess_stays() {
        // 0 refused (guessed right), sent again; the echo comes from the new attempt.
        let mut b = book(2);
        assert_eq!(b.refused(None), Some((1, 0)));
        assert!(b.resend((1, 0), 400).is_some());
        assert_eq!(b.echoed((1, 0), 400), (Echo::First, vec![]));
        assert_eq!(b.echoed((1, 1), 101), (Echo::First, vec![]));
    }

    #[test]
    fn a_send_made_again_goes_to_the_end_of_the_order() {
        let mut b = book(2);
        assert_eq!(b.refused(Some((1, 0))), Some((1, 0)));
        assert!(b.resend((1, 0), 400).is_some());
        // A refusal naming nothing now points at 1, sent before the new attempt of 0.
        assert_eq!(b.refused(None), Some((1, 1)));
        assert_eq!(b.refused(None), Some((1, 0)));
    }
}
