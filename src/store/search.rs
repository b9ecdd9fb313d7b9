//! Message search: `content ILIKE` over the conversations a user is an active member of,
//! newest first, recalled messages excluded. The pattern arrives escaped; the trigram
//! index `idx_msg_content_trgm` (partial on `is_recalled = FALSE`) serves it for Chinese
//! and English alike.

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::error::Result;
use crate::model::Message;
use crate::store::messages::{COLUMNS, from_row};

/// True when `user` is an active member of `conversation`.
pub async fn is_active_member(
    client: &impl GenericClient,
    conversation: Uuid,
    user: Uuid,
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
    user: Uuid,
    pattern: &str,
    conversation: Option<Uuid>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Message>> {
    let scope = match conversation {
        Some(_) => {
            "conversation_id = $5 AND EXISTS (
                        SELECT 1 FROM conversation_members cm
                        WHERE cm.conversation_id = $5 AND cm.user_id = $1 AND cm.left_at IS NULL)"
        }
        None => {
            "conversation_id IN (
                        SELECT cm.conversation_id FROM conversation_members cm
                        WHERE cm.user_id = $1 AND cm.left_at IS NULL)"
        }
    };
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages
             WHERE {scope} AND is_recalled = FALSE AND content ILIKE $2 ESCAPE '\\'
             ORDER BY created_at DESC, seq DESC
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
