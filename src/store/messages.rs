//! `messages` rows: ranges by seq for delivery and repair, look-ups by id (the sources of
//! a forward) and by client message id, recall, edit, and the ids of new messages.
//!
//! `messages` is partitioned by `bucket`, the last byte of the conversation id (migration
//! 0006). Every query here names the bucket (`msg_bucket(conversation)`) so PostgreSQL reads
//! one partition; a new message id carries its conversation's bucket in its last byte, so a
//! look-up by message id alone does too. Ids older than the partitioning do not: when a
//! message is not in its id's bucket, the look-up is repeated over every partition.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::error::Result;
use crate::model::{ConversationId, ForwardedFrom, Message, MessageId, Timestamp, UserId};

/// The column list every message query selects, in [`from_row`] order.
pub const COLUMNS: &str = "id, conversation_id, seq, sender_id, message_type, content, metadata, \
     reply_to_message_id, COALESCE(is_recalled, FALSE), recalled_at, created_at, client_msg_id, \
     edited_at, forwarded_message_id, forwarded_sender_id, forwarded_created_at";

/// [`COLUMNS`] qualified with the alias `m`, for joins.
pub const COLUMNS_M: &str = "m.id, m.conversation_id, m.seq, m.sender_id, m.message_type, m.content, m.metadata, \
     m.reply_to_message_id, COALESCE(m.is_recalled, FALSE), m.recalled_at, m.created_at, m.client_msg_id, \
     m.edited_at, m.forwarded_message_id, m.forwarded_sender_id, m.forwarded_created_at";

/// A message from a row selected with [`COLUMNS`].
pub fn from_row(row: &Row) -> Message {
    Message {
        id: row.get(0),
        conversation_id: row.get(1),
        seq: row.get(2),
        sender_id: row.get(3),
        message_type: row.get(4),
        content: row.get(5),
        metadata: row.get(6),
        reply_to_message_id: row.get(7),
        is_recalled: row.get(8),
        recalled_at: row.get(9),
        created_at: row.get::<_, Option<Timestamp>>(10).unwrap_or(Timestamp(0)),
        client_msg_id: row.get(11),
        edited_at: row.get(12),
        forwarded_from: match (
            row.get::<_, Option<MessageId>>(13),
            row.get::<_, Option<UserId>>(14),
            row.get::<_, Option<Timestamp>>(15),
        ) {
            (Some(message_id), Some(sender_id), Some(created_at)) => Some(ForwardedFrom {
                message_id,
                sender_id,
                created_at,
            }),
            _ => None,
        },
    }
}

/// A new message id for `conversation`: a UUIDv7 (time ordered) whose last byte, one of
/// its random ones, is the conversation's partition bucket.
pub fn new_id(conversation: ConversationId) -> MessageId {
    let mut bytes = *MessageId::now_v7().as_bytes();
    bytes[15] = conversation.as_bytes()[15];
    MessageId::from_bytes(bytes)
}

/// `(id, conversation_id)` of each message among `targets`, given as `(message id,
/// conversation it is expected in)`: a message is looked for in that conversation's
/// partition only, so one of another partition's conversation is not found.
pub async fn conversations_of(
    client: &impl GenericClient,
    targets: &[(MessageId, ConversationId)],
) -> Result<Vec<(MessageId, ConversationId)>> {
    let ids: Vec<MessageId> = targets.iter().map(|t| t.0).collect();
    let convs: Vec<ConversationId> = targets.iter().map(|t| t.1).collect();
    let stmt = client
        .prepare_cached(
            "SELECT m.id, m.conversation_id FROM unnest($1::uuid[], $2::uuid[]) AS t(id, conv)
             JOIN messages m ON m.id = t.id AND m.bucket = msg_bucket(t.conv)",
        )
        .await?;
    let rows = client.query(&stmt, &[&ids, &convs]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Messages whose `(sender_id, client_msg_id)` is among the given pairs (a superset is
/// fetched by the two lists; callers match pairs), found through `message_keys`.
pub async fn by_client_ids(
    client: &impl GenericClient,
    senders: &[UserId],
    client_ids: &[&str],
) -> Result<Vec<Message>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS_M} FROM message_keys k
             JOIN messages m ON m.id = k.message_id AND m.bucket = msg_bucket(k.conversation_id)
             WHERE k.sender_id = ANY($1) AND k.client_msg_id = ANY($2)"
        ))
        .await?;
    let rows = client.query(&stmt, &[&senders, &client_ids]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// The messages with these ids (in no particular order; unknown ids are left out). Each is
/// looked for in its id's bucket first, then the ids not found there over every partition
/// (ids older than the partitioning).
pub async fn by_ids(client: &impl GenericClient, ids: &[MessageId]) -> Result<Vec<Message>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS_M} FROM unnest($1::uuid[]) AS t(id)
             JOIN messages m ON m.id = t.id AND m.bucket = msg_bucket(t.id)"
        ))
        .await?;
    let mut found: Vec<Message> = client
        .query(&stmt, &[&ids])
        .await?
        .iter()
        .map(from_row)
        .collect();
    let missing: Vec<MessageId> = ids
        .iter()
        .filter(|id| !found.iter().any(|m| m.id == **id))
        .copied()
        .collect();
    if !missing.is_empty() {
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages WHERE id = ANY($1)"
            ))
            .await?;
        found.extend(client.query(&stmt, &[&missing]).await?.iter().map(from_row));
    }
    Ok(found)
}

/// Messages of `conversation` with `after < seq <= upto`, oldest first, at most `limit`.
pub async fn range(
    client: &impl GenericClient,
    conversation: ConversationId,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<Message>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages
             WHERE conversation_id = $1 AND bucket = msg_bucket($1) AND seq > $2 AND seq <= $3
             ORDER BY seq LIMIT $4"
        ))
        .await?;
    let rows = client
        .query(&stmt, &[&conversation, &after, &upto, &limit])
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// For each `(conversation, after)` pair, the newest `limit` messages with `seq > after`.
pub async fn pending(
    client: &impl GenericClient,
    conversations: &[ConversationId],
    afters: &[i64],
    limit: i64,
) -> Result<Vec<Message>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT m.* FROM unnest($1::uuid[], $2::int8[]) AS p(conv, after)
             CROSS JOIN LATERAL (
                 SELECT {COLUMNS} FROM messages
                 WHERE conversation_id = p.conv AND bucket = msg_bucket(p.conv) AND seq > p.after
                 ORDER BY seq DESC LIMIT $3
             ) m"
        ))
        .await?;
    let rows = client
        .query(&stmt, &[&conversations, &afters, &limit])
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// How a recall attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Recall {
    /// Recalled now; the message as it is stored (boxed: the other outcomes are small).
    Done(Box<Message>),
    /// No such message.
    NotFound,
    /// Someone else's message.
    NotSender,
    /// Recalled before.
    AlreadyRecalled,
    /// Outside the window; whole seconds since it was sent.
    TooLate(i64),
}

/// Recalls `id` for `sender` if it is within `window_seconds` of its creation, judged by
/// the database clock. Run it inside a transaction: the row is locked while it is judged.
pub async fn recall(
    client: &impl GenericClient,
    id: MessageId,
    sender: UserId,
    window_seconds: i64,
) -> Result<Recall> {
    // The id's own bucket first; then every partition, for ids older than the partitioning.
    let mut found = None;
    for sql in [
        "SELECT sender_id, COALESCE(is_recalled, FALSE),
                round(extract(epoch FROM now() - created_at))::int8, bucket
         FROM messages WHERE id = $1 AND bucket = msg_bucket($1) FOR UPDATE",
        "SELECT sender_id, COALESCE(is_recalled, FALSE),
                round(extract(epoch FROM now() - created_at))::int8, bucket
         FROM messages WHERE id = $1 FOR UPDATE",
    ] {
        let stmt = client.prepare_cached(sql).await?;
        found = client.query_opt(&stmt, &[&id]).await?;
        if found.is_some() {
            break;
        }
    }
    let Some(row) = found else {
        return Ok(Recall::NotFound);
    };
    let (owner, recalled, elapsed, bucket): (UserId, bool, i64, i16) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if owner != sender {
        return Ok(Recall::NotSender);
    }
    if recalled {
        return Ok(Recall::AlreadyRecalled);
    }
    if elapsed > window_seconds {
        return Ok(Recall::TooLate(elapsed));
    }
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE messages SET is_recalled = TRUE, recalled_at = now()
             WHERE id = $1 AND bucket = $2 RETURNING {COLUMNS}"
        ))
        .await?;
    Ok(Recall::Done(Box::new(from_row(
        &client.query_one(&stmt, &[&id, &bucket]).await?,
    ))))
}

/// How an edit attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Edited now; the message as it is stored (boxed: the other outcomes are small).
    Done(Box<Message>),
    /// No such message.
    NotFound,
    /// Someone else's message.
    NotSender,
    /// The sender is no longer an active member of the message's conversation.
    NotMember,
    /// Not a text message.
    NotText,
    /// Recalled.
    Recalled,
    /// Outside the window; whole seconds since it was sent.
    TooLate(i64),
}

/// Replaces the text of `id` by `content` for `sender`, if `sender` sent it, is still an
/// active member of its conversation, and it is a text message, not recalled, sent at most
/// `window_seconds` ago by the database clock (0: never). Sets `edited_at`. Run it inside
/// a transaction: the row is locked while it is judged; the caller updates the search
/// table in the same transaction ([`crate::store::search::replace_text`]).
pub async fn edit(
    client: &impl GenericClient,
    id: MessageId,
    sender: UserId,
    content: &str,
    window_seconds: i64,
) -> Result<Edit> {
    // The id's own bucket first; then every partition, for ids older than the partitioning.
    let mut found = None;
    for sql in [
        "SELECT m.sender_id, m.message_type, COALESCE(m.is_recalled, FALSE),
                COALESCE(greatest(round(extract(epoch FROM now() - m.created_at)), 0), 0)::int8,
                COALESCE(now() - m.created_at > make_interval(secs => $3::int8), TRUE),
                m.bucket,
                EXISTS (SELECT 1 FROM conversation_members cm
                        WHERE cm.conversation_id = m.conversation_id AND cm.user_id = $2
                          AND cm.left_at IS NULL)
         FROM messages m WHERE m.id = $1 AND m.bucket = msg_bucket($1) FOR UPDATE OF m",
        "SELECT m.sender_id, m.message_type, COALESCE(m.is_recalled, FALSE),
                COALESCE(greatest(round(extract(epoch FROM now() - m.created_at)), 0), 0)::int8,
                COALESCE(now() - m.created_at > make_interval(secs => $3::int8), TRUE),
                m.bucket,
                EXISTS (SELECT 1 FROM conversation_members cm
                        WHERE cm.conversation_id = m.conversation_id AND cm.user_id = $2
                          AND cm.left_at IS NULL)
         FROM messages m WHERE m.id = $1 FOR UPDATE OF m",
    ] {
        let stmt = client.prepare_cached(sql).await?;
        found = client
            .query_opt(&stmt, &[&id, &sender, &window_seconds])
            .await?;
        if found.is_some() {
            break;
        }
    }
    let Some(row) = found else {
        return Ok(Edit::NotFound);
    };
    let owner: UserId = row.get(0);
    let kind: crate::model::MessageType = row.get(1);
    let (recalled, elapsed, late, bucket, member): (bool, i64, bool, i16, bool) =
        (row.get(2), row.get(3), row.get(4), row.get(5), row.get(6));
    if owner != sender {
        return Ok(Edit::NotSender);
    }
    if !member {
        return Ok(Edit::NotMember);
    }
    if kind != crate::model::MessageType::Text {
        return Ok(Edit::NotText);
    }
    if recalled {
        return Ok(Edit::Recalled);
    }
    if late {
        return Ok(Edit::TooLate(elapsed));
    }
    let stmt = client
        .prepare_cached(&format!(
            "UPDATE messages SET content = $3, edited_at = now()
             WHERE id = $1 AND bucket = $2 RETURNING {COLUMNS}"
        ))
        .await?;
    Ok(Edit::Done(Box::new(from_row(
        &client.query_one(&stmt, &[&id, &bucket, &content]).await?,
    ))))
}
