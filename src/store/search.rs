//! Message search: `content ILIKE` over the conversations a user is an active member of,
//! newest first, recalled messages excluded. The pattern arrives escaped; the trigram
//! index on `message_search` serves it for Chinese and English alike. `message_search`
//! is filled asynchronously ([`index`], and [`sweep`] for what a crashed node missed).

use deadpool_postgres::GenericClient;

use crate::error::Result;
use crate::model::{ConversationId, Message, MessageId, UserId};
use crate::store::messages::{COLUMNS_M, from_row};

/// True when `user` is an active member of `conversation`.
pub async fn is_active_member(
    client: &impl GenericClient,
    conversation: ConversationId,
    user: UserId,
) -> Result<bool> {
    let stmt = client
        .prepare_cached(
            "SELECT 1 FROM conversation_members
             WHERE conversation_id = $1 AND user_id = $2 AND left_at IS NULL",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&conversation, &user])
        .await?
        .is_some())
}

/// Messages matching `pattern` (an `ILIKE` pattern with `\` as its escape character) in
/// `user`'s active conversations, or only in `conversation` when given; newest first.
pub async fn messages(
    client: &impl GenericClient,
    user: UserId,
    pattern: &str,
    conversation: Option<ConversationId>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Message>> {
    let scope = match conversation {
        Some(_) => {
            "s.conversation_id = $5 AND EXISTS (
                        SELECT 1 FROM conversation_members cm
                        WHERE cm.conversation_id = $5 AND cm.user_id = $1 AND cm.left_at IS NULL)"
        }
        None => {
            "s.conversation_id IN (
                        SELECT cm.conversation_id FROM conversation_members cm
                        WHERE cm.user_id = $1 AND cm.left_at IS NULL)"
        }
    };
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS_M} FROM message_search s
             JOIN messages m ON m.id = s.message_id AND m.bucket = msg_bucket(s.conversation_id)
             WHERE {scope} AND COALESCE(m.is_recalled, FALSE) = FALSE AND s.content ILIKE $2 ESCAPE '\\'
             ORDER BY s.created_at DESC, m.seq DESC
             LIMIT $3 OFFSET $4"
        ))
        .await?;
    let rows = match conversation {
        Some(c) => {
            client
                .query(&stmt, &[&user, &pattern, &limit, &offset, &c])
                .await?
        }
        None => {
            client
                .query(&stmt, &[&user, &pattern, &limit, &offset])
                .await?
        }
    };
    Ok(rows.iter().map(from_row).collect())
}

/// One message's searchable text.
pub struct Searchable {
    /// Message id.
    pub message_id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Its commit time.
    pub created_at: crate::model::Timestamp,
    /// Its text.
    pub content: String,
}

/// Adds `items` to the search table (rows already there are left alone).
pub async fn index(client: &impl GenericClient, items: &[Searchable]) -> Result<u64> {
    if items.is_empty() {
        return Ok(0);
    }
    let ids: Vec<MessageId> = items.iter().map(|i| i.message_id).collect();
    let convs: Vec<ConversationId> = items.iter().map(|i| i.conversation_id).collect();
    let times: Vec<crate::model::Timestamp> = items.iter().map(|i| i.created_at).collect();
    let contents: Vec<&str> = items.iter().map(|i| i.content.as_str()).collect();
    let stmt = client
        .prepare_cached(
            "INSERT INTO message_search (message_id, conversation_id, created_at, content)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[])
             ON CONFLICT DO NOTHING",
        )
        .await?;
    Ok(client
        .execute(&stmt, &[&ids, &convs, &times, &contents])
        .await?)
}

/// Adds the searchable text of messages created after `since` (and more than 5 s ago)
/// that are missing from the search table (a node died before indexing them). Returns
/// rows added.
pub async fn sweep(client: &impl GenericClient, since: crate::model::Timestamp) -> Result<u64> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO message_search (message_id, conversation_id, created_at, content)
             SELECT m.id, m.conversation_id, m.created_at, m.content FROM messages m
             WHERE m.created_at > $1
               AND m.created_at < now() - interval '5 seconds'
               AND m.content IS NOT NULL AND m.content <> ''
               AND NOT EXISTS (SELECT 1 FROM message_search s WHERE s.message_id = m.id)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    Ok(client.execute(&stmt, &[&since]).await?)
}
