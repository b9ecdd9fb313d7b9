//! Wire shapes of the conversation routes (PROTOCOL.md §3.1, §3.3): Conversation, Member,
//! ConversationListItem, the conversation-search item, the history answer and a message's
//! read status. Absent optional fields are left out, as in the original; timestamps are
//! RFC 3339 UTC.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::conversations::{Found, History, Listed};
use crate::domain::events::MessageObject;
use crate::domain::read_status::ReadStatus;
use crate::model::Profile;
use crate::model::{ConversationId, ConversationRow, MemberRow, MessageId, Timestamp, UserId};

/// A `conversations` row.
#[derive(Serialize)]
pub struct ConversationObject<'a> {
    id: ConversationId,
    conversation_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_name: Option<&'a str>,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_message_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_message_id: Option<MessageId>,
}

impl<'a> ConversationObject<'a> {
    /// The object of a freshly created group.
    pub fn new_group(id: ConversationId, name: &'a str, created_at: Timestamp) -> Self {
        ConversationObject {
            id,
            conversation_type: "group",
            group_name: Some(name),
            created_at,
            updated_at: created_at,
            last_message_at: None,
            last_message_id: None,
        }
    }

    fn of(c: &'a ConversationRow) -> Self {
        ConversationObject {
            id: c.id,
            conversation_type: c.kind.as_str(),
            group_name: c.group_name.as_deref(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            last_message_at: c.last_message_at,
            last_message_id: c.last_message_id,
        }
    }
}

/// The profile fields of a member, present only when the profile is known.
#[derive(Serialize)]
struct ProfileFields<'a> {
    name: &'a str,
    avatar_url: &'a str,
    username: &'a str,
    full_position: &'a str,
}

/// A member row with its profile.
#[derive(Serialize)]
struct MemberObject<'a> {
    id: uuid::Uuid,
    conversation_id: ConversationId,
    user_id: UserId,
    role: &'static str,
    is_muted: bool,
    is_pinned: bool,
    is_hidden: bool,
    joined_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    left_at: Option<Timestamp>,
    unread_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_read_message_id: Option<MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_read_at: Option<Timestamp>,
    #[serde(flatten)]
    profile: Option<ProfileFields<'a>>,
}

impl<'a> MemberObject<'a> {
    fn of(m: &'a MemberRow, p: Option<&'a Profile>) -> Self {
        MemberObject {
            id: m.id,
            conversation_id: m.conversation_id,
            user_id: m.user_id,
            role: m.role.as_str(),
            is_muted: m.is_muted,
            is_pinned: m.is_pinned,
            is_hidden: m.is_hidden,
            joined_at: m.joined_at,
            left_at: m.left_at,
            unread_count: m.unread_count,
            last_read_message_id: m.last_read_message_id,
            last_read_at: m.last_read_at,
            profile: p.map(|p| ProfileFields {
                name: &p.name,
                avatar_url: &p.avatar_url,
                username: &p.domain,
                full_position: &p.full_position,
            }),
        }
    }
}

/// ConversationListItem: the conversation flattened, then the caller's view of it.
#[derive(Serialize)]
pub struct ListItem<'a> {
    #[serde(flatten)]
    conversation: ConversationObject<'a>,
    unread_count: i64,
    last_message_time: Option<Timestamp>,
    last_message_text: Option<&'a str>,
    online_status: BTreeMap<UserId, bool>,
    members: Vec<MemberObject<'a>>,
    can_send: bool,
    is_pinned: bool,
    is_muted: bool,
}

impl<'a> ListItem<'a> {
    /// The item of one listed conversation.
    pub fn of(l: &'a Listed) -> Self {
        ListItem {
            conversation: ConversationObject::of(&l.conversation),
            unread_count: l.unread_count,
            last_message_time: l.conversation.last_message_at,
            last_message_text: l.last_message_text.as_deref(),
            online_status: l.online_status.iter().copied().collect(),
            members: l
                .members
                .iter()
                .map(|(m, p)| MemberObject::of(m, p.as_deref()))
                .collect(),
            can_send: l.can_send,
            is_pinned: l.conversation.is_pinned,
            is_muted: l.conversation.is_muted,
        }
    }
}

#[derive(Serialize)]
struct OtherUser<'a> {
    user_id: UserId,
    name: &'a str,
    avatar_url: &'a str,
    full_position: &'a str,
}

#[derive(Serialize)]
struct LastMessageObject<'a> {
    content: Option<&'a str>,
    message_type: &'a str,
    sender_id: UserId,
}

/// One hit of `GET /conversations/search`.
#[derive(Serialize)]
pub struct SearchItem<'a> {
    conversation_id: ConversationId,
    conversation_type: &'static str,
    other_user: OtherUser<'a>,
    last_message_time: Timestamp,
    unread_count: i64,
    updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_message: Option<LastMessageObject<'a>>,
}

impl<'a> SearchItem<'a> {
    /// The item of one hit. `last_message_time` is the conversation's `updated_at`, as in
    /// the original; a recalled last message shows no content.
    pub fn of(f: &'a Found) -> Self {
        let c = &f.conversation;
        SearchItem {
            conversation_id: c.id,
            conversation_type: c.kind.as_str(),
            other_user: OtherUser {
                user_id: f.other,
                name: &f.profile.name,
                avatar_url: &f.profile.avatar_url,
                full_position: &f.profile.full_position,
            },
            last_message_time: c.updated_at,
            unread_count: f.unread_count,
            updated_at: c.updated_at,
            last_message: c.last_message.as_ref().map(|m| LastMessageObject {
                content: if m.is_recalled {
                    None
                } else {
                    m.content.as_deref()
                },
                message_type: m.message_type.as_str(),
                sender_id: m.sender_id,
            }),
        }
    }
}

/// The answer of `GET /conversations/:id/messages`.
#[derive(Serialize)]
pub struct HistoryPage<'a> {
    messages: Vec<MessageObject<'a>>,
    can_send: bool,
    online_status: BTreeMap<UserId, bool>,
}

impl<'a> HistoryPage<'a> {
    /// The page of `h`.
    pub fn of(h: &'a History) -> Self {
        HistoryPage {
            messages: h.messages.iter().map(MessageObject::from).collect(),
            can_send: h.can_send,
            online_status: h.online_status.iter().copied().collect(),
        }
    }
}

#[derive(Serialize)]
struct Reader {
    user_id: UserId,
}

/// The answer of `GET /conversations/:id/messages/:message_id/readers`.
#[derive(Serialize)]
pub struct Readers {
    read: Vec<Reader>,
    unread: Vec<Reader>,
    read_count: usize,
    unread_count: usize,
}

impl Readers {
    /// The answer for `s`.
    pub fn of(s: &ReadStatus) -> Self {
        let list = |users: &[UserId]| users.iter().map(|&user_id| Reader { user_id }).collect();
        Readers {
            read: list(&s.read),
            unread: list(&s.unread),
            read_count: s.read.len(),
            unread_count: s.unread.len(),
        }
    }
}
