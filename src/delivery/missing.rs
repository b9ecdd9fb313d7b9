//! What a user has not received yet, read from PostgreSQL by cursor (the read queries of
//! the offline drain on connect and of the repair of gaps in live delivery).
//!
//! The newest `limit` pending messages are returned oldest first; conversations with more
//! pending than that are named in `truncated`, for the client to page through history.

use std::collections::HashMap;

use crate::domain::events::Truncated;
use crate::error::Result;
use crate::model::{ConversationId, UserId};
use crate::model::{Message, Timestamp};
use crate::store::members::Membership;
use crate::store::{self, Store};

/// Messages to deliver and what was left out.
#[derive(Debug, Default)]
pub struct Missing {
    /// Oldest first (by commit time, then seq).
    pub messages: Vec<Message>,
    /// Conversations with older messages left out.
    pub truncated: Vec<Truncated>,
}

/// What a user may be missing in one conversation: the seqs after `after` up to
/// `last_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The user has everything up to this seq (delivered, or pushed here).
    pub after: i64,
    /// The conversation's newest seq.
    pub last_seq: i64,
}

/// The memberships of `users`: where each stands in each of their conversations.
pub async fn memberships(store: &Store, users: &[UserId]) -> Result<Vec<Membership>> {
    let conn = store.conn().await?;
    store::members::memberships(&conn, users).await
}

/// Fetches what follows each position of `wants`, at most `limit` messages in all (the
/// newest).
pub async fn missing(store: &Store, wants: &[Want], limit: usize) -> Result<Missing> {
    let wants: Vec<&Want> = wants.iter().filter(|w| w.last_seq > w.after).collect();
    if wants.is_empty() || limit == 0 {
        let truncated = wants
            .iter()
            .map(|w| Truncated {
                conversation_id: w.conversation_id,
                skipped: w.last_seq - w.after,
                newest_skipped_seq: w.last_seq,
            })
            .collect();
        return Ok(Missing {
            messages: Vec::new(),
            truncated,
        });
    }
    let convs: Vec<ConversationId> = wants.iter().map(|w| w.conversation_id).collect();
    let afters: Vec<i64> = wants.iter().map(|w| w.after).collect();
    let conn = store.conn().await?;
    let fetched = store::messages::pending(&conn, &convs, &afters, limit as i64).await?;
    drop(conn);
    let fetched = order_for_delivery(fetched, limit);
    let mut oldest_taken: HashMap<ConversationId, (i64, i64)> = HashMap::new();
    for m in &fetched {
        let e = oldest_taken.entry(m.conversation_id).or_insert((m.seq, 0));
        e.0 = e.0.min(m.seq);
        e.1 += 1;
    }
    let mut truncated = Vec::new();
    for w in wants {
        let (oldest, taken) = oldest_taken
            .get(&w.conversation_id)
            .copied()
            .unwrap_or((w.last_seq + 1, 0));
        let pending = w.last_seq - w.after;
        if pending > taken {
            truncated.push(Truncated {
                conversation_id: w.conversation_id,
                skipped: pending - taken,
                newest_skipped_seq: oldest - 1,
            });
        }
    }
    Ok(Missing {
        messages: fetched,
        truncated,
    })
}

/// The newest `limit` of `fetched`, oldest first. Within a conversation seq is the order.
/// Across conversations, time: each message takes the latest time seen up to its seq in its
/// conversation, so sorting by time never puts a conversation's messages out of seq order
/// (rows stamped by different nodes' transactions need not follow seq exactly).
pub fn order_for_delivery(mut fetched: Vec<Message>, limit: usize) -> Vec<Message> {
    fetched.sort_by_key(|m| (m.conversation_id, m.seq));
    let mut order: Vec<(Timestamp, usize)> = Vec::with_capacity(fetched.len());
    let mut running: Option<(ConversationId, Timestamp)> = None;
    for (i, m) in fetched.iter().enumerate() {
        let at = match running {
            Some((conv, t)) if conv == m.conversation_id && t > m.created_at => t,
            _ => m.created_at,
        };
        running = Some((m.conversation_id, at));
        order.push((at, i));
    }
    order.sort_by(|a, b| (b.0, fetched[b.1].seq).cmp(&(a.0, fetched[a.1].seq)));
    order.truncate(limit);
    order.sort_by_key(|&(at, i)| (at, fetched[i].seq));
    let mut slots: Vec<Option<Message>> = fetched.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(_, i)| slots[i].take())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(conv: ConversationId, seq: i64, at: i64) -> Message {
        Message {
            id: crate::model::MessageId::new_v4(),
            conversation_id: conv,
            seq,
            sender_id: UserId::nil(),
            message_type: "text".into(),
            content: None,
            metadata: None,
            reply_to_message_id: None,
            is_recalled: false,
            recalled_at: None,
            created_at: Timestamp(at),
            client_msg_id: None,
        }
    }

    #[test]
    fn seq_order_wins_over_skewed_times() {
        let (a, b) = (ConversationId::new_v4(), ConversationId::new_v4());
        // Seq 42 was stamped before 41 (its node's transaction started earlier).
        let fetched = vec![
            msg(a, 43, 300),
            msg(a, 41, 200),
            msg(a, 42, 150),
            msg(b, 1, 250),
        ];
        let out: Vec<(ConversationId, i64)> = order_for_delivery(fetched, 10)
            .iter()
            .map(|m| (m.conversation_id, m.seq))
            .collect();
        assert_eq!(out, [(a, 41), (a, 42), (b, 1), (a, 43)]);
        let fetched = vec![
            msg(a, 43, 300),
            msg(a, 41, 200),
            msg(a, 42, 150),
            msg(b, 1, 250),
        ];
        let newest: Vec<(ConversationId, i64)> = order_for_delivery(fetched, 2)
            .iter()
            .map(|m| (m.conversation_id, m.seq))
            .collect();
        assert_eq!(newest, [(b, 1), (a, 43)], "the newest two by time");
    }
}
