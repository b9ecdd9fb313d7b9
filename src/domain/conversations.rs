//! Conversations as a member sees them (PROTOCOL.md §3.3, §5.11-5.13): the list with
//! unread counts (and their total over the conversations not muted), previews, presence,
//! members and profiles, pinned conversations first; the two name searches; the private
//! get-or-create; history pages by seq; hiding.
//!
//! A page costs a fixed number of round trips whatever its size: one query for the
//! conversations (with the unread total pipelined on the same connection), one for all
//! their members, one Redis read for presence and one for profiles (plus, on a cache miss,
//! one call to the profile service).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Services;
use super::events;
use super::profiles::Profiles;
use crate::error::{Code, Error, Result};
use crate::model::Profile;
use crate::model::{ConversationId, ConversationKind, Message, UserId};
use crate::model::{ConversationRow, MemberRow, Page};
use crate::store::conversations::get_or_create_private;
use crate::store::listing;

/// One conversation of a list, with everything the list item shows.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The conversation and the caller's cursor.
    pub conversation: ConversationRow,
    /// The caller's unread count.
    pub unread_count: i64,
    /// Preview of the last message; `None` when there is none or it was recalled.
    pub last_message_text: Option<String>,
    /// Private: the other member and whether they are online (empty when the setting is off).
    pub online_status: Vec<(UserId, bool)>,
    /// Active members with their profiles when known.
    pub members: Vec<(MemberRow, Option<Arc<Profile>>)>,
    /// Whether the caller may send now (first-message limit).
    pub can_send: bool,
}

/// A page of the conversation list.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// The conversations of the page, in list order.
    pub conversations: Vec<Listed>,
    /// The caller's unread messages over every conversation the list shows (all pages),
    /// muted ones left out.
    pub total_unread: i64,
}

/// One hit of the private-conversation search.
#[derive(Debug, Clone)]
pub struct Found {
    /// The conversation and the caller's cursor.
    pub conversation: ConversationRow,
    /// The partner.
    pub other: UserId,
    /// The partner's profile (it matched, so it is known).
    pub profile: Arc<Profile>,
    /// The caller's unread count.
    pub unread_count: i64,
}

/// A history page.
#[derive(Debug, Clone)]
pub struct History {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// Whether the caller may send now.
    pub can_send: bool,
    /// Private: the other member's presence.
    pub online_status: Vec<(UserId, bool)>,
}

/// The first-message limit (PROTOCOL.md §5.4 as DECISIONS.md keeps it): in a private
/// conversation the member who spoke first waits until the other side replies.
pub fn can_send(
    limit_on: bool,
    kind: ConversationKind,
    first_sender: Option<UserId>,
    replied: bool,
    user: UserId,
) -> bool {
    !(limit_on && kind == ConversationKind::Private && first_sender == Some(user) && !replied)
}

/// The list preview: `None` without a last message or when it was recalled; a type
/// without a label previews as `""` in lists (PROTOCOL.md §5.3).
fn list_preview(c: &ConversationRow) -> Option<String> {
    let m = c.last_message.as_ref()?;
    if m.is_recalled {
        return None;
    }
    Some(events::preview(&m.message_type, m.content.as_deref(), false).unwrap_or_default())
}

/// The list order: the caller's pinned conversations first; within each part newest
/// activity first, conversations without messages last.
fn list_order(a: &ConversationRow, b: &ConversationRow) -> std::cmp::Ordering {
    b.is_pinned
        .cmp(&a.is_pinned)
        .then(b.last_message_at.cmp(&a.last_message_at))
        .then(b.created_at.cmp(&a.created_at))
        .then(b.id.cmp(&a.id))
}

fn contains_ci(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
}

/// Assembles one list item from its parts.
fn listed(
    user: UserId,
    c: ConversationRow,
    members: Vec<MemberRow>,
    online: &HashMap<UserId, bool>,
    profiles: &Profiles,
    limit_on: bool,
) -> Listed {
    let online_status = members
        .iter()
        .filter(|m| m.user_id != user)
        .filter_map(|m| online.get(&m.user_id).map(|o| (m.user_id, *o)))
        .collect();
    Listed {
        unread_count: (c.last_seq - c.read_seq).max(0),
        last_message_text: list_preview(&c),
        online_status: if c.kind == ConversationKind::Private {
            online_status
        } else {
            Vec::new()
        },
        can_send: can_send(limit_on, c.kind, c.first_sender_id, c.replied, user),
        members: members
            .into_iter()
            .map(|mut m| {
                if m.user_id != user {
                    // A member's settings are their own: others see the defaults.
                    m.is_pinned = false;
                    m.is_muted = false;
                }
                let p = profiles.get(&m.user_id).cloned();
                (m, p)
            })
            .collect(),
        conversation: c,
    }
}

impl Services {
    /// `GET /conversations`: the caller's active, non-hidden conversations, pinned ones
    /// first; with `search`, only private ones whose partner's profile name or domain
    /// contains it. The unread total is over every conversation the list shows, whatever
    /// the page and the search.
    pub async fn conversation_list(
        &self,
        user: UserId,
        limit: i64,
        offset: i64,
        search: Option<&str>,
    ) -> Result<ListPage> {
        let Some(term) = search else {
            let (rows, total_unread) = {
                let db = self.store.conn().await?;
                tokio::try_join!(
                    listing::page(&db, user, limit, offset),
                    listing::unread_total(&db, user)
                )?
            };
            return Ok(ListPage {
                conversations: self.enrich(user, rows).await?,
                total_unread,
            });
        };
        let term = term.to_lowercase();
        let (partners, total_unread) = {
            let db = self.store.conn().await?;
            tokio::try_join!(
                listing::private_partners(&db, user, false),
                listing::unread_total(&db, user)
            )?
        };
        let mut partners = partners;
        // Pinned first, as in the list; the sort is stable, so newest first within each part.
        partners.sort_by_key(|p| !p.pinned);
        let others: Vec<UserId> = partners.iter().map(|p| p.other).collect();
        let profiles = self.profiles(&others).await;
        let page: Vec<ConversationId> = partners
            .iter()
            .filter(|p| {
                profiles
                    .get(&p.other)
                    .is_some_and(|p| contains_ci(&p.name, &term) || contains_ci(&p.domain, &term))
            })
            .map(|p| p.conversation)
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        Ok(ListPage {
            conversations: self.conversation_views(user, &page).await?,
            total_unread,
        })
    }

    /// The caller's view of each of `ids` they are an active member of, in list order.
    pub async fn conversation_views(
        &self,
        user: UserId,
        ids: &[ConversationId],
    ) -> Result<Vec<Listed>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = {
            let db = self.store.conn().await?;
            listing::by_ids(&db, user, ids).await?
        };
        rows.sort_by(list_order);
        self.enrich(user, rows).await
    }

    /// Adds members, presence, profiles, previews and `can_send` to a page of rows.
    async fn enrich(&self, user: UserId, rows: Vec<ConversationRow>) -> Result<Vec<Listed>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let settings = self.settings.get();
        let ids: Vec<ConversationId> = rows.iter().map(|c| c.id).collect();
        let members = {
            let db = self.store.conn().await?;
            listing::members(&db, &ids).await?
        };
        let mut by_conv: HashMap<ConversationId, Vec<MemberRow>> = HashMap::new();
        for m in members {
            by_conv.entry(m.conversation_id).or_default().push(m);
        }
        let private: HashSet<ConversationId> = rows
            .iter()
            .filter(|c| c.kind == ConversationKind::Private)
            .map(|c| c.id)
            .collect();
        let mut watched: Vec<UserId> = if settings.online_status {
            by_conv
                .iter()
                .filter(|(c, _)| private.contains(c))
                .flat_map(|(_, ms)| ms.iter().map(|m| m.user_id))
                .filter(|u| *u != user)
                .collect()
        } else {
            Vec::new()
        };
        watched.sort_unstable();
        watched.dedup();
        let everyone: Vec<UserId> = by_conv
            .values()
            .flat_map(|ms| ms.iter().map(|m| m.user_id))
            .collect();
        let (online, profiles) = tokio::join!(self.online_map(&watched), self.profiles(&everyone));
        Ok(rows
            .into_iter()
            .map(|c| {
                let members = by_conv.remove(&c.id).unwrap_or_default();
                listed(
                    user,
                    c,
                    members,
                    &online,
                    &profiles,
                    settings.first_message_limit,
                )
            })
            .collect())
    }

    /// Presence of `users` as a map; a Redis failure reads as "offline" (logged).
    async fn online_map(&self, users: &[UserId]) -> HashMap<UserId, bool> {
        match self.presence.online(users).await {
            Ok(flags) => users.iter().copied().zip(flags).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "presence unavailable; showing users offline");
                users.iter().map(|u| (*u, false)).collect()
            }
        }
    }

    /// `GET /conversations/search`: the caller's private conversations (hidden included)
    /// whose partner's profile name contains `term`, newest first; also the total number
    /// of matches.
    pub async fn search_private_conversations(
        &self,
        user: UserId,
        term: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Found>, usize)> {
        let term = term.to_lowercase();
        let partners = {
            let db = self.store.conn().await?;
            listing::private_partners(&db, user, true).await?
        };
        let others: Vec<UserId> = partners.iter().map(|p| p.other).collect();
        let profiles = self.profiles(&others).await;
        let mut seen = HashSet::new();
        let matches: Vec<(ConversationId, UserId, Arc<Profile>)> = partners
            .into_iter()
            .map(|p| (p.conversation, p.other))
            .filter_map(|(c, o)| {
                let p = profiles.get(&o)?;
                (contains_ci(&p.name, &term) && seen.insert(o)).then(|| (c, o, p.clone()))
            })
            .collect();
        let total = matches.len();
        let page: Vec<(ConversationId, UserId, Arc<Profile>)> = matches
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect();
        if page.is_empty() {
            return Ok((Vec::new(), total));
        }
        let ids: Vec<ConversationId> = page.iter().map(|(c, _, _)| *c).collect();
        let mut rows: HashMap<ConversationId, ConversationRow> = {
            let db = self.store.conn().await?;
            listing::by_ids(&db, user, &ids)
                .await?
                .into_iter()
                .map(|r| (r.id, r))
                .collect()
        };
        let found = page
            .into_iter()
            .filter_map(|(c, other, profile)| {
                let conversation = rows.remove(&c)?;
                Some(Found {
                    unread_count: (conversation.last_seq - conversation.read_seq).max(0),
                    conversation,
                    other,
                    profile,
                })
            })
            .collect();
        Ok((found, total))
    }

    /// `POST /conversations/private`: the caller's private conversation with `other`,
    /// created when missing. Returns the caller's view and whether it was created now.
    pub async fn open_private_conversation(
        &self,
        user: UserId,
        other: UserId,
    ) -> Result<(Listed, bool)> {
        if other.is_nil() {
            return Err(Error::bad_request(
                Code::InvalidReceiver,
                "receiver_id is required",
            ));
        }
        if other == user {
            return Err(Error::bad_request(
                Code::SelfConversation,
                "cannot create conversation with yourself",
            ));
        }
        let (id, created) = match self.members.private_pair(user, other) {
            Some(id) => (id, false),
            None => {
                let mut db = self.store.conn().await?;
                let (id, created) = get_or_create_private(&mut db, user, other).await?;
                self.members.put_private_pair(user, other, id);
                (id, created)
            }
        };
        let view = self
            .conversation_views(user, &[id])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| Error::internal(format!("private conversation {id} lost its member")))?;
        Ok((view, created))
    }

    /// `GET /conversations/:id/messages`: one page, oldest first, for an active member.
    pub async fn conversation_history(
        &self,
        user: UserId,
        conversation: ConversationId,
        page: Page,
        limit: i64,
    ) -> Result<History> {
        // Membership is checked on the primary (a replica may lag a join or a leave); the
        // page itself may come from the read replica.
        let (access, messages) = tokio::try_join!(
            async {
                let db = self.store.conn().await?;
                listing::access(&db, conversation, user).await
            },
            async {
                let db = self.reader.conn().await?;
                listing::history(&db, conversation, page, limit).await
            }
        )?;
        let access = access.ok_or_else(Error::not_member)?;
        let settings = self.settings.get();
        let online_status = match access.other {
            Some(other) if settings.online_status => {
                self.online_map(&[other]).await.into_iter().collect()
            }
            _ => Vec::new(),
        };
        Ok(History {
            messages,
            can_send: can_send(
                settings.first_message_limit,
                access.kind,
                access.first_sender_id,
                access.replied,
                user,
            ),
            online_status,
        })
    }

    /// `POST /conversations/:id/hide`: hidden for the caller until the next message.
    pub async fn hide_conversation(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<()> {
        let db = self.store.conn().await?;
        if listing::hide(&db, conversation, user).await? {
            Ok(())
        } else {
            Err(Error::forbidden(
                Code::NotMember,
                "conversation not found or already left",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LastMessage;
    use crate::model::Timestamp;

    fn row(at: Option<i64>, created: i64) -> ConversationRow {
        ConversationRow {
            id: ConversationId::new_v4(),
            kind: ConversationKind::Private,
            group_name: None,
            created_at: Timestamp(created),
            updated_at: Timestamp(created),
            last_message_at: at.map(Timestamp),
            last_message_id: None,
            last_seq: 0,
            first_sender_id: None,
            replied: false,
            read_seq: 0,
            is_pinned: false,
            is_muted: false,
            last_message: None,
        }
    }

    #[test]
    fn first_message_limit() {
        let (a, b) = (UserId::new_v4(), UserId::new_v4());
        let p = ConversationKind::Private;
        assert!(!can_send(true, p, Some(a), false, a));
        assert!(can_send(true, p, Some(a), false, b));
        assert!(can_send(true, p, Some(a), true, a));
        assert!(can_send(false, p, Some(a), false, a));
        assert!(can_send(true, ConversationKind::Group, Some(a), false, a));
        assert!(can_send(true, p, None, false, a));
    }

    #[test]
    fn order_puts_conversations_without_messages_last() {
        let mut rows = [
            row(None, 50),
            row(Some(10), 1),
            row(Some(20), 2),
            row(None, 60),
        ];
        rows.sort_by(list_order);
        let order: Vec<(Option<i64>, i64)> = rows
            .iter()
            .map(|r| (r.last_message_at.map(|t| t.0), r.created_at.0))
            .collect();
        assert_eq!(
            order,
            [(Some(20), 2), (Some(10), 1), (None, 60), (None, 50)]
        );
    }

    #[test]
    fn previews_in_lists() {
        let mut r = row(Some(1), 1);
        assert_eq!(list_preview(&r), None);
        let last = |t: &str, recalled| LastMessage {
            sender_id: UserId::new_v4(),
            message_type: t.into(),
            content: Some("hello".into()),
            is_recalled: recalled,
        };
        r.last_message = Some(last("text", false));
        assert_eq!(list_preview(&r).as_deref(), Some("hello"));
        r.last_message = Some(last("text", true));
        assert_eq!(list_preview(&r), None);
        r.last_message = Some(last("sticker", false));
        assert_eq!(list_preview(&r).as_deref(), Some(""));
    }
}
