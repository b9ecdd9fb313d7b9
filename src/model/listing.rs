//! What conversation lists and history read: a conversation as one member sees it (with
//! its last message and the member's read cursor), a member row, and where a history page
//! starts.

use uuid::Uuid;

use super::{ConversationId, ConversationKind, MessageId, MessageType, Role, Timestamp, UserId};

/// The last message of a conversation, as far as lists need it.
#[derive(Debug, Clone, PartialEq)]
pub struct LastMessage {
    /// Its sender.
    pub sender_id: UserId,
    /// Its type.
    pub message_type: MessageType,
    /// Its text.
    pub content: Option<String>,
    /// Recalled by its sender.
    pub is_recalled: bool,
}

/// A conversation as one of its members sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    /// Conversation id.
    pub id: ConversationId,
    /// Private or group.
    pub kind: ConversationKind,
    /// Group name (groups only).
    pub group_name: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Bumped by every message.
    pub updated_at: Timestamp,
    /// Time of the newest message.
    pub last_message_at: Option<Timestamp>,
    /// The newest message.
    pub last_message_id: Option<MessageId>,
    /// Highest seq.
    pub last_seq: i64,
    /// First-message limit: who spoke first.
    pub first_sender_id: Option<UserId>,
    /// First-message limit: the other side wrote back.
    pub replied: bool,
    /// The viewing member's read cursor.
    pub read_seq: i64,
    /// The viewing member pinned it.
    pub is_pinned: bool,
    /// The viewing member muted it.
    pub is_muted: bool,
    /// The newest message, when there is one.
    pub last_message: Option<LastMessage>,
}

/// One active member row with what the lists show.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    /// Row id.
    pub id: Uuid,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// The member.
    pub user_id: UserId,
    /// Role.
    pub role: Role,
    /// The member muted the conversation.
    pub is_muted: bool,
    /// The member pinned the conversation.
    pub is_pinned: bool,
    /// Hidden by the member and nothing newer since (`hidden_seq >= last_seq`).
    pub is_hidden: bool,
    /// When the member joined.
    pub joined_at: Timestamp,
    /// When the member left (always absent for active members).
    pub left_at: Option<Timestamp>,
    /// `last_seq - read_seq`.
    pub unread_count: i64,
    /// The message the read cursor points at.
    pub last_read_message_id: Option<MessageId>,
    /// When the read cursor last moved.
    pub last_read_at: Option<Timestamp>,
}

/// Where a history page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The newest messages, skipping `offset` of the newest.
    Newest {
        /// Messages skipped from the newest end.
        offset: i64,
    },
    /// The messages just before this seq.
    Before(i64),
    /// The messages just after this seq.
    After(i64),
}
