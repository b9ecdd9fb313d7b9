//! One batch of the writer: lock the conversations, check every send with one query per
//! kind of check, hand out seqs, write, commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use deadpool_postgres::GenericClient;

use super::fast::Known;
use super::{Deps, Job, Outcome};
use crate::domain::members::Members;
use crate::error::{Code, Error, Result};
use crate::model::{ConversationId, ConversationKind, Message, MessageId, Timestamp, UserId};
use crate::store;

/// A conversation's state while a batch is assembled.
struct ConvState {
    kind: ConversationKind,
    last_seq: i64,
    first_sender: Option<UserId>,
    replied: bool,
    members: Arc<Members>,
    last: Option<(MessageId, Timestamp)>,
    /// Newest message time in the conversation so far.
    last_at: Option<Timestamp>,
}

impl ConvState {
    /// A time for the next message: the transaction's clock, but never before the
    /// conversation's newest message, so times follow seq order even when another node's
    /// transaction started earlier and committed later.
    fn stamp(&mut self, now: Timestamp) -> Timestamp {
        let at = match self.last_at {
            Some(prev) if prev >= now => Timestamp(prev.micros() + 1),
            _ => now,
        };
        self.last_at = Some(at);
        at
    }
}

/// Writes one batch in one transaction. Statements are pipelined: `BEGIN` travels with the
/// row locks and `COMMIT` with the writes (if a write fails, PostgreSQL turns that
/// `COMMIT` into a rollback), so a batch costs three round trips.
/// Besides each job's outcome it returns what the batch learned of its conversations, for
/// the writer shard to remember (see `fast.rs`).
/// With `all_or_nothing`, the first refusal of any job is the batch's error and nothing is
/// written (a forward: every message of it is stored, or none).
pub(super) async fn write_batch(
    deps: &Deps,
    batch: &[Job],
    all_or_nothing: bool,
) -> Result<(Vec<Outcome>, Vec<(ConversationId, Known)>)> {
    let conn = deps.store.conn().await?;
    let result = write_batch_on(&conn, deps, batch, all_or_nothing).await;
    if result.is_err() {
        // Never hand a connection with an open transaction back to the pool.
        if conn.batch_execute("ROLLBACK").await.is_err() {
            let _ = deadpool_postgres::Object::take(conn);
        }
    }
    result
}

async fn write_batch_on(
    tx: &deadpool_postgres::Object,
    deps: &Deps,
    batch: &[Job],
    all_or_nothing: bool,
) -> Result<(Vec<Outcome>, Vec<(ConversationId, Known)>)> {
    let settings = deps.settings.get();
    let conv_ids: Vec<ConversationId> = {
        let set: HashSet<ConversationId> = batch.iter().map(|j| j.conversation_id).collect();
        set.into_iter().collect()
    };
    let (_, (locked, now)) = tokio::try_join!(
        async { Ok(tx.batch_execute("BEGIN").await?) },
        store::conversations::lock_for_send(tx, &conv_ids),
    )?;

    // Member lists at the locked version: cached when current, else read now.
    let stale: Vec<ConversationId> = locked
        .iter()
        .filter(|c| {
            deps.members
                .get(c.id)
                .is_none_or(|m| m.version != c.members_version)
        })
        .map(|c| c.id)
        .collect();
    let mut fresh: HashMap<ConversationId, Vec<(UserId, crate::model::Role)>> = HashMap::new();
    if !stale.is_empty() {
        for (conv, user, role) in store::conversations::active_members(tx, &stale).await? {
            fresh.entry(conv).or_default().push((user, role));
        }
    }
    let mut convs: HashMap<ConversationId, ConvState> = HashMap::with_capacity(locked.len());
    let legacy_pairs: HashSet<ConversationId> = locked
        .iter()
        .filter(|c| c.needs_block_lookup)
        .map(|c| c.id)
        .collect();
    let locked_blocks: Vec<(UserId, UserId)> = if settings.block {
        locked
            .iter()
            .flat_map(|c| c.blocks.iter().copied())
            .collect()
    } else {
        Vec::new()
    };
    for c in locked {
        let members = if stale.contains(&c.id) {
            let m = Arc::new(Members {
                version: c.members_version,
                kind: c.kind,
                list: fresh.remove(&c.id).unwrap_or_default(),
            });
            deps.members.put(c.id, m.clone());
            m
        } else {
            deps.members.get(c.id).expect("checked current above")
        };
        convs.insert(
            c.id,
            ConvState {
                kind: c.kind,
                last_seq: c.last_seq,
                first_sender: c.first_sender_id,
                replied: c.replied,
                members,
                last: None,
                last_at: c.last_message_at,
            },
        );
    }

    // Blocks came with the row locks; only old private rows without a pair key need a
    // look-up. Reply targets and retried client ids: one query each for the whole batch.
    let (mut blockers, mut blocked) = (Vec::new(), Vec::new());
    if settings.block {
        for job in batch {
            if let Some(c) = convs.get(&job.conversation_id)
                && c.kind == ConversationKind::Private
                && legacy_pairs.contains(&job.conversation_id)
                && let Some(other) = c.members.other(job.sender)
            {
                blockers.push(other);
                blocked.push(job.sender);
            }
        }
    }
    let replies: Vec<(MessageId, ConversationId)> = batch
        .iter()
        .filter_map(|j| Some((j.draft.reply_to_message_id?, j.conversation_id)))
        .collect();
    let cmid_senders: Vec<UserId> = batch
        .iter()
        .filter(|j| j.draft.client_msg_id.is_some())
        .map(|j| j.sender)
        .collect();
    let cmids: Vec<&str> = batch
        .iter()
        .filter_map(|j| j.draft.client_msg_id.as_deref())
        .collect();
    let blocks_q = async {
        if blockers.is_empty() {
            Ok(Vec::new())
        } else {
            store::relationships::blocks_among(tx, &blockers, &blocked).await
        }
    };
    let replies_q = async {
        if replies.is_empty() {
            Ok(Vec::new())
        } else {
            store::messages::conversations_of(tx, &replies).await
        }
    };
    let cmids_q = async {
        if cmids.is_empty() {
            Ok(Vec::new())
        } else {
            store::messages::by_client_ids(tx, &cmid_senders, &cmids).await
        }
    };
    let (blocks, reply_convs, earlier) = tokio::try_join!(blocks_q, replies_q, cmids_q)?;
    let blocks: HashSet<(UserId, UserId)> = blocks.into_iter().chain(locked_blocks).collect();
    let reply_convs: HashMap<MessageId, ConversationId> = reply_convs.into_iter().collect();
    let mut earlier: HashMap<(UserId, String), Message> = earlier
        .into_iter()
        .filter_map(|m| Some(((m.sender_id, m.client_msg_id.clone()?), m)))
        .collect();

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut in_batch: HashMap<(UserId, &str), usize> = HashMap::new();
    let mut rows: Vec<Message> = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        let Some(c) = convs.get_mut(&job.conversation_id) else {
            outcomes.push(Outcome::Refused(Error::not_member()));
            continue;
        };
        if !c.members.contains(job.sender) {
            outcomes.push(Outcome::Refused(Error::not_member()));
            continue;
        }
        if let Some(cmid) = job.draft.client_msg_id.as_deref() {
            if let Some(original) = earlier.remove(&(job.sender, cmid.to_string())) {
                earlier.insert((job.sender, cmid.to_string()), original.clone());
                outcomes.push(Outcome::Duplicate(original));
                continue;
            }
            if let Some(first) = in_batch.get(&(job.sender, cmid)) {
                outcomes.push(Outcome::DuplicateOf(*first));
                continue;
            }
        }
        let private = c.kind == ConversationKind::Private;
        if private
            && let Some(other) = c.members.other(job.sender)
            && blocks.contains(&(other, job.sender))
        {
            outcomes.push(Outcome::Refused(Error::forbidden(
                Code::Blocked,
                "you are blocked by this user",
            )));
            continue;
        }
        if let Some(reply) = job.draft.reply_to_message_id
            && reply_convs.get(&reply) != Some(&job.conversation_id)
        {
            outcomes.push(Outcome::Refused(Error::bad_request(
                Code::InvalidReply,
                "reply_to_message_id must be a message of this conversation",
            )));
            continue;
        }
        // First-message limit: tracked always, enforced when the setting is on.
        let (mut first_sender, mut replied) = (c.first_sender, c.replied);
        if private {
            match first_sender {
                None => first_sender = Some(job.sender),
                Some(f) if f == job.sender => {
                    if !replied && settings.first_message_limit {
                        outcomes.push(Outcome::Refused(Error::forbidden(
                            Code::FirstMessageLimit,
                            "first message limit: wait for reply before sending more messages",
                        )));
                        continue;
                    }
                }
                Some(_) => replied = true,
            }
        }
        c.first_sender = first_sender;
        c.replied = replied;
        c.last_seq += 1;
        let message = job.draft.message(
            store::messages::new_id(job.conversation_id),
            job.conversation_id,
            c.last_seq,
            job.sender,
            c.stamp(now),
        );
        c.last = Some((message.id, message.created_at));
        if let Some(cmid) = job.draft.client_msg_id.as_deref() {
            in_batch.insert((job.sender, cmid), i);
        }
        let sender_can_send = !(private
            && settings.first_message_limit
            && first_sender == Some(job.sender)
            && !replied);
        rows.push(message.clone());
        outcomes.push(Outcome::Stored {
            message,
            members: c.members.clone(),
            sender_can_send,
        });
    }

    if all_or_nothing
        && let Some(i) = outcomes
            .iter()
            .position(|o| !matches!(o, Outcome::Stored { .. }))
    {
        // The caller rolls the transaction back.
        return Err(match outcomes.swap_remove(i) {
            Outcome::Refused(e) => e,
            _ => Error::internal("a send of an all-or-nothing batch was a duplicate"),
        });
    }
    let learned: Vec<(ConversationId, Known)> = convs
        .iter()
        .map(|(id, c)| {
            (
                *id,
                Known {
                    members: c.members.clone(),
                    first_sender: c.first_sender,
                    replied: c.replied,
                    legacy_pair: legacy_pairs.contains(id),
                },
            )
        })
        .collect();
    if !rows.is_empty() {
        let updates: Vec<store::conversations::AfterSend> = convs
            .iter()
            .filter_map(|(id, c)| {
                c.last.map(|(mid, at)| store::conversations::AfterSend {
                    id: *id,
                    last_seq: c.last_seq,
                    last_message_id: mid,
                    last_message_at: at,
                    first_sender_id: c.first_sender,
                    replied: c.replied,
                })
            })
            .collect();
        // Sending moves the sender's own read cursor to the message.
        let mut reads: HashMap<(ConversationId, UserId), (i64, MessageId)> = HashMap::new();
        for r in &rows {
            let e = reads
                .entry((r.conversation_id, r.sender_id))
                .or_insert((r.seq, r.id));
            if r.seq > e.0 {
                *e = (r.seq, r.id);
            }
        }
        let reads: Vec<(ConversationId, UserId, i64, MessageId)> = reads
            .into_iter()
            .map(|((c, u), (s, m))| (c, u, s, m))
            .collect();
        // Prepared first (a cache hit after the first batch on this connection), so the
        // write is on the wire before the COMMIT that follows it.
        tx.prepare_cached(store::sends::WRITE_SQL).await?;
        let (inserted, _) =
            tokio::try_join!(store::sends::write(tx, &rows, &updates, &reads), async {
                Ok(tx.batch_execute("COMMIT").await?)
            },)?;
        if inserted.len() != rows.len() {
            // A client_msg_id committed concurrently in another conversation: those sends
            // become duplicates of what is stored (read after our commit).
            let inserted: HashSet<MessageId> = inserted.into_iter().collect();
            for o in outcomes.iter_mut() {
                if let Outcome::Stored { message, .. } = o
                    && !inserted.contains(&message.id)
                {
                    let cmid = message.client_msg_id.clone().unwrap_or_default();
                    let found =
                        store::messages::by_client_ids(tx, &[message.sender_id], &[cmid.as_str()])
                            .await?;
                    *o = match found.into_iter().next() {
                        Some(original) => Outcome::Duplicate(original),
                        None => Outcome::Refused(Error::internal("message not stored")),
                    };
                }
            }
        }
        return Ok((outcomes, learned));
    }
    tx.batch_execute("COMMIT").await?;
    Ok((outcomes, learned))
}
