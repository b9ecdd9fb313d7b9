//! `messages` rows: the batched insert of the writer, ranges by seq for delivery and
//! repair, look-ups by id and by client message id, and recall.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{Message, Timestamp};

/// The column list every message query selects, in [`from_row`] order.
pub const COLUMNS: &str = "id, conversation_id, seq, sender_id, message_type, content, metadata, \
     reply_to_message_id, COALESCE(is_recalled, FALSE), recalled_at, created_at, client_msg_id";

/// [`COLUMNS`] qualified with the alias `m`, for joins.
pub const COLUMNS_M: &str = "m.id, m.conversation_id, m.seq, m.sender_id, m.message_type, m.content, m.metadata, \
     m.reply_to_message_id, COALESCE(m.is_recalled, FALSE), m.recalled_at, m.created_at, m.client_msg_id";

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
    }
}

/// `(id, conversation_id)` of each existing message among `ids`.
pub async fn conversations_of(
    client: &impl GenericClient,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, Uuid)>> {
    let stmt = client
        .prepare_cached("SELECT id, conversation_id FROM messages WHERE id = ANY($1)")
        .await?;
    let rows = client.query(&stmt, &[&ids]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Messages whose `(sender_id, client_msg_id)` is among the given pairs (a superset is
/// fetched by the two lists; callers match pairs).
pub async fn by_client_ids(
    client: &impl GenericClient,
    senders: &[Uuid],
    client_ids: &[&str],
) -> Result<Vec<Message>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE sender_id = ANY($1) AND client_msg_id = ANY($2)"
        ))
        .await?;
    let rows = client.query(&stmt, &[&senders, &client_ids]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// One message by id.
pub async fn get(client: &impl GenericClient, id: Uuid) -> Result<Option<Message>> {
    let stmt = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM messages WHERE id = $1"))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(from_row))
}

/// Messages of `conversation` with `after < seq <= upto`, oldest first, at most `limit`.
pub async fn range(
    client: &impl GenericClient,
    conversation: Uuid,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<Message>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages
             WHERE conversation_id = $1 AND seq > $2 AND seq <= $3
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
    conversations: &[Uuid],
    afters: &[i64],
    limit: i64,
) -> Result<Vec<Message>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT m.* FROM unnest($1::uuid[], $2::int8[]) AS p(conv, after)
             CROSS JOIN LATERAL (
                 SELECT {COLUMNS} FROM messages
                 WHERE conversation_id = p.conv AND seq > p.after
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
    /// Recalled now; the message as it is stored.
    Done(Message),
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
    id: Uuid,
    sender: Uuid,
    window_seconds: i64,
) -> Result<Recall> {
    let stmt = client
        .prepare_cached(
            "SELECT sender_id, COALESCE(is_recalled, FALSE),
                    round(extract(epoch FROM now() - created_at))::int8
             FROM messages WHERE id = $1 FOR UPDATE",
        )
        .await?;
    let Some(row) = client.query_opt(&stmt, &[&id]).await? else {
        return Ok(Recall::NotFound);
    };
    let (owner, recalled, elapsed): (Uuid, bool, i64) = (row.get(0), row.get(1), row.get(2));
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
            "UPDATE messages SET is_recalled = TRUE, recalled_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .await?;
    Ok(Recall::Done(from_row(
        &client.query_one(&stmt, &[&id]).await?,
    )))
}
