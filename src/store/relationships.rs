//! `user_relationships` rows (blocks).

use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::error::Result;

/// `(blocker, blocked)` pairs among the given users, fetched as a superset by the two lists
/// (callers match the pairs they asked about).
pub async fn blocks_among(
    client: &impl GenericClient,
    blockers: &[Uuid],
    targets: &[Uuid],
) -> Result<Vec<(Uuid, Uuid)>> {
    let stmt = client
        .prepare_cached(
            "SELECT user_id, target_user_id FROM user_relationships
             WHERE relationship_type = 'blocked' AND user_id = ANY($1) AND target_user_id = ANY($2)",
        )
        .await?;
    let rows = client.query(&stmt, &[&blockers, &targets]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}
