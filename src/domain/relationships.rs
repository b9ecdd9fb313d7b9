//! Blocking (PROTOCOL.md §3.6, §5.5): block, unblock and the list of a user's blocks. The
//! block itself is enforced by the writer on every private send (DECISIONS.md "blocking"),
//! which reads `user_relationships` in each batch, so a change here applies to the next
//! send on any node.

use serde::Serialize;

use super::Services;
use crate::error::{Code, Error, Result};
use crate::model::Timestamp;
use crate::model::UserId;
use crate::store;
use crate::store::relationships::Relationship;

/// The wire shape of a Relationship (PROTOCOL.md §3.1).
#[derive(Debug, Serialize)]
pub struct RelationshipObject<'a> {
    /// Row id.
    pub id: uuid::Uuid,
    /// The blocker (the caller).
    pub user_id: UserId,
    /// The blocked user.
    pub target_user_id: UserId,
    /// `blocked`.
    pub relationship_type: &'a str,
    /// When the block was made.
    pub created_at: Timestamp,
}

impl<'a> From<&'a Relationship> for RelationshipObject<'a> {
    fn from(r: &'a Relationship) -> Self {
        RelationshipObject {
            id: r.id,
            user_id: r.user_id,
            target_user_id: r.target_user_id,
            relationship_type: &r.relationship_type,
            created_at: r.created_at,
        }
    }
}

impl Services {
    /// `user` blocks `target`: 400 for oneself, 409 when already blocked.
    pub async fn block(&self, user: UserId, target: UserId) -> Result<Relationship> {
        if user == target {
            return Err(Error::bad_request(
                Code::CannotBlockSelf,
                "cannot block yourself",
            ));
        }
        let db = self.store.conn().await?;
        store::relationships::block(&db, user, target)
            .await?
            .ok_or_else(|| Error::conflict(Code::AlreadyBlocked, "user already blocked"))
    }

    /// `user` unblocks `target`: 404 when there was no block.
    pub async fn unblock(&self, user: UserId, target: UserId) -> Result<()> {
        let db = self.store.conn().await?;
        if store::relationships::unblock(&db, user, target).await? {
            Ok(())
        } else {
            Err(Error::not_found(Code::NotBlocked, "user not blocked"))
        }
    }

    /// A page of the users `user` has blocked, newest first.
    pub async fn blocked_users(
        &self,
        user: UserId,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Relationship>> {
        let db = self.store.conn().await?;
        store::relationships::blocked_by(&db, user, limit, offset).await
    }
}
