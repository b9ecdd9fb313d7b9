//! The write of one writer batch, as a single statement: the idempotency keys, the
//! messages (only those whose key was new), the conversations'
//! counters and last-message fields, and the senders' read cursors (member rows locked in
//! (conversation, user) order, like every multi-row member update).

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
                          bucket)
    SELECT id, conv, seq, sender, mtype, content, meta, reply, created, cmid, 'sent', FALSE,
           msg_bucket(conv)
    FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::text[], $6::text[],
                $7::jsonb[], $8::uuid[], $9::timestamptz[], $10::text[])
         AS t(id, conv, seq, sender, mtype, content, meta, reply, created, cmid)
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
            ],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
