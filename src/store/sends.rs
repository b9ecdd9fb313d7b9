//! The writes of the writer's batches, each a single statement.
//!
//! [`FAST_SQL`] is the usual one: the batch's whole transaction in one round trip, checking
//! under the row locks it takes that the node's view of each conversation holds (else it
//! raises [`STALE`] and writes nothing). [`WRITE_SQL`] is the careful path's write, after
//! the rows were locked and checked: the idempotency keys, the messages (only those whose
//! key was new), the conversations' counters and last-message fields, and the senders' read
//! cursors (member rows locked in (conversation, user) order, like every multi-row member
//! update). Only the careful path writes forwarded messages (their `forwarded_*` columns;
//! NULL for every other message), so [`FAST_SQL`] does not name those columns.

use deadpool_postgres::GenericClient;

use super::conversations::AfterSend;
use crate::error::Result;
use crate::model::{ConversationId, Message, MessageId, Timestamp, UserId};

/// The statement (prepared before it is pipelined with the batch's `COMMIT`).
pub const WRITE_SQL: &str = "
WITH keyed AS (
    INSERT INTO message_keys (sender_id, client_msg_id, message_id, conversation_id)
    SELECT sender, cmid, id, conv
    FROM unnest($1::uuid[], $2::uuid[], $4::uuid[], $10::text[]) AS k(id, conv, sender, cmid)
    WHERE cmid IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING message_id
), inserted AS (
    INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, metadata,
                          reply_to_message_id, created_at, client_msg_id, status, is_recalled,
                          bucket, forwarded_message_id, forwarded_sender_id,
                          forwarded_created_at)
    SELECT id, conv, seq, sender, mtype, content, meta, reply, created, cmid, 'sent', FALSE,
           msg_bucket(conv), fwd_id, fwd_sender, fwd_at
    FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::text[], $6::text[],
                $7::jsonb[], $8::uuid[], $9::timestamptz[], $10::text[], $21::uuid[],
                $22::uuid[], $23::timestamptz[])
         AS t(id, conv, seq, sender, mtype, content, meta, reply, created, cmid, fwd_id,
              fwd_sender, fwd_at)
    WHERE cmid IS NULL OR id IN (SELECT message_id FROM keyed)
    ON CONFLICT DO NOTHING
    RETURNING id
), counters AS (
    UPDATE conversations c SET last_seq = v.seq, last_message_id = v.mid,
           last_message_at = v.at, updated_at = v.at,
           first_sender_id = v.first, replied = v.replied
    FROM unnest($11::uuid[], $12::int8[], $13::uuid[], $14::timestamptz[], $15::uuid[], $16::bool[])
         AS v(id, seq, mid, at, first, replied)
    WHERE c.id = v.id
), readers AS (
    UPDATE conversation_members m
    SET read_seq = target.seq, last_read_message_id = target.mid, last_read_at = now()
    FROM (
        SELECT cm.id, v.seq, v.mid
        FROM conversation_members cm
        JOIN unnest($17::uuid[], $18::uuid[], $19::int8[], $20::uuid[]) AS v(conv, usr, seq, mid)
          ON cm.conversation_id = v.conv AND cm.user_id = v.usr
        WHERE cm.read_seq < v.seq
        ORDER BY cm.conversation_id, cm.user_id
        FOR UPDATE OF cm
    ) target
    WHERE m.id = target.id AND m.read_seq < target.seq
)
SELECT id FROM inserted";

/// Writes a batch. `reads` are `(conversation, sender, seq, message)`: sending moves the
/// sender's own read cursor. Returns the ids actually inserted (a missing one collided with
/// a `client_msg_id` committed concurrently: its `message_keys` row already existed).
pub async fn write(
    client: &impl GenericClient,
    messages: &[Message],
    counters: &[AfterSend],
    reads: &[(ConversationId, UserId, i64, MessageId)],
) -> Result<Vec<MessageId>> {
    let ids: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    let convs: Vec<ConversationId> = messages.iter().map(|m| m.conversation_id).collect();
    let seqs: Vec<i64> = messages.iter().map(|m| m.seq).collect();
    let senders: Vec<UserId> = messages.iter().map(|m| m.sender_id).collect();
    let types: Vec<&str> = messages.iter().map(|m| m.message_type.as_str()).collect();
    let contents: Vec<Option<&str>> = messages.iter().map(|m| m.content.as_deref()).collect();
    let metadata: Vec<Option<&serde_json::Value>> =
        messages.iter().map(|m| m.metadata.as_ref()).collect();
    let replies: Vec<Option<MessageId>> = messages.iter().map(|m| m.reply_to_message_id).collect();
    let created: Vec<Timestamp> = messages.iter().map(|m| m.created_at).collect();
    let client_ids: Vec<Option<&str>> = messages
        .iter()
        .map(|m| m.client_msg_id.as_deref())
        .collect();
    let c_ids: Vec<ConversationId> = counters.iter().map(|u| u.id).collect();
    let c_seqs: Vec<i64> = counters.iter().map(|u| u.last_seq).collect();
    let c_mids: Vec<MessageId> = counters.iter().map(|u| u.last_message_id).collect();
    let c_ats: Vec<Timestamp> = counters.iter().map(|u| u.last_message_at).collect();
    let c_firsts: Vec<Option<UserId>> = counters.iter().map(|u| u.first_sender_id).collect();
    let c_replied: Vec<bool> = counters.iter().map(|u| u.replied).collect();
    let r_convs: Vec<ConversationId> = reads.iter().map(|r| r.0).collect();
    let r_users: Vec<UserId> = reads.iter().map(|r| r.1).collect();
    let r_seqs: Vec<i64> = reads.iter().map(|r| r.2).collect();
    let r_mids: Vec<MessageId> = reads.iter().map(|r| r.3).collect();
    // Forwarded messages only; NULLs otherwise (no extra row, nothing more written).
    let f_ids: Vec<Option<MessageId>> = messages
        .iter()
        .map(|m| m.forwarded_from.map(|f| f.message_id))
        .collect();
    let f_senders: Vec<Option<UserId>> = messages
        .iter()
        .map(|m| m.forwarded_from.map(|f| f.sender_id))
        .collect();
    let f_ats: Vec<Option<Timestamp>> = messages
        .iter()
        .map(|m| m.forwarded_from.map(|f| f.created_at))
        .collect();
    let stmt = client.prepare_cached(WRITE_SQL).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &ids,
                &convs,
                &seqs,
                &senders,
                &types,
                &contents,
                &metadata,
                &replies,
                &created,
                &client_ids,
                &c_ids,
                &c_seqs,
                &c_mids,
                &c_ats,
                &c_firsts,
                &c_replied,
                &r_convs,
                &r_users,
                &r_seqs,
                &r_mids,
                &f_ids,
                &f_senders,
                &f_ats,
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A message of a one-statement batch: its id, conversation, place among its
/// conversation's messages in this batch (1, 2, …), and content.
pub struct FastMessage<'a> {
    /// Message id (chosen by the node).
    pub id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// 1 for the conversation's first message in this batch, then 2, 3…
    pub ord: i32,
    /// Sender.
    pub sender_id: UserId,
    /// Message type.
    pub message_type: &'a str,
    /// Text.
    pub content: Option<&'a str>,
    /// Metadata.
    pub metadata: Option<&'a serde_json::Value>,
    /// Replied message.
    pub reply_to: Option<MessageId>,
    /// Idempotency key.
    pub client_msg_id: Option<&'a str>,
}

/// A conversation of a one-statement batch, with what the node believes of it: the
/// statement writes only when the row still says so.
pub struct FastConversation {
    /// Conversation id.
    pub id: ConversationId,
    /// Messages it gets in this batch.
    pub count: i32,
    /// `members_version` the node's member list was read at.
    pub members_version: i64,
    /// First-message state the node holds.
    pub first_sender_id: Option<UserId>,
    /// Ditto.
    pub replied: bool,
    /// The state after this batch.
    pub new_first_sender_id: Option<UserId>,
    /// Ditto.
    pub new_replied: bool,
    /// Its last message in this batch.
    pub last_message_id: MessageId,
    /// Private and blocks enforced: the batch requires no block between the two.
    pub check_blocks: bool,
}

/// A sender's read cursor moved by its own message `ord` of the batch in `conversation_id`.
pub struct FastRead {
    /// Conversation.
    pub conversation_id: ConversationId,
    /// The sender.
    pub user_id: UserId,
    /// Place of its last message of this conversation in the batch.
    pub ord: i32,
    /// That message.
    pub message_id: MessageId,
}

/// SQLSTATE raised by `dinq_assert` when the node's view of a conversation was stale.
pub const STALE: &str = "DQ001";

/// The one-statement send (migration 0007): counters first (under the row lock, and only
/// where the node's view holds), then the messages with the seqs and times that follow,
/// their keys and the senders' read cursors; `checks` raises `DQ001` when any
/// conversation, key or reply was not as the node believed, so the whole batch rolls back.
pub const FAST_SQL: &str = "
WITH cin AS (
    SELECT * FROM unnest($10::uuid[], $11::int4[], $12::int8[], $13::uuid[], $14::bool[],
                         $15::uuid[], $16::bool[], $17::uuid[], $18::bool[])
        AS v(id, n, version, exp_first, exp_replied, new_first, new_replied, last_mid, check_blocks)
    ORDER BY id
), upd AS (
    UPDATE conversations c
    SET last_seq = c.last_seq + v.n,
        last_message_id = v.last_mid,
        last_message_at = GREATEST(now(), c.last_message_at + interval '1 microsecond')
                          + (v.n - 1) * interval '1 microsecond',
        updated_at = GREATEST(now(), c.last_message_at + interval '1 microsecond')
                     + (v.n - 1) * interval '1 microsecond',
        first_sender_id = v.new_first,
        replied = v.new_replied
    FROM cin v
    WHERE c.id = v.id AND c.members_version = v.version
      AND c.first_sender_id IS NOT DISTINCT FROM v.exp_first AND c.replied = v.exp_replied
      AND NOT (v.check_blocks AND EXISTS (
          SELECT 1 FROM user_relationships r
          WHERE r.relationship_type = 'blocked'
            AND ((r.user_id = split_part(c.private_key, ':', 1)::uuid
                  AND r.target_user_id = split_part(c.private_key, ':', 2)::uuid)
              OR (r.user_id = split_part(c.private_key, ':', 2)::uuid
                  AND r.target_user_id = split_part(c.private_key, ':', 1)::uuid))))
    RETURNING c.id, c.last_seq - v.n AS base,
              c.last_message_at - (v.n - 1) * interval '1 microsecond' AS base_at
), t AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::uuid[], $5::text[],
                         $6::text[], $7::jsonb[], $8::uuid[], $9::text[])
        AS t(id, conv, ord, sender, mtype, content, meta, reply, cmid)
), keyed AS (
    INSERT INTO message_keys (sender_id, client_msg_id, message_id, conversation_id)
    SELECT sender, cmid, id, conv FROM t WHERE cmid IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING 1
), ins AS (
    INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, metadata,
                          reply_to_message_id, created_at, client_msg_id, status, is_recalled,
                          bucket)
    SELECT t.id, t.conv, u.base + t.ord, t.sender, t.mtype, t.content, t.meta, t.reply,
           u.base_at + (t.ord - 1) * interval '1 microsecond', t.cmid, 'sent', FALSE,
           msg_bucket(t.conv)
    FROM t JOIN upd u ON u.id = t.conv
    RETURNING id, seq, created_at
), readers AS (
    UPDATE conversation_members m
    SET read_seq = u.base + r.ord, last_read_message_id = r.mid, last_read_at = now()
    FROM unnest($19::uuid[], $20::uuid[], $21::int4[], $22::uuid[]) AS r(conv, usr, ord, mid)
    JOIN upd u ON u.id = r.conv
    WHERE m.conversation_id = r.conv AND m.user_id = r.usr AND m.read_seq < u.base + r.ord
), checks AS (
    SELECT dinq_assert((SELECT count(*) FROM upd) = (SELECT count(*) FROM cin),
                       'conversation changed')
       AND dinq_assert((SELECT count(*) FROM keyed)
                       = (SELECT count(*) FROM t WHERE cmid IS NOT NULL),
                       'client_msg_id used before')
       AND dinq_assert(NOT EXISTS (
               SELECT 1 FROM t WHERE t.reply IS NOT NULL
                 AND (SELECT m.conversation_id FROM messages m
                      WHERE m.id = t.reply AND m.bucket = msg_bucket(t.conv))
                     IS DISTINCT FROM t.conv),
                       'reply outside the conversation') AS ok
)
SELECT ins.id, ins.seq, ins.created_at FROM checks LEFT JOIN ins ON checks.ok";

/// Writes a batch with [`FAST_SQL`]; returns `(id, seq, created_at)` of every message.
/// An error with SQLSTATE [`STALE`] means nothing was written and the batch needs the
/// careful path.
pub async fn write_fast(
    client: &impl GenericClient,
    messages: &[FastMessage<'_>],
    conversations: &[FastConversation],
    reads: &[FastRead],
) -> Result<Vec<(MessageId, i64, Timestamp)>> {
    let ids: Vec<MessageId> = messages.iter().map(|m| m.id).collect();
    let convs: Vec<ConversationId> = messages.iter().map(|m| m.conversation_id).collect();
    let ords: Vec<i32> = messages.iter().map(|m| m.ord).collect();
    let senders: Vec<UserId> = messages.iter().map(|m| m.sender_id).collect();
    let types: Vec<&str> = messages.iter().map(|m| m.message_type).collect();
    let contents: Vec<Option<&str>> = messages.iter().map(|m| m.content).collect();
    let metadata: Vec<Option<&serde_json::Value>> = messages.iter().map(|m| m.metadata).collect();
    let replies: Vec<Option<MessageId>> = messages.iter().map(|m| m.reply_to).collect();
    let cmids: Vec<Option<&str>> = messages.iter().map(|m| m.client_msg_id).collect();
    let c_ids: Vec<ConversationId> = conversations.iter().map(|c| c.id).collect();
    let c_counts: Vec<i32> = conversations.iter().map(|c| c.count).collect();
    let c_versions: Vec<i64> = conversations.iter().map(|c| c.members_version).collect();
    let c_firsts: Vec<Option<UserId>> = conversations.iter().map(|c| c.first_sender_id).collect();
    let c_replied: Vec<bool> = conversations.iter().map(|c| c.replied).collect();
    let c_new_firsts: Vec<Option<UserId>> = conversations
        .iter()
        .map(|c| c.new_first_sender_id)
        .collect();
    let c_new_replied: Vec<bool> = conversations.iter().map(|c| c.new_replied).collect();
    let c_last: Vec<MessageId> = conversations.iter().map(|c| c.last_message_id).collect();
    let c_blocks: Vec<bool> = conversations.iter().map(|c| c.check_blocks).collect();
    let r_convs: Vec<ConversationId> = reads.iter().map(|r| r.conversation_id).collect();
    let r_users: Vec<UserId> = reads.iter().map(|r| r.user_id).collect();
    let r_ords: Vec<i32> = reads.iter().map(|r| r.ord).collect();
    let r_mids: Vec<MessageId> = reads.iter().map(|r| r.message_id).collect();
    let stmt = client.prepare_cached(FAST_SQL).await?;
    let rows = client
        .query(
            &stmt,
            &[
                &ids,
                &convs,
                &ords,
                &senders,
                &types,
                &contents,
                &metadata,
                &replies,
                &cmids,
                &c_ids,
                &c_counts,
                &c_versions,
                &c_firsts,
                &c_replied,
                &c_new_firsts,
                &c_new_replied,
                &c_last,
                &c_blocks,
                &r_convs,
                &r_users,
                &r_ords,
                &r_mids,
            ],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| Some((r.get::<_, Option<MessageId>>(0)?, r.get(1), r.get(2))))
        .collect())
}
