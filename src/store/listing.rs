//! Reads behind the conversation routes: a user's conversation page (with the last message,
//! the user's read cursor and settings; pinned first) and unread total, active members with
//! their derived unread counts and hidden flags, private partners for the name searches,
//! history and export pages by seq, and hiding.
//!
//! Every function answers for a whole page with one query; nothing here loops over rows
//! issuing more queries.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::error::Result;
use crate::model::{
    ConversationId, ConversationKind, ConversationRow, LastMessage, MemberRow, Message,
    MessageType, Page, Role, Timestamp, UserId,
};
use crate::store::messages::{COLUMNS, from_row as message_from_row};

/// The caller's view of a conversation they belong to, for history.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// Private or group.
    pub kind: ConversationKind,
    /// First-message limit: who spoke first.
    pub first_sender_id: Option<UserId>,
    /// First-message limit: the other side wrote back.
    pub replied: bool,
    /// In a private conversation, the other active member.
    pub other: Option<UserId>,
}

const CONVERSATION_SELECT: &str = "SELECT c.id, c.conversation_type, c.group_name, c.created_at,
        c.updated_at, c.last_message_at, c.last_message_id, c.last_seq, c.first_sender_id,
        c.replied, cm.read_seq, lm.sender_id, lm.message_type, lm.content,
        COALESCE(lm.is_recalled, FALSE), cm.is_pinned, COALESCE(cm.is_muted, FALSE)
     FROM conversation_members cm
     JOIN conversations c ON c.id = cm.conversation_id
     LEFT JOIN messages lm ON lm.id = c.last_message_id AND lm.bucket = msg_bucket(c.id)";

/// True when a member row is hidden: `cm` hid `c` and nothing came since.
const HIDDEN: &str = "(cm.hidden_seq IS NOT NULL AND cm.hidden_seq >= c.last_seq)";

fn conversation_from_row(r: &Row) -> ConversationRow {
    let created_at: Option<Timestamp> = r.get(3);
    let updated_at: Option<Timestamp> = r.get(4);
    let sender: Option<UserId> = r.get(11);
    let message_type: Option<MessageType> = r.get(12);
    ConversationRow {
        id: r.get(0),
        kind: ConversationKind::parse(r.get(1)),
        group_name: r.get(2),
        created_at: created_at.unwrap_or(Timestamp(0)),
        updated_at: updated_at.or(created_at).unwrap_or(Timestamp(0)),
        last_message_at: r.get(5),
        last_message_id: r.get(6),
        last_seq: r.get(7),
        first_sender_id: r.get(8),
        replied: r.get(9),
        read_seq: r.get(10),
        is_pinned: r.get(15),
        is_muted: r.get(16),
        last_message: sender
            .zip(message_type)
            .map(|(sender_id, message_type)| LastMessage {
                sender_id,
                message_type,
                content: r.get(13),
                is_recalled: r.get(14),
            }),
    }
}

/// `user`'s active, non-hidden conversations: pinned ones first, newest activity first
/// within each part.
pub async fn page(
    client: &impl GenericClient,
    user: UserId,
    limit: i64,
    offset: i64,
) -> Result<Vec<ConversationRow>> {
    let stmt = client
        .prepare_cached(&format!(
            "{CONVERSATION_SELECT}
             WHERE cm.user_id = $1 AND cm.left_at IS NULL AND NOT {HIDDEN}
             ORDER BY cm.is_pinned DESC, c.last_message_at DESC NULLS LAST, c.created_at DESC,
                      c.id DESC
             LIMIT $2 OFFSET $3"
        ))
        .await?;
    let rows = client.query(&stmt, &[&user, &limit, &offset]).await?;
    Ok(rows.iter().map(conversation_from_row).collect())
}

/// The conversations among `ids` that `user` is an active member of (hidden or not), in
/// no particular order.
pub async fn by_ids(
    client: &impl GenericClient,
    user: UserId,
    ids: &[ConversationId],
) -> Result<Vec<ConversationRow>> {
    let stmt = client
        .prepare_cached(&format!(
            "{CONVERSATION_SELECT}
             WHERE cm.user_id = $1 AND cm.left_at IS NULL AND cm.conversation_id = ANY($2)"
        ))
        .await?;
    let rows = client.query(&stmt, &[&user, &ids]).await?;
    Ok(rows.iter().map(conversation_from_row).collect())
}

/// The sum of `user`'s unread counts over the conversations the list shows (active, not
/// hidden), all of them, leaving out the muted ones.
pub async fn unread_total(client: &impl GenericClient, user: UserId) -> Result<i64> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT COALESCE(sum(GREATEST(c.last_seq - cm.read_seq, 0)), 0)::int8
             FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
             WHERE cm.user_id = $1 AND cm.left_at IS NULL AND NOT {HIDDEN}
               AND NOT COALESCE(cm.is_muted, FALSE)"
        ))
        .await?;
    Ok(client.query_one(&stmt, &[&user]).await?.get(0))
}

/// One private conversation of a user, for the name searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partner {
    /// The conversation.
    pub conversation: ConversationId,
    /// The other member.
    pub other: UserId,
    /// The user pinned it.
    pub pinned: bool,
}

/// `user`'s active private conversations, most recently updated first; hidden ones only
/// when `include_hidden`.
pub async fn private_partners(
    client: &impl GenericClient,
    user: UserId,
    include_hidden: bool,
) -> Result<Vec<Partner>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT c.id, other.user_id, cm.is_pinned
             FROM conversation_members cm
             JOIN conversations c ON c.id = cm.conversation_id AND c.conversation_type = 'private'
             JOIN conversation_members other
               ON other.conversation_id = c.id AND other.user_id <> cm.user_id
              AND other.left_at IS NULL
             WHERE cm.user_id = $1 AND cm.left_at IS NULL AND ($2 OR NOT {HIDDEN})
             ORDER BY c.updated_at DESC NULLS LAST, c.created_at DESC, c.id DESC"
        ))
        .await?;
    let rows = client.query(&stmt, &[&user, &include_hidden]).await?;
    Ok(rows
        .iter()
        .map(|r| Partner {
            conversation: r.get(0),
            other: r.get(1),
            pinned: r.get(2),
        })
        .collect())
}

/// Active members of each conversation in `ids`, oldest membership first.
pub async fn members(
    client: &impl GenericClient,
    ids: &[ConversationId],
) -> Result<Vec<MemberRow>> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT cm.id, cm.conversation_id, cm.user_id, cm.role, COALESCE(cm.is_muted, FALSE),
                    {HIDDEN}, cm.joined_at, cm.left_at, GREATEST(c.last_seq - cm.read_seq, 0),
                    cm.last_read_message_id, cm.last_read_at, cm.is_pinned
             FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
             WHERE cm.conversation_id = ANY($1) AND cm.left_at IS NULL
             ORDER BY cm.conversation_id, cm.joined_at, cm.user_id"
        ))
        .await?;
    let rows = client.query(&stmt, &[&ids]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let role: Option<String> = r.get(3);
            let joined_at: Option<Timestamp> = r.get(6);
            MemberRow {
                id: r.get(0),
                conversation_id: r.get(1),
                user_id: r.get(2),
                role: role
                    .as_deref()
                    .and_then(Role::parse)
                    .unwrap_or(Role::Member),
                is_muted: r.get(4),
                is_pinned: r.get(11),
                is_hidden: r.get(5),
                joined_at: joined_at.unwrap_or(Timestamp(0)),
                left_at: r.get(7),
                unread_count: r.get(8),
                last_read_message_id: r.get(9),
                last_read_at: r.get(10),
            }
        })
        .collect())
}

/// What history needs to know about `user`'s membership of `conversation`; `None` when
/// the user is not an active member (or the conversation does not exist).
pub async fn access(
    client: &impl GenericClient,
    conversation: ConversationId,
    user: UserId,
) -> Result<Option<Access>> {
    let stmt = client
        .prepare_cached(
            "SELECT c.conversation_type, c.first_sender_id, c.replied,
                    (SELECT o.user_id FROM conversation_members o
                     WHERE o.conversation_id = c.id AND o.user_id <> cm.user_id
                       AND o.left_at IS NULL AND c.conversation_type = 'private'
                     LIMIT 1)
             FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
             WHERE cm.conversation_id = $1 AND cm.user_id = $2 AND cm.left_at IS NULL",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&conversation, &user])
        .await?
        .map(|r| Access {
            kind: ConversationKind::parse(r.get(0)),
            first_sender_id: r.get(1),
            replied: r.get(2),
            other: r.get(3),
        }))
}

/// One page of `conversation`'s messages, oldest first.
pub async fn history(
    client: &impl GenericClient,
    conversation: ConversationId,
    page: Page,
    limit: i64,
) -> Result<Vec<Message>> {
    let (sql, bound, reverse) = match page {
        Page::Newest { offset } => (
            format!(
                "SELECT {COLUMNS} FROM messages
                 WHERE conversation_id = $1 AND bucket = msg_bucket($1)
                 ORDER BY seq DESC LIMIT $2 OFFSET $3"
            ),
            offset,
            true,
        ),
        Page::Before(seq) => (
            format!(
                "SELECT {COLUMNS} FROM messages
                 WHERE conversation_id = $1 AND bucket = msg_bucket($1) AND seq < $3
                 ORDER BY seq DESC LIMIT $2"
            ),
            seq,
            true,
        ),
        Page::After(seq) => (
            format!(
                "SELECT {COLUMNS} FROM messages
                 WHERE conversation_id = $1 AND bucket = msg_bucket($1) AND seq > $3
                 ORDER BY seq LIMIT $2"
            ),
            seq,
            false,
        ),
    };
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client
        .query(&stmt, &[&conversation, &limit, &bound])
        .await?;
    let mut messages: Vec<Message> = rows.iter().map(message_from_row).collect();
    if reverse {
        messages.reverse();
    }
    Ok(messages)
}

/// `conversation`'s highest seq, when `user` is an active member of it.
pub async fn member_last_seq(
    client: &impl GenericClient,
    conversation: ConversationId,
    user: UserId,
) -> Result<Option<i64>> {
    let stmt = client
        .prepare_cached(
            "SELECT c.last_seq
             FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
             WHERE cm.conversation_id = $1 AND cm.user_id = $2 AND cm.left_at IS NULL",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&conversation, &user])
        .await?
        .map(|r| r.get(0)))
}

/// Hides `conversation` for `user` up to its current last seq. False when the user is not
/// an active member.
pub async fn hide(
    client: &impl GenericClient,
    conversation: ConversationId,
    user: UserId,
) -> Result<bool> {
    let stmt = client
        .prepare_cached(
            "UPDATE conversation_members cm SET hidden_seq = c.last_seq
             FROM conversations c
             WHERE c.id = cm.conversation_id AND cm.conversation_id = $1 AND cm.user_id = $2
               AND cm.left_at IS NULL",
        )
        .await?;
    Ok(client.execute(&stmt, &[&conversation, &user]).await? == 1)
}
