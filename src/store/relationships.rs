//! `user_relationships` rows (blocks): the pairs the writer checks on every private send,
//! and blocking, unblocking and listing for the relationships routes.

use deadpool_postgres::GenericClient;

use crate::error::Result;
use crate::model::{Timestamp, UserId};

/// `(blocker, blocked)` pairs among the given users, fetched as a superset by the two lists
/// (callers match the pairs they asked about).
pub async fn blocks_among(
    client: &impl GenericClient,
    blockers: &[UserId],
    targets: &[UserId],
) -> Result<Vec<(UserId, UserId)>> {
    let stmt = client
        .prepare_cached(
            "SELECT user_id, target_user_id FROM user_relationships
             WHERE relationship_type = 'blocked' AND user_id = ANY($1) AND target_user_id = ANY($2)",
        )
        .await?;
    let rows = client.query(&stmt, &[&blockers, &targets]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// A `user_relationships` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship {
    /// Row id.
    pub id: uuid::Uuid,
    /// The user who made it (the blocker).
    pub user_id: UserId,
    /// The user it is about (the blocked).
    pub target_user_id: UserId,
    /// `blocked` (others are reserved).
    pub relationship_type: String,
    /// When it was made.
    pub created_at: Timestamp,
}

fn relationship(r: &tokio_postgres::Row) -> Relationship {
    Relationship {
        id: r.get(0),
        user_id: r.get(1),
        target_user_id: r.get(2),
        relationship_type: r.get(3),
        created_at: r.get(4),
    }
}

/// `user` blocks `target`. `None` when it already did.
pub async fn block(
    client: &impl GenericClient,
    user: UserId,
    target: UserId,
) -> Result<Option<Relationship>> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO user_relationships (user_id, target_user_id, relationship_type, created_at)
             VALUES ($1, $2, 'blocked', now())
             ON CONFLICT (user_id, target_user_id, relationship_type) DO NOTHING
             RETURNING id, user_id, target_user_id, relationship_type,
                       COALESCE(created_at, to_timestamp(0))",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&user, &target])
        .await?
        .as_ref()
        .map(relationship))
}

/// `user` unblocks `target`; false when there was no block.
pub async fn unblock(client: &impl GenericClient, user: UserId, target: UserId) -> Result<bool> {
    let stmt = client
        .prepare_cached(
            "DELETE FROM user_relationships
             WHERE user_id = $1 AND target_user_id = $2 AND relationship_type = 'blocked'",
        )
        .await?;
    Ok(client.execute(&stmt, &[&user, &target]).await? > 0)
}

/// A page of the users `user` has blocked, newest first.
pub async fn blocked_by(
    client: &impl GenericClient,
    user: UserId,
    limit: i64,
    offset: i64,
) -> Result<Vec<Relationship>> {
    let stmt = client
        .prepare_cached(
            "SELECT id, user_id, target_user_id, relationship_type,
                    COALESCE(created_at, to_timestamp(0))
             FROM user_relationships
             WHERE user_id = $1 AND relationship_type = 'blocked'
             ORDER BY created_at DESC NULLS LAST, id DESC LIMIT $2 OFFSET $3",
        )
        .await?;
    let rows = client.query(&stmt, &[&user, &limit, &offset]).await?;
    Ok(rows.iter().map(relationship).collect())
}
