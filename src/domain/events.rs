//! Server → client WebSocket events (PROTOCOL.md §4.3 plus `seq`, `client_msg_id` and
//! `offline_truncated`), serialized once into frame bytes `{"type": …, "data": …}`.
//!
//! The two frames that differ per recipient of a message only by the unread count
//! (`conversation_update`, `unread_count_update`) are also made from a template
//! ([`CountFrames`], `events/count_frames.rs`): serialized once per message, then the
//! number is put in per recipient.

mod count_frames;

pub use count_frames::CountFrames;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::error::Code;
use crate::model::{
    ConversationId, ForwardedFrom, Message, MessageId, MessageType, Timestamp, UserId,
};

#[derive(Serialize)]
struct Frame<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: T,
}

/// Serializes `{"type": kind, "data": data}`.
pub fn frame<T: Serialize>(kind: &str, data: T) -> Bytes {
    Bytes::from(serde_json::to_vec(&Frame { kind, data }).expect("event serialization cannot fail"))
}

/// The `data` of a live `message` event.
#[derive(Serialize)]
pub struct MessageData<'a> {
    /// Message id.
    pub id: MessageId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Sender.
    pub sender_id: UserId,
    /// Type.
    pub message_type: &'a str,
    /// Text or null.
    pub content: Option<&'a str>,
    /// Metadata object or null.
    pub metadata: Option<&'a Value>,
    /// Always `"sent"`.
    pub status: &'static str,
    /// Commit time.
    pub created_at: Timestamp,
    /// Replied message or null.
    pub reply_to_message_id: Option<MessageId>,
    /// Whether the receiving member may send now (first-message limit).
    pub can_send: bool,
    /// Position in the conversation.
    pub seq: i64,
    /// The sender's idempotency key, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<&'a str>,
    /// True when the message was recalled (only in repaired deliveries).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_recalled: bool,
    /// When its text was last edited (only in repaired deliveries of an edited message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<Timestamp>,
    /// The source of a forwarded message (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<ForwardedFrom>,
}

/// A `message` event for `m` as seen by a member whose `can_send` is given.
pub fn message(m: &Message, can_send: bool) -> Bytes {
    let recalled = m.is_recalled;
    frame(
        "message",
        MessageData {
            id: m.id,
            conversation_id: m.conversation_id,
            sender_id: m.sender_id,
            message_type: m.message_type.as_str(),
            content: if recalled { None } else { m.content.as_deref() },
            metadata: if recalled { None } else { m.metadata.as_ref() },
            status: "sent",
            created_at: m.created_at,
            reply_to_message_id: m.reply_to_message_id,
            can_send,
            seq: m.seq,
            client_msg_id: m.client_msg_id.as_deref(),
            is_recalled: recalled,
            edited_at: m.edited_at,
            forwarded_from: m.forwarded_from,
        },
    )
}

/// The stored-message shape of HTTP history and `offline_message` (PROTOCOL.md §3.1):
/// absent keys instead of nulls; a recalled message's content and metadata are not served.
#[derive(Serialize)]
pub struct MessageObject<'a> {
    /// Message id.
    pub id: MessageId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Sender.
    pub sender_id: UserId,
    /// Type.
    pub message_type: &'a str,
    /// Text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    /// Metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<&'a Value>,
    /// Always `"sent"`.
    pub status: &'static str,
    /// Replied message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to_message_id: Option<MessageId>,
    /// Recalled by its sender.
    pub is_recalled: bool,
    /// When recalled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recalled_at: Option<Timestamp>,
    /// Commit time.
    pub created_at: Timestamp,
    /// Position in the conversation.
    pub seq: i64,
    /// The sender's idempotency key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<&'a str>,
    /// When its text was last edited; absent when never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<Timestamp>,
    /// The source of a forwarded message (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarded_from: Option<ForwardedFrom>,
}

impl<'a> From<&'a Message> for MessageObject<'a> {
    fn from(m: &'a Message) -> Self {
        let recalled = m.is_recalled;
        MessageObject {
            id: m.id,
            conversation_id: m.conversation_id,
            sender_id: m.sender_id,
            message_type: m.message_type.as_str(),
            content: if recalled { None } else { m.content.as_deref() },
            metadata: if recalled { None } else { m.metadata.as_ref() },
            status: "sent",
            reply_to_message_id: m.reply_to_message_id,
            is_recalled: recalled,
            recalled_at: m.recalled_at,
            created_at: m.created_at,
            seq: m.seq,
            client_msg_id: m.client_msg_id.as_deref(),
            edited_at: m.edited_at,
            forwarded_from: m.forwarded_from,
        }
    }
}

/// An `offline_message` event.
pub fn offline_message(m: &Message) -> Bytes {
    frame("offline_message", MessageObject::from(m))
}

/// An `error` event with a stable code and a message.
pub fn error(code: Code, message: &str) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        code: &'a str,
        message: &'a str,
    }
    let code = code.as_str();
    frame("error", Data { code, message })
}

/// The `error` event answering a request that failed with `e`: its code and public text,
/// `retry_after_ms` when trying again later makes sense (`overloaded`, `rate_limited`), and
/// the `client_msg_id` of the refused message when it had one, so a client knows which send
/// to repeat.
pub fn request_error(e: &crate::error::Error, client_msg_id: Option<&str>) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<&'a str>,
    }
    frame(
        "error",
        Data {
            code: e.code(),
            message: &e.public_message(),
            retry_after_ms: e.retry_after_ms(),
            client_msg_id,
        },
    )
}

/// `conversation_update`.
pub fn conversation_update(
    conversation_id: ConversationId,
    last_message_time: Option<Timestamp>,
    last_message_text: Option<&str>,
    unread_count: i64,
) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        conversation_id: ConversationId,
        last_message_time: Option<Timestamp>,
        last_message_text: Option<&'a str>,
        unread_count: i64,
    }
    frame(
        "conversation_update",
        Data {
            conversation_id,
            last_message_time,
            last_message_text,
            unread_count,
        },
    )
}

/// `unread_count_update`.
pub fn unread_count_update(conversation_id: ConversationId, unread_count: i64) -> Bytes {
    #[derive(Serialize)]
    struct Data {
        conversation_id: ConversationId,
        unread_count: i64,
    }
    frame(
        "unread_count_update",
        Data {
            conversation_id,
            unread_count,
        },
    )
}

/// `typing`.
pub fn typing(conversation_id: ConversationId, user_id: UserId) -> Bytes {
    #[derive(Serialize)]
    struct Data {
        conversation_id: ConversationId,
        user_id: UserId,
    }
    frame(
        "typing",
        Data {
            conversation_id,
            user_id,
        },
    )
}

/// `read` (a receipt).
pub fn read(conversation_id: ConversationId, message_id: MessageId, reader_id: UserId) -> Bytes {
    #[derive(Serialize)]
    struct Data {
        conversation_id: ConversationId,
        message_id: MessageId,
        reader_id: UserId,
    }
    frame(
        "read",
        Data {
            conversation_id,
            message_id,
            reader_id,
        },
    )
}

/// `recalled`.
pub fn recalled(conversation_id: ConversationId, message_id: MessageId) -> Bytes {
    #[derive(Serialize)]
    struct Data {
        message_id: MessageId,
        conversation_id: ConversationId,
    }
    frame(
        "recalled",
        Data {
            message_id,
            conversation_id,
        },
    )
}

/// `message_edited`: a message's text was edited by its sender (`edited_at` is when).
pub fn message_edited(m: &Message) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        conversation_id: ConversationId,
        message_id: MessageId,
        content: Option<&'a str>,
        edited_at: Option<Timestamp>,
    }
    frame(
        "message_edited",
        Data {
            conversation_id: m.conversation_id,
            message_id: m.id,
            content: m.content.as_deref(),
            edited_at: m.edited_at,
        },
    )
}

/// `online_status_update`.
pub fn online_status_update(user_id: UserId, is_online: bool) -> Bytes {
    #[derive(Serialize)]
    struct Data {
        user_id: UserId,
        is_online: bool,
    }
    frame("online_status_update", Data { user_id, is_online })
}

/// `conversation_settings_update`: the member's own settings of a conversation changed
/// (pinned, muted), for the member's devices.
pub fn conversation_settings_update(
    conversation_id: ConversationId,
    is_pinned: bool,
    is_muted: bool,
) -> Bytes {
    #[derive(Serialize)]
    struct Data {
        conversation_id: ConversationId,
        is_pinned: bool,
        is_muted: bool,
    }
    frame(
        "conversation_settings_update",
        Data {
            conversation_id,
            is_pinned,
            is_muted,
        },
    )
}

/// One conversation left out of an offline delivery.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Truncated {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Messages not delivered (older than those that were).
    pub skipped: i64,
    /// The newest seq not delivered; page history with `before_seq` = this + 1.
    pub newest_skipped_seq: i64,
}

/// `offline_truncated`: more was pending than one connect delivers.
pub fn offline_truncated(conversations: &[Truncated]) -> Bytes {
    #[derive(Serialize)]
    struct Data<'a> {
        conversations: &'a [Truncated],
    }
    frame("offline_truncated", Data { conversations })
}

/// The preview of a message in conversation lists and `conversation_update`
/// (PROTOCOL.md §5.3): text cut to 50 characters, a label for media, nothing when recalled.
pub fn preview(
    message_type: &MessageType,
    content: Option<&str>,
    recalled: bool,
) -> Option<String> {
    if recalled {
        return None;
    }
    match message_type {
        MessageType::Text => content.map(|c| {
            let mut chars = c.chars();
            let head: String = chars.by_ref().take(50).collect();
            if chars.next().is_some() {
                format!("{head}...")
            } else {
                head
            }
        }),
        MessageType::Image => Some("[图片]".into()),
        MessageType::Video => Some("[视频]".into()),
        MessageType::Emoji => Some("[表情]".into()),
        MessageType::Other(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews() {
        assert_eq!(
            preview(&"text".into(), Some("hi"), false).as_deref(),
            Some("hi")
        );
        let long = "字".repeat(60);
        let p = preview(&"text".into(), Some(&long), false).unwrap();
        assert_eq!(p.chars().count(), 53);
        assert!(p.ends_with("..."));
        assert_eq!(
            preview(&"text".into(), Some(&"a".repeat(50)), false)
                .unwrap()
                .len(),
            50
        );
        assert_eq!(
            preview(&"image".into(), None, false).as_deref(),
            Some("[图片]")
        );
        assert_eq!(
            preview(&"video".into(), None, false).as_deref(),
            Some("[视频]")
        );
        assert_eq!(
            preview(&"emoji".into(), None, false).as_deref(),
            Some("[表情]")
        );
        assert_eq!(preview(&"other".into(), Some("x"), false), None);
        assert_eq!(preview(&"text".into(), Some("x"), true), None);
    }

    #[test]
    fn error_frame_shape() {
        let f = error(Code::RateLimited, "slow down");
        let v: Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "error", "data": {"code": "rate_limited", "message": "slow down"}})
        );
    }
}
