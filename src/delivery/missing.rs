//! What users have not received yet, read from PostgreSQL by cursor (the read queries of
//! the offline drain on connect and of the repair of gaps in live delivery, which reads
//! for many users at once).
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

/// Conversations read per query by [`missing_many`] (each brings at most `limit` rows).
const CONVERSATIONS_PER_QUERY: usize = 200;

/// Fetches what follows each position of `wants`, at most `limit` messages in all (the
/// newest).
pub async fn missing(store: &Store, wants: &[Want], limit: usize) -> Result<Missing> {
    let user = UserId::nil();
    let mut all = missing_many(store, &[(user, wants.to_vec())], limit).await?;
    Ok(all.remove(&user).unwrap_or_default())
}

/// [`missing`] for many users at once: one query per [`CONVERSATIONS_PER_QUERY`]
/// conversations, whatever the number of users. A conversation is read once, from the
/// lowest position any of them wants (its newest `limit` from there hold each user's
/// newest `limit` from its own position).
pub async fn missing_many(
    store: &Store,
    wants: &[(UserId, Vec<Want>)],
    limit: usize,
) -> Result<HashMap<UserId, Missing>> {
    let mut from: HashMap<ConversationId, i64> = HashMap::new();
    if limit > 0 {
        for w in wants.iter().flat_map(|(_, w)| w) {
            if w.last_seq > w.after {
                let after = from.entry(w.conversation_id).or_insert(w.after);
                *after = (*after).min(w.after);
            }
        }
    }
    let mut by_conv: HashMap<ConversationId, Vec<Message>> = HashMap::new();
    if !from.is_empty() {
        let from: Vec<(ConversationId, i64)> = from.into_iter().collect();
        let conn = store.conn().await?;
        for chunk in from.chunks(CONVERSATIONS_PER_QUERY) {
            let convs: Vec<ConversationId> = chunk.iter().map(|(c, _)| *c).collect();
            let afters: Vec<i64> = chunk.iter().map(|(_, a)| *a).collect();
            for m in store::messages::pending(&conn, &convs, &afters, limit as i64).await? {
                by_conv.entry(m.conversation_id).or_default().push(m);
            }
        }
    }
    Ok(wants
        .iter()
        .map(|(user, w)| (*user, assemble(w, &by_conv, limit)))
        .collect())
}

/// One user's [`Missing`] from the messages read for its conversations.
fn assemble(
    wants: &[Want],
    by_conv: &HashMap<ConversationId, Vec<Message>>,
    limit: usize,
) -> Missing {
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
        return Missing {
            messages: Vec::new(),
            truncated,
        };
    }
    let fetched: Vec<Message> = wants
        .iter()
        .flat_map(|w| {
            by_conv
                .get(&w.conversation_id)
                .into_iter()
                .flatten()
                .filter(move |m| m.seq > w.after)
                .cloned()
        })
        .collect();
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
    Missing {
        messages: fetched,
        truncated,
    }
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
    use crate::tests::harness::TestEnv;

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
            edited_at: None,
            created_at: Timestamp(at),
            client_msg_id: None,
            forwarded_from: None,
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

    /// Transactions committed in the test database so far, once `store`'s one connection
    /// has flushed its statistics (every statement here is a transaction of its own).
    async fn commits(store: &Store, observer: &tokio_postgres::Client) -> i64 {
        let worker = store.conn().await.unwrap();
        worker
            .simple_query("SELECT pg_stat_force_next_flush()")
            .await
            .unwrap();
        worker.simple_query("SELECT 1").await.unwrap();
        drop(worker);
        observer
            .simple_query("SELECT pg_stat_force_next_flush()")
            .await
            .unwrap();
        observer
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_read_serves_many_users_and_each_gets_what_it_would_alone() {
        let env = TestEnv::new().await;
        let observer = env.db().await;
        {
            let (mut client, conn) =
                tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            store::migrate::run(&mut client).await.unwrap();
        }
        let store = Store::new(&env.database_url, 1).unwrap();
        // A group of 30 messages, and each user's own conversation of 3.
        let users: Vec<UserId> = (0..40).map(|_| UserId::new_v4()).collect();
        let group = ConversationId::new_v4();
        let mut convs = vec![(group, 30i64)];
        let own: Vec<ConversationId> = users.iter().map(|_| ConversationId::new_v4()).collect();
        convs.extend(own.iter().map(|c| (*c, 3i64)));
        for (conv, n) in &convs {
            observer
                .execute(
                    "INSERT INTO conversations (id, conversation_type, last_seq) VALUES ($1, 'group', $2)",
                    &[conv, n],
                )
                .await
                .unwrap();
            for seq in 1..=*n {
                observer
                    .execute(
                        "INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, bucket)
                         VALUES ($1, $2, $3, $4, 'text', 'm', msg_bucket($2))",
                        &[&store::messages::new_id(*conv), conv, &seq, &users[0]],
                    )
                    .await
                    .unwrap();
            }
        }
        // Each user stands somewhere else in the group; some have their own conversation.
        let wants: Vec<(UserId, Vec<Want>)> = users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let mut w = vec![Want {
                    conversation_id: group,
                    after: (i as i64 * 7) % 31,
                    last_seq: 30,
                }];
                w.push(Want {
                    conversation_id: own[i],
                    after: (i as i64) % 4,
                    last_seq: 3,
                });
                (*u, w)
            })
            .collect();
        let limit = 12;
        let shown = |m: &Missing| {
            let seqs: Vec<(ConversationId, i64)> = m
                .messages
                .iter()
                .map(|m| (m.conversation_id, m.seq))
                .collect();
            (seqs, m.truncated.clone())
        };
        // Each user's share of the batched read is what it would read alone.
        let all = missing_many(&store, &wants, limit).await.unwrap();
        assert_eq!(all.len(), users.len());
        for (user, w) in &wants {
            let alone = missing(&store, w, limit).await.unwrap();
            assert_eq!(shown(&all[user]), shown(&alone), "user {user}");
        }
        // One user or forty: the same statements. Autovacuum's transactions count too, so
        // each is the fewest of a few tries (they only ever add), after a first measurement
        // that settles the counters.
        observer
            .batch_execute("VACUUM ANALYZE conversations, messages")
            .await
            .unwrap();
        commits(&store, &observer).await;
        commits(&store, &observer).await;
        let (mut one, mut forty) = (i64::MAX, i64::MAX);
        for _ in 0..3 {
            for (n, fewest) in [(1, &mut one), (users.len(), &mut forty)] {
                let before = commits(&store, &observer).await;
                missing_many(&store, &wants[..n], limit).await.unwrap();
                *fewest = (*fewest).min(commits(&store, &observer).await - before);
            }
        }
        assert_eq!(forty, one, "statements for 40 users and for 1");
    }
}
