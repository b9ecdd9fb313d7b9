//! What a user has not received yet, read from PostgreSQL by cursor: the offline drain on
//! connect and the repair of gaps in live delivery.
//!
//! The newest `limit` pending messages are returned oldest first; conversations with more
//! pending than that are named in `truncated`, for the client to page through history.

use std::collections::HashMap;

use uuid::Uuid;

use super::events::Truncated;
use crate::error::Result;
use crate::model::Message;
use crate::store::{self, Store};

/// Messages to deliver and what was left out.
#[derive(Debug, Default)]
pub struct Missing {
    /// Oldest first (by commit time, then seq).
    pub messages: Vec<Message>,
    /// Conversations with older messages left out.
    pub truncated: Vec<Truncated>,
}

/// Fetches what follows each `(conversation, after, last_seq)` position, at most `limit`
/// messages in all (the newest).
pub async fn missing(store: &Store, wants: &[(Uuid, i64, i64)], limit: usize) -> Result<Missing> {
    let wants: Vec<&(Uuid, i64, i64)> = wants
        .iter()
        .filter(|(_, after, last)| last > after)
        .collect();
    if wants.is_empty() || limit == 0 {
        let truncated = wants
            .iter()
            .map(|(c, after, last)| Truncated {
                conversation_id: *c,
                skipped: last - after,
                newest_skipped_seq: *last,
            })
            .collect();
        return Ok(Missing {
            messages: Vec::new(),
            truncated,
        });
    }
    let convs: Vec<Uuid> = wants.iter().map(|w| w.0).collect();
    let afters: Vec<i64> = wants.iter().map(|w| w.1).collect();
    let conn = store.conn().await?;
    let mut fetched = store::messages::pending(&conn, &convs, &afters, limit as i64).await?;
    drop(conn);
    // Newest first, keep `limit`, then oldest first for delivery.
    fetched.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.seq)));
    fetched.truncate(limit);
    fetched.sort_by_key(|m| (m.created_at, m.seq));
    let mut oldest_taken: HashMap<Uuid, (i64, i64)> = HashMap::new();
    for m in &fetched {
        let e = oldest_taken.entry(m.conversation_id).or_insert((m.seq, 0));
        e.0 = e.0.min(m.seq);
        e.1 += 1;
    }
    let mut truncated = Vec::new();
    for (conv, after, last) in wants {
        let (oldest, taken) = oldest_taken.get(conv).copied().unwrap_or((last + 1, 0));
        let pending = last - after;
        if pending > taken {
            truncated.push(Truncated {
                conversation_id: *conv,
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
