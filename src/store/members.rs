//! `conversation_members` rows: memberships with their cursors, the read cursor and the
//! delivery cursor, a member's own settings (pinned, muted), and who has read a message
//! (derived from the read cursors).
//!
//! Multi-row updates lock their rows in (conversation, user) order first, so the writer's
//! transactions and the cursor flushes of every node cannot deadlock each other.

use deadpool_postgres::GenericClient;

use crate::error::Result;
use crate::model::{ConversationId, ConversationKind, MessageId, UserId};

/// One active membership with the numbers delivery needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The member.
    pub user_id: UserId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Private or group.
    pub kind: ConversationKind,
    /// The conversation's highest seq.
    pub last_seq: i64,
    /// The member has read up to here.
    pub read_seq: i64,
    /// Delivered to some device of the member up to here.
    pub delivered_seq: i64,
}

/// Every active membership of `users`.
pub async fn memberships(client: &impl GenericClient, users: &[UserId]) -> Result<Vec<Membership>> {
    let stmt = client
        .prepare_cached(
            "SELECT cm.user_id, cm.conversation_id, c.conversation_type, c.last_seq, cm.read_seq, cm.delivered_seq
             FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
             WHERE cm.user_id = ANY($1) AND cm.left_at IS NULL",
        )
        .await?;
    let rows = client.query(&stmt, &[&users]).await?;
    Ok(rows
        .iter()
        .map(|r| Membership {
            user_id: r.get(0),
            conversation_id: r.get(1),
            kind: ConversationKind::parse(r.get(2)),
            last_seq: r.get(3),
            read_seq: r.get(4),
            delivered_seq: r.get(5),
        })
        .collect())
}

/// A cursor position: where `user_id` stands in `conversation_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The member.
    pub user_id: UserId,
    /// The seq.
    pub seq: i64,
}

/// Moves delivery cursors forward (never back).
pub async fn advance_delivered(client: &impl GenericClient, items: &[Position]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let convs: Vec<ConversationId> = items.iter().map(|i| i.conversation_id).collect();
    let users: Vec<UserId> = items.iter().map(|i| i.user_id).collect();
    let seqs: Vec<i64> = items.iter().map(|i| i.seq).collect();
    let stmt = client
        .prepare_cached(
            "WITH target AS (
                 SELECT m.id, v.seq
                 FROM conversation_members m
                 JOIN unnest($1::uuid[], $2::uuid[], $3::int8[]) AS v(conv, usr, seq)
                   ON m.conversation_id = v.conv AND m.user_id = v.usr
                 WHERE m.delivered_seq < v.seq
                 ORDER BY m.conversation_id, m.user_id
                 FOR UPDATE OF m
             )
             UPDATE conversation_members m SET delivered_seq = target.seq
             FROM target WHERE m.id = target.id AND m.delivered_seq < target.seq",
        )
        .await?;
    client.execute(&stmt, &[&convs, &users, &seqs]).await?;
    Ok(())
}

/// Moves read cursors forward to seqs without naming the message (viewing auto-read).
pub async fn advance_read_seq(client: &impl GenericClient, items: &[Position]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let convs: Vec<ConversationId> = items.iter().map(|i| i.conversation_id).collect();
    let users: Vec<UserId> = items.iter().map(|i| i.user_id).collect();
    let seqs: Vec<i64> = items.iter().map(|i| i.seq).collect();
    let stmt = client
        .prepare_cached(
            "WITH target AS (
                 SELECT m.id, v.conv, v.seq
                 FROM conversation_members m
                 JOIN unnest($1::uuid[], $2::uuid[], $3::int8[]) AS v(conv, usr, seq)
                   ON m.conversation_id = v.conv AND m.user_id = v.usr
                 WHERE m.read_seq < v.seq
                 ORDER BY m.conversation_id, m.user_id
                 FOR UPDATE OF m
             )
             UPDATE conversation_members m
             SET read_seq = target.seq, last_read_at = now(),
                 last_read_message_id = (SELECT id FROM messages
                                         WHERE conversation_id = target.conv
                                           AND bucket = msg_bucket(target.conv)
                                           AND seq = target.seq)
             FROM target WHERE m.id = target.id AND m.read_seq < target.seq",
        )
        .await?;
    client.execute(&stmt, &[&convs, &users, &seqs]).await?;
    Ok(())
}

/// How a `read` request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The cursor moved to `read_seq`; the conversation is at `last_seq`.
    Moved {
        /// The message's seq, the new read cursor.
        read_seq: i64,
        /// The conversation's highest seq.
        last_seq: i64,
    },
    /// The cursor was already at or past that message.
    Unchanged,
    /// The reader is not an active member.
    NotMember,
    /// No such message in that conversation.
    NoSuchMessage,
}

/// Those of `conversations` that `user` is an active member of.
pub async fn active_in(
    client: &impl GenericClient,
    user: UserId,
    conversations: &[ConversationId],
) -> Result<Vec<ConversationId>> {
    let stmt = client
        .prepare_cached(
            "SELECT conversation_id FROM conversation_members
             WHERE user_id = $1 AND conversation_id = ANY($2) AND left_at IS NULL",
        )
        .await?;
    let rows = client.query(&stmt, &[&user, &conversations]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Moves `user`'s read cursor in `conversation` to `message`, if that is forward.
pub async fn mark_read(
    client: &impl GenericClient,
    conversation: ConversationId,
    user: UserId,
    message: MessageId,
) -> Result<Read> {
    let stmt = client
        .prepare_cached(
            "SELECT cm.read_seq, c.last_seq, m.seq
             FROM conversation_members cm
             JOIN conversations c ON c.id = cm.conversation_id
             LEFT JOIN messages m ON m.id = $3 AND m.conversation_id = $1
                                   AND m.bucket = msg_bucket($1)
             WHERE cm.conversation_id = $1 AND cm.user_id = $2 AND cm.left_at IS NULL",
        )
        .await?;
    let Some(row) = client
        .query_opt(&stmt, &[&conversation, &user, &message])
        .await?
    else {
        return Ok(Read::NotMember);
    };
    let (read_seq, last_seq, seq): (i64, i64, Option<i64>) = (row.get(0), row.get(1), row.get(2));
    let Some(seq) = seq else {
        return Ok(Read::NoSuchMessage);
    };
    if seq <= read_seq {
        return Ok(Read::Unchanged);
    }
    let update = client
        .prepare_cached(
            "UPDATE conversation_members
             SET read_seq = $4, last_read_message_id = $3, last_read_at = now()
             WHERE conversation_id = $1 AND user_id = $2 AND read_seq < $4
             RETURNING read_seq",
        )
        .await?;
    match client
        .query_opt(&update, &[&conversation, &user, &message, &seq])
        .await?
    {
        Some(_) => Ok(Read::Moved {
            read_seq: seq,
            last_seq,
        }),
        None => Ok(Read::Unchanged),
    }
}

/// The other member of every private conversation `user` belongs to, with that
/// conversation (one per partner: a database from the original may hold two conversations
/// of a pair; then the busiest).
pub async fn private_partners(
    client: &impl GenericClient,
    user: UserId,
) -> Result<Vec<(UserId, ConversationId)>> {
    let stmt = client
        .prepare_cached(
            "SELECT DISTINCT ON (other.user_id) other.user_id, me.conversation_id
             FROM conversation_members me
             JOIN conversations c ON c.id = me.conversation_id AND c.conversation_type = 'private'
             JOIN conversation_members other
               ON other.conversation_id = me.conversation_id AND other.user_id <> me.user_id
             WHERE me.user_id = $1
             ORDER BY other.user_id, c.last_seq DESC",
        )
        .await?;
    Ok(client
        .query(&stmt, &[&user])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// A member's own settings of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// Pinned: first in the member's list.
    pub is_pinned: bool,
    /// Muted: left out of the member's total unread count.
    pub is_muted: bool,
}

/// Sets `user`'s flags in `conversation`: `pinned` and `muted` when given, the others kept.
/// Returns the flags now and whether they changed; `None` when `user` is not an active
/// member. Concurrent calls are serialized by the row lock, so exactly one of two equal
/// changes reports a change.
pub async fn set_flags(
    client: &impl GenericClient,
    conversation: ConversationId,
    user: UserId,
    pinned: Option<bool>,
    muted: Option<bool>,
) -> Result<Option<(Flags, bool)>> {
    let stmt = client
        .prepare_cached(
            "WITH me AS (
                 SELECT id, is_pinned AS pinned, COALESCE(is_muted, FALSE) AS muted
                 FROM conversation_members
                 WHERE conversation_id = $1 AND user_id = $2 AND left_at IS NULL
                 FOR UPDATE
             ), wanted AS (
                 SELECT id, pinned, muted, COALESCE($3::bool, pinned) AS new_pinned,
                        COALESCE($4::bool, muted) AS new_muted
                 FROM me
             ), changed AS (
                 UPDATE conversation_members cm
                 SET is_pinned = w.new_pinned, is_muted = w.new_muted
                 FROM wanted w
                 WHERE cm.id = w.id AND (w.new_pinned, w.new_muted) <> (w.pinned, w.muted)
                 RETURNING cm.id
             )
             SELECT new_pinned, new_muted, EXISTS (SELECT 1 FROM changed) FROM wanted",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&conversation, &user, &pinned, &muted])
        .await?
        .map(|r| {
            let flags = Flags {
                is_pinned: r.get(0),
                is_muted: r.get(1),
            };
            (flags, r.get(2))
        }))
}

/// What [`readers`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readers {
    /// The asking user is not an active member.
    NotMember,
    /// No such message in that conversation.
    NoSuchMessage,
    /// The active members who were in the conversation when the message was sent, its
    /// sender left out, oldest membership first, each with whether their read cursor is at
    /// or past the message.
    Found(Vec<(UserId, bool)>),
}

/// Who of `conversation`'s members has read `message`, as `user` (an active member) asks.
/// Derived from the read cursors: nothing is stored per message. A member counts when
/// they joined before the message: by `joined_seq`, or for rows older than that column by
/// `joined_at` against the message's time.
pub async fn readers(
    client: &impl GenericClient,
    conversation: ConversationId,
    user: UserId,
    message: MessageId,
) -> Result<Readers> {
    let (head, list) = tokio::try_join!(
        async {
            let stmt = client
                .prepare_cached(
                    "SELECT m.seq
                     FROM conversation_members me
                     LEFT JOIN messages m ON m.id = $3 AND m.conversation_id = $1
                                           AND m.bucket = msg_bucket($1)
                     WHERE me.conversation_id = $1 AND me.user_id = $2 AND me.left_at IS NULL",
                )
                .await?;
            Ok::<_, crate::error::Error>(
                client
                    .query_opt(&stmt, &[&conversation, &user, &message])
                    .await?,
            )
        },
        async {
            let stmt = client
                .prepare_cached(
                    "SELECT cm.user_id, cm.read_seq >= m.seq
                     FROM messages m
                     JOIN conversation_members cm ON cm.conversation_id = m.conversation_id
                     WHERE m.id = $2 AND m.conversation_id = $1 AND m.bucket = msg_bucket($1)
                       AND cm.left_at IS NULL AND cm.user_id <> m.sender_id
                       AND CASE WHEN cm.joined_seq IS NOT NULL THEN cm.joined_seq < m.seq
                                ELSE COALESCE(cm.joined_at <= m.created_at, TRUE) END
                     ORDER BY cm.joined_at, cm.user_id",
                )
                .await?;
            Ok(client.query(&stmt, &[&conversation, &message]).await?)
        }
    )?;
    let Some(head) = head else {
        return Ok(Readers::NotMember);
    };
    if head.get::<_, Option<i64>>(0).is_none() {
        return Ok(Readers::NoSuchMessage);
    }
    Ok(Readers::Found(
        list.iter().map(|r| (r.get(0), r.get(1))).collect(),
    ))
}
