//! Groups and roles (PROTOCOL.md §5.2 with DECISIONS.md "groups"): creating a group,
//! adding, removing, leaving and changing roles.
//!
//! Every membership change is one transaction that locks the conversation row first and
//! bumps `members_version`; after the commit this node forgets its cached member list and
//! tells every other node to do the same, and the users concerned get `Joined` or `Left`
//! so their connections start (or stop) counting the conversation at the right seq.

use bytes::Bytes;

use super::routing::Routed;
use super::{CONTROL_MEMBERS, Services};
use crate::error::{Code, Error, Result};
use crate::model::{ConversationId, UserId};
use crate::model::{ConversationKind, Role};
use crate::store::groups::{self, Created};

/// Longest group name, in characters (the column is `varchar(100)`).
pub const MAX_GROUP_NAME_CHARS: usize = 100;

fn forbidden(code: Code, message: &'static str) -> Error {
    Error::forbidden(code, message)
}

/// May a member with `caller` role add members to a conversation of `kind`?
pub fn check_add(kind: ConversationKind, caller: Option<Role>) -> Result<()> {
    if kind != ConversationKind::Group {
        return Err(forbidden(
            Code::NotGroup,
            "can only add members to group conversations",
        ));
    }
    match caller {
        None => Err(Error::caller_not_member()),
        Some(Role::Member) => Err(forbidden(
            Code::NotOwnerOrAdmin,
            "only owner or admin can add members",
        )),
        Some(_) => Ok(()),
    }
}

/// May `caller` (with role `caller_role`) remove `target` (with `target_role`)? Owners
/// and admins remove members; admins do not remove other admins; nobody removes the owner.
pub fn check_remove(
    kind: ConversationKind,
    caller: UserId,
    caller_role: Option<Role>,
    target: UserId,
    target_role: Option<Role>,
) -> Result<()> {
    if kind != ConversationKind::Group {
        return Err(forbidden(
            Code::NotGroup,
            "can only remove members from group conversations",
        ));
    }
    let caller_role = caller_role.ok_or_else(Error::caller_not_member)?;
    if caller_role == Role::Member {
        return Err(forbidden(
            Code::NotOwnerOrAdmin,
            "only owner or admin can remove members",
        ));
    }
    match target_role {
        None => Err(forbidden(
            Code::TargetNotMember,
            "target user is not a member",
        )),
        Some(Role::Owner) => Err(forbidden(Code::CannotRemoveOwner, "cannot remove owner")),
        Some(Role::Admin) if caller_role == Role::Admin && target != caller => Err(forbidden(
            Code::CannotRemoveAdmin,
            "only owner can remove admins",
        )),
        Some(_) => Ok(()),
    }
}

/// May a member with `role` leave a conversation of `kind`?
pub fn check_leave(kind: ConversationKind, role: Option<Role>) -> Result<()> {
    if kind != ConversationKind::Group {
        return Err(forbidden(
            Code::NotGroup,
            "can only leave group conversations",
        ));
    }
    match role {
        None => Err(Error::caller_not_member()),
        Some(Role::Owner) => Err(forbidden(
            Code::OwnerCannotLeave,
            "owner cannot leave group, please transfer ownership first",
        )),
        Some(_) => Ok(()),
    }
}

/// The role changes that giving `target` the role `new` means, when `caller` may do it:
/// only the owner changes roles; a new owner demotes the old one to admin; the owner
/// cannot demote themselves (the group would have no owner).
pub fn role_changes(
    kind: ConversationKind,
    caller: UserId,
    caller_role: Option<Role>,
    target: UserId,
    target_role: Option<Role>,
    new: Role,
) -> Result<Vec<(UserId, Role)>> {
    if kind != ConversationKind::Group {
        return Err(forbidden(
            Code::NotGroup,
            "can only change roles in group conversations",
        ));
    }
    match caller_role {
        None => return Err(Error::caller_not_member()),
        Some(Role::Owner) => {}
        Some(_) => return Err(forbidden(Code::NotOwner, "only owner can change roles")),
    }
    let Some(current) = target_role else {
        return Err(forbidden(Code::MemberNotFound, "member not found"));
    };
    if target == caller {
        return if new == Role::Owner {
            Ok(Vec::new())
        } else {
            Err(forbidden(
                Code::OwnerCannotDemoteSelf,
                "owner cannot change their own role, please transfer ownership first",
            ))
        };
    }
    Ok(match new {
        _ if new == current => Vec::new(),
        Role::Owner => vec![(target, Role::Owner), (caller, Role::Admin)],
        _ => vec![(target, new)],
    })
}

/// Distinct ids, without `except`; a nil id is a 400.
fn distinct_ids(ids: &[UserId], except: UserId) -> Result<Vec<UserId>> {
    if ids.iter().any(UserId::is_nil) {
        return Err(Error::bad_request(
            Code::InvalidMemberId,
            "invalid member id",
        ));
    }
    let mut out: Vec<UserId> = ids.iter().copied().filter(|u| *u != except).collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn role_of(roles: &[(UserId, Role)], user: UserId) -> Option<Role> {
    roles.iter().find(|(u, _)| *u == user).map(|(_, r)| *r)
}

/// A group would pass the `max_group_members` setting (`limit` > 0).
fn check_size(members: usize, limit: u64) -> Result<()> {
    if limit > 0 && members as u64 > limit {
        return Err(Error::bad_request(
            Code::GroupTooLarge,
            format!("a group has at most {limit} members"),
        ));
    }
    Ok(())
}

fn conversation_not_found() -> Error {
    forbidden(Code::ConversationNotFound, "conversation not found")
}

impl Services {
    /// Creates a group named `name` owned by `owner` with `members` (duplicates and the
    /// owner's own id ignored); every member is told it joined.
    pub async fn create_group(
        &self,
        owner: UserId,
        name: &str,
        members: &[UserId],
    ) -> Result<Created> {
        if name.trim().is_empty() {
            return Err(Error::bad_request(
                Code::InvalidGroupName,
                "group_name is required",
            ));
        }
        if name.chars().count() > MAX_GROUP_NAME_CHARS {
            return Err(Error::bad_request(
                Code::InvalidGroupName,
                format!("group_name must be at most {MAX_GROUP_NAME_CHARS} characters"),
            ));
        }
        let members = distinct_ids(members, owner)?;
        check_size(members.len() + 1, self.settings().max_group_members)?;
        let created = {
            let mut db = self.store.conn().await?;
            let tx = db.transaction().await?;
            let created = groups::create(&tx, name, owner, &members).await?;
            tx.commit().await?;
            created
        };
        let env = self.envelope(&Routed::Joined {
            conversation_id: created.id,
            last_seq: 0,
        });
        let everyone: Vec<UserId> = std::iter::once(owner).chain(members).collect();
        self.route_all(&everyone, &env, created.id).await;
        Ok(created)
    }

    /// Adds `ids` to group `conversation` as members (an owner or admin asks). Members who
    /// left come back; active ones are skipped. All or nothing.
    pub async fn add_members(
        &self,
        caller: UserId,
        conversation: ConversationId,
        ids: &[UserId],
    ) -> Result<()> {
        let ids = distinct_ids(ids, caller)?;
        let limit = self.settings().max_group_members;
        // The caller is a member too: refuse an oversized list before touching the database.
        check_size(ids.len() + 1, limit)?;
        let mut db = self.store.conn().await?;
        let tx = db.transaction().await?;
        let (kind, last_seq) = groups::lock(&tx, conversation)
            .await?
            .ok_or_else(conversation_not_found)?;
        let roles = groups::roles(&tx, conversation, &[caller]).await?;
        check_add(kind, role_of(&roles, caller))?;
        if ids.is_empty() {
            return Ok(());
        }
        let joined = groups::add(&tx, conversation, &ids, last_seq).await?;
        if joined.is_empty() {
            return Ok(());
        }
        if limit > 0 {
            // The row lock serialises membership changes, so this count is exact; past the
            // limit the transaction is dropped (rolled back).
            check_size(
                groups::active_count(&tx, conversation).await? as usize,
                limit,
            )?;
        }
        groups::bump_version(&tx, conversation).await?;
        tx.commit().await?;
        drop(db);
        self.members_changed(conversation).await;
        let env = self.envelope(&Routed::Joined {
            conversation_id: conversation,
            last_seq,
        });
        // On the path the group's messages take, so none overtakes the join.
        let size = self.group_size(conversation).await;
        self.bus
            .route_many_of(&joined, env, conversation, size)
            .await;
        Ok(())
    }

    /// Members of `conversation` now (0 when they cannot be read: the per-user path).
    async fn group_size(&self, conversation: ConversationId) -> usize {
        match self.members.load(&self.store, conversation).await {
            Ok(Some(m)) => m.list.len(),
            _ => 0,
        }
    }

    /// Tells `user`'s devices they left `conversation`, on the path the group's messages
    /// took while they were a member, so a message from before comes before it.
    async fn route_left(&self, user: UserId, conversation: ConversationId) {
        let env = self.envelope(&Routed::Left {
            conversation_id: conversation,
        });
        let size = self.group_size(conversation).await + 1;
        self.bus
            .route_many_of(&[user], env, conversation, size)
            .await;
    }

    /// Removes `target` from group `conversation` (an owner or admin asks).
    pub async fn remove_member(
        &self,
        caller: UserId,
        conversation: ConversationId,
        target: UserId,
    ) -> Result<()> {
        let mut db = self.store.conn().await?;
        let tx = db.transaction().await?;
        let (kind, _) = groups::lock(&tx, conversation)
            .await?
            .ok_or_else(conversation_not_found)?;
        let roles = groups::roles(&tx, conversation, &[caller, target]).await?;
        check_remove(
            kind,
            caller,
            role_of(&roles, caller),
            target,
            role_of(&roles, target),
        )?;
        groups::leave(&tx, conversation, target).await?;
        groups::bump_version(&tx, conversation).await?;
        tx.commit().await?;
        drop(db);
        self.members_changed(conversation).await;
        self.route_left(target, conversation).await;
        Ok(())
    }

    /// The caller leaves group `conversation` (not its owner).
    pub async fn leave_group(&self, caller: UserId, conversation: ConversationId) -> Result<()> {
        let mut db = self.store.conn().await?;
        let tx = db.transaction().await?;
        let (kind, _) = groups::lock(&tx, conversation)
            .await?
            .ok_or_else(conversation_not_found)?;
        let roles = groups::roles(&tx, conversation, &[caller]).await?;
        check_leave(kind, role_of(&roles, caller))?;
        groups::leave(&tx, conversation, caller).await?;
        groups::bump_version(&tx, conversation).await?;
        tx.commit().await?;
        drop(db);
        self.members_changed(conversation).await;
        self.route_left(caller, conversation).await;
        Ok(())
    }

    /// Gives `target` the role `role` in group `conversation` (the owner asks).
    pub async fn change_role(
        &self,
        caller: UserId,
        conversation: ConversationId,
        target: UserId,
        role: Role,
    ) -> Result<()> {
        let mut db = self.store.conn().await?;
        let tx = db.transaction().await?;
        let (kind, _) = groups::lock(&tx, conversation)
            .await?
            .ok_or_else(conversation_not_found)?;
        let roles = groups::roles(&tx, conversation, &[caller, target]).await?;
        let changes = role_changes(
            kind,
            caller,
            role_of(&roles, caller),
            target,
            role_of(&roles, target),
            role,
        )?;
        if changes.is_empty() {
            return Ok(());
        }
        groups::set_roles(&tx, conversation, &changes).await?;
        groups::bump_version(&tx, conversation).await?;
        tx.commit().await?;
        drop(db);
        self.members_changed(conversation).await;
        Ok(())
    }

    /// After a committed membership change: forget the cached list here and on every node.
    async fn members_changed(&self, conversation: ConversationId) {
        self.members.invalidate(conversation);
        let mut message = CONTROL_MEMBERS.to_vec();
        message.extend_from_slice(conversation.to_string().as_bytes());
        self.bus.broadcast_control(Bytes::from(message)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: ConversationKind = ConversationKind::Group;
    const P: ConversationKind = ConversationKind::Private;

    fn code(r: Result<impl std::fmt::Debug>) -> &'static str {
        r.map(|_| "ok").unwrap_or_else(|e| e.code())
    }

    #[test]
    fn add_rules() {
        assert_eq!(code(check_add(P, Some(Role::Owner))), "not_group");
        assert_eq!(code(check_add(G, None)), "not_member");
        assert_eq!(code(check_add(G, Some(Role::Member))), "not_owner_or_admin");
        assert_eq!(code(check_add(G, Some(Role::Admin))), "ok");
        assert_eq!(code(check_add(G, Some(Role::Owner))), "ok");
    }

    #[test]
    fn remove_rules() {
        let (me, other) = (UserId::new_v4(), UserId::new_v4());
        let r = |caller, target| check_remove(G, me, caller, other, target);
        assert_eq!(
            code(check_remove(
                P,
                me,
                Some(Role::Owner),
                other,
                Some(Role::Member)
            )),
            "not_group"
        );
        assert_eq!(code(r(None, Some(Role::Member))), "not_member");
        assert_eq!(
            code(r(Some(Role::Member), Some(Role::Member))),
            "not_owner_or_admin"
        );
        assert_eq!(code(r(Some(Role::Admin), None)), "target_not_member");
        assert_eq!(
            code(r(Some(Role::Admin), Some(Role::Owner))),
            "cannot_remove_owner"
        );
        assert_eq!(
            code(r(Some(Role::Admin), Some(Role::Admin))),
            "cannot_remove_admin"
        );
        assert_eq!(code(r(Some(Role::Owner), Some(Role::Admin))), "ok");
        assert_eq!(code(r(Some(Role::Admin), Some(Role::Member))), "ok");
        // An admin may remove themselves; the owner may not.
        assert_eq!(
            code(check_remove(
                G,
                me,
                Some(Role::Admin),
                me,
                Some(Role::Admin)
            )),
            "ok"
        );
        assert_eq!(
            code(check_remove(
                G,
                me,
                Some(Role::Owner),
                me,
                Some(Role::Owner)
            )),
            "cannot_remove_owner"
        );
    }

    #[test]
    fn leave_rules() {
        assert_eq!(code(check_leave(P, Some(Role::Member))), "not_group");
        assert_eq!(code(check_leave(G, None)), "not_member");
        assert_eq!(
            code(check_leave(G, Some(Role::Owner))),
            "owner_cannot_leave"
        );
        assert_eq!(code(check_leave(G, Some(Role::Admin))), "ok");
    }

    #[test]
    fn role_rules() {
        let (owner, x) = (UserId::new_v4(), UserId::new_v4());
        let o = Some(Role::Owner);
        let m = Some(Role::Member);
        assert_eq!(
            code(role_changes(P, owner, o, x, m, Role::Admin)),
            "not_group"
        );
        assert_eq!(
            code(role_changes(G, owner, None, x, m, Role::Admin)),
            "not_member"
        );
        assert_eq!(
            code(role_changes(G, owner, Some(Role::Admin), x, m, Role::Admin)),
            "not_owner"
        );
        assert_eq!(
            code(role_changes(G, owner, o, x, None, Role::Admin)),
            "member_not_found"
        );
        assert_eq!(
            code(role_changes(G, owner, o, owner, o, Role::Member)),
            "owner_cannot_demote_self"
        );
        assert!(
            role_changes(G, owner, o, owner, o, Role::Owner)
                .unwrap()
                .is_empty()
        );
        assert!(
            role_changes(G, owner, o, x, m, Role::Member)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            role_changes(G, owner, o, x, m, Role::Admin).unwrap(),
            [(x, Role::Admin)]
        );
        assert_eq!(
            role_changes(G, owner, o, x, m, Role::Owner).unwrap(),
            [(x, Role::Owner), (owner, Role::Admin)]
        );
    }

    #[test]
    fn ids_are_distinct_and_never_nil() {
        let (me, a, b) = (UserId::new_v4(), UserId::new_v4(), UserId::new_v4());
        let got = distinct_ids(&[a, b, a, me], me).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.contains(&a) && got.contains(&b));
        assert_eq!(
            code(distinct_ids(&[UserId::nil()], me)),
            "invalid_member_id"
        );
    }
}
