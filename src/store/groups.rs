//! Group membership writes: creating a group, the conversation row lock every membership
//! change takes, adding (or reactivating) members, leaving, roles, and the
//! `members_version` bump that tells every node its cached member list is stale.
//!
//! Callers run these inside one transaction that starts with [`lock`].

use deadpool_postgres::GenericClient;

use crate::error::Result;
use crate::model::{ConversationId, ConversationKind, Role, Timestamp, UserId};

/// A group just created.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// Its id.
    pub id: ConversationId,
    /// Creation time (also its `updated_at`).
    pub created_at: Timestamp,
}

/// Creates group `name` with `owner` as owner and each of `members` (distinct, without the
/// owner) as member.
pub async fn create(
    client: &impl GenericClient,
    name: &str,
    owner: UserId,
    members: &[UserId],
) -> Result<Created> {
    let id = ConversationId::now_v7();
    let stmt = client
        .prepare_cached(
            "INSERT INTO conversations (id, conversation_type, group_name, created_at, updated_at)
             VALUES ($1, 'group', $2, now(), now()) RETURNING created_at",
        )
        .await?;
    let created_at: Timestamp = client.query_one(&stmt, &[&id, &name]).await?.get(0);
    let mut users = Vec::with_capacity(members.len() + 1);
    users.push(owner);
    users.extend_from_slice(members);
    let stmt = client
        .prepare_cached(
            "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at)
             SELECT $1, u, CASE WHEN u = $2 THEN 'owner' ELSE 'member' END, now()
             FROM unnest($3::uuid[]) AS u",
        )
        .await?;
    client.execute(&stmt, &[&id, &owner, &users]).await?;
    Ok(Created { id, created_at })
}

/// Locks the row of `conversation` for a membership change. Returns its kind and highest
/// seq, or `None` when it does not exist.
pub async fn lock(
    client: &impl GenericClient,
    conversation: ConversationId,
) -> Result<Option<(ConversationKind, i64)>> {
    let stmt = client
        .prepare_cached(
            "SELECT conversation_type, last_seq FROM conversations WHERE id = $1 FOR UPDATE",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&conversation])
        .await?
        .map(|r| (ConversationKind::parse(r.get(0)), r.get(1))))
}

/// Roles of those of `users` who are active members of `conversation`.
pub async fn roles(
    client: &impl GenericClient,
    conversation: ConversationId,
    users: &[UserId],
) -> Result<Vec<(UserId, Role)>> {
    let stmt = client
        .prepare_cached(
            "SELECT user_id, role FROM conversation_members
             WHERE conversation_id = $1 AND user_id = ANY($2) AND left_at IS NULL",
        )
        .await?;
    let rows = client.query(&stmt, &[&conversation, &users]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let role: Option<String> = r.get(1);
            (
                r.get(0),
                role.as_deref()
                    .and_then(Role::parse)
                    .unwrap_or(Role::Member),
            )
        })
        .collect())
}

/// Makes each of `users` (distinct) an active member: new rows, or rows of members who
/// left brought back. Either way they start as plain members with nothing unread or
/// pending before `last_seq` (their `joined_seq`), unpinned and unmuted: settings end with
/// the membership. Active members are left alone. Returns who joined.
pub async fn add(
    client: &impl GenericClient,
    conversation: ConversationId,
    users: &[UserId],
    last_seq: i64,
) -> Result<Vec<UserId>> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO conversation_members
                 (conversation_id, user_id, role, joined_at, read_seq, delivered_seq, joined_seq)
             SELECT $1, u, 'member', now(), $3, $3, $3 FROM unnest($2::uuid[]) AS u
             ON CONFLICT (conversation_id, user_id) DO UPDATE
                SET left_at = NULL, role = 'member', joined_at = now(),
                    read_seq = EXCLUDED.read_seq, delivered_seq = EXCLUDED.delivered_seq,
                    joined_seq = EXCLUDED.joined_seq, is_pinned = FALSE, is_muted = FALSE,
                    hidden_seq = NULL, last_read_message_id = NULL, last_read_at = NULL
                WHERE conversation_members.left_at IS NOT NULL
             RETURNING user_id",
        )
        .await?;
    let rows = client
        .query(&stmt, &[&conversation, &users, &last_seq])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// How many active members `conversation` has.
pub async fn active_count(
    client: &impl GenericClient,
    conversation: ConversationId,
) -> Result<i64> {
    let stmt = client
        .prepare_cached(
            "SELECT count(*) FROM conversation_members
             WHERE conversation_id = $1 AND left_at IS NULL",
        )
        .await?;
    Ok(client.query_one(&stmt, &[&conversation]).await?.get(0))
}

/// Marks `user` as having left `conversation`. False when not an active member.
pub async fn leave(
    client: &impl GenericClient,
    conversation: ConversationId,
    user: UserId,
) -> Result<bool> {
    let stmt = client
        .prepare_cached(
            "UPDATE conversation_members SET left_at = now()
             WHERE conversation_id = $1 AND user_id = $2 AND left_at IS NULL",
        )
        .await?;
    Ok(client.execute(&stmt, &[&conversation, &user]).await? == 1)
}

/// Sets the role of each `(user, role)` pair among the active members of `conversation`.
pub async fn set_roles(
    client: &impl GenericClient,
    conversation: ConversationId,
    changes: &[(UserId, Role)],
) -> Result<()> {
    let users: Vec<UserId> = changes.iter().map(|(u, _)| *u).collect();
    let roles: Vec<&str> = changes.iter().map(|(_, r)| r.as_str()).collect();
    let stmt = client
        .prepare_cached(
            "UPDATE conversation_members m SET role = v.role
             FROM unnest($2::uuid[], $3::text[]) AS v(usr, role)
             WHERE m.conversation_id = $1 AND m.user_id = v.usr AND m.left_at IS NULL",
        )
        .await?;
    client
        .execute(&stmt, &[&conversation, &users, &roles])
        .await?;
    Ok(())
}

/// Bumps `members_version`, so cached member lists of `conversation` are reloaded.
pub async fn bump_version(client: &impl GenericClient, conversation: ConversationId) -> Result<()> {
    let stmt = client
        .prepare_cached(
            "UPDATE conversations SET members_version = members_version + 1 WHERE id = $1",
        )
        .await?;
    client.execute(&stmt, &[&conversation]).await?;
    Ok(())
}
