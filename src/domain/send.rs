//! A message send before it is stored: the checks that need no database (DECISIONS.md
//! "validation"), with the original's error texts where it had them.

use serde_json::Value;

use super::settings::Snapshot;
use crate::error::{Code, Error};
use crate::model::{ConversationId, ForwardedFrom, MessageId, MessageType, UserId};

/// Longest text, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;
/// Longest `client_msg_id`.
pub const MAX_CLIENT_MSG_ID: usize = 64;

/// A send as the client asked for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    /// Target conversation.
    pub conversation_id: Option<ConversationId>,
    /// Private target when there is no conversation id; also the block check's subject.
    pub receiver_id: Option<UserId>,
    /// `text`, `image`, `video` or `emoji` (anything else is refused).
    pub message_type: MessageType,
    /// Text.
    pub content: Option<String>,
    /// A JSON object.
    pub metadata: Option<Value>,
    /// A message of the same conversation.
    pub reply_to_message_id: Option<MessageId>,
    /// Idempotency key, unique per sender.
    pub client_msg_id: Option<String>,
    /// Set only by a forward (never by a client's `message` frame): the source message.
    pub forwarded_from: Option<ForwardedFrom>,
}

impl Draft {
    /// The message this draft becomes once the writer gave it an id, a seq and a time.
    pub fn message(
        &self,
        id: MessageId,
        conversation_id: ConversationId,
        seq: i64,
        sender_id: UserId,
        created_at: crate::model::Timestamp,
    ) -> crate::model::Message {
        crate::model::Message {
            id,
            conversation_id,
            seq,
            sender_id,
            message_type: self.message_type.clone(),
            content: self.content.clone(),
            metadata: self.metadata.clone().filter(|v| !v.is_null()),
            reply_to_message_id: self.reply_to_message_id,
            is_recalled: false,
            recalled_at: None,
            edited_at: None,
            created_at,
            client_msg_id: self.client_msg_id.clone(),
            forwarded_from: self.forwarded_from,
        }
    }
}

fn invalid(code: Code, message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::bad_request(code, message)
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Checks everything that needs no database. `sender` is the caller.
pub fn validate(draft: &Draft, sender: UserId, settings: &Snapshot) -> Result<(), Error> {
    if !draft.message_type.is_known() {
        return Err(invalid(
            Code::InvalidMessageType,
            "invalid message_type: must be one of text, image, video, emoji",
        ));
    }
    if let Some(content) = &draft.content {
        if content.contains('\0') {
            return Err(invalid(
                Code::InvalidContent,
                "content must not contain NUL characters",
            ));
        }
        if content.chars().count() > MAX_TEXT_CHARS {
            return Err(invalid(
                Code::ContentTooLong,
                format!("content size exceeds the limit of {MAX_TEXT_CHARS} characters"),
            ));
        }
    }
    let meta = match &draft.metadata {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => {
            return Err(invalid(
                Code::InvalidMessageFormat,
                "Invalid message format",
            ));
        }
    };
    if draft.metadata.as_ref().is_some_and(has_nul) {
        return Err(invalid(
            Code::InvalidMetadata,
            "metadata must not contain NUL characters",
        ));
    }
    let has_url = |keys: &[&str]| {
        meta.is_some_and(|m| {
            keys.iter().any(|k| {
                m.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.trim().is_empty())
            })
        })
    };
    match draft.message_type {
        MessageType::Text => {
            if draft.content.as_deref().is_none_or(str::is_empty) {
                return Err(invalid(
                    Code::ContentRequired,
                    "content is required for text messages",
                ));
            }
        }
        MessageType::Image => {
            if !has_url(&["url", "image_url"]) {
                return Err(invalid(
                    Code::MetadataUrlRequired,
                    "metadata.url is required for image messages",
                ));
            }
        }
        MessageType::Video => {
            if !has_url(&["url", "video_url"]) {
                return Err(invalid(
                    Code::MetadataUrlRequired,
                    "metadata.url is required for video messages",
                ));
            }
            if let Some(size) = meta
                .and_then(|m| m.get("file_size"))
                .and_then(Value::as_f64)
            {
                let mb = size / 1_048_576.0;
                if mb > settings.max_video_size_mb as f64 {
                    return Err(invalid(
                        Code::VideoTooLarge,
                        format!(
                            "video file size exceeds limit: max {}MB, got {mb:.2}MB",
                            settings.max_video_size_mb
                        ),
                    ));
                }
            }
        }
        MessageType::Emoji | MessageType::Other(_) => {
            // emoji: content or a non-empty metadata object.
            let has_content = draft.content.as_deref().is_some_and(|c| !c.is_empty());
            if !has_content && meta.is_none_or(|m| m.is_empty()) {
                return Err(invalid(
                    Code::ContentRequired,
                    "content or metadata is required for emoji messages",
                ));
            }
        }
    }
    if let Some(id) = &draft.client_msg_id
        && (id.is_empty() || id.len() > MAX_CLIENT_MSG_ID || id.contains('\0'))
    {
        return Err(invalid(
            Code::InvalidClientMsgId,
            format!("client_msg_id must be 1 to {MAX_CLIENT_MSG_ID} characters"),
        ));
    }
    if draft.conversation_id.is_none() {
        match draft.receiver_id {
            Some(r) if r == sender => {
                return Err(invalid(
                    Code::SelfMessage,
                    "failed to get conversation: cannot send message to yourself",
                ));
            }
            Some(_) => {}
            None => {
                return Err(invalid(
                    Code::ConversationRequired,
                    "conversation_id is required",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Snapshot {
        let env: std::collections::HashMap<String, String> = [
            ("DATABASE_URL", "postgres://h/x"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = crate::config::Config::from_env(&env).unwrap();
        Snapshot::from_rows(Default::default(), &config)
    }

    fn draft(kind: &str, content: Option<&str>, metadata: Option<Value>) -> Draft {
        Draft {
            conversation_id: Some(ConversationId::new_v4()),
            message_type: kind.into(),
            content: content.map(String::from),
            metadata,
            ..Default::default()
        }
    }

    fn code(d: &Draft) -> Option<&'static str> {
        validate(d, UserId::new_v4(), &settings())
            .err()
            .map(|e| e.code())
    }

    #[test]
    fn types_and_content() {
        assert_eq!(code(&draft("text", Some("hi"), None)), None);
        assert_eq!(
            code(&draft("text", Some(" "), None)),
            None,
            "whitespace is content, as in the original"
        );
        assert_eq!(
            code(&draft("text", Some(""), None)),
            Some("content_required")
        );
        assert_eq!(code(&draft("text", None, None)), Some("content_required"));
        assert_eq!(
            code(&draft("sticker", Some("x"), None)),
            Some("invalid_message_type")
        );
        assert_eq!(code(&draft("text", Some(&"字".repeat(10_000)), None)), None);
        assert_eq!(
            code(&draft("text", Some(&"a".repeat(10_001)), None)),
            Some("content_too_long")
        );
        assert_eq!(
            code(&draft("text", Some("a\0b"), None)),
            Some("invalid_content")
        );
        assert_eq!(
            code(&draft("text", Some("x"), Some(json!([1])))),
            Some("invalid_message_format")
        );
        assert_eq!(
            code(&draft("text", Some("x"), Some(json!({"k": "a\u{0}"})))),
            Some("invalid_metadata")
        );
    }

    #[test]
    fn media_needs_a_url() {
        assert_eq!(
            code(&draft(
                "image",
                None,
                Some(json!({"url": "https://x/a.png"}))
            )),
            None
        );
        assert_eq!(
            code(&draft(
                "image",
                None,
                Some(json!({"image_url": "https://x/a.png", "width": 800}))
            )),
            None
        );
        assert_eq!(
            code(&draft("image", None, None)),
            Some("metadata_url_required")
        );
        assert_eq!(
            code(&draft("image", None, Some(json!({"url": ""})))),
            Some("metadata_url_required")
        );
        assert_eq!(
            code(&draft(
                "video",
                None,
                Some(json!({"video_url": "v", "file_size": 2 * 1048576}))
            )),
            None
        );
        let big = draft(
            "video",
            None,
            Some(json!({"url": "v", "file_size": 51 * 1048576})),
        );
        let err = validate(&big, UserId::new_v4(), &settings()).unwrap_err();
        assert_eq!(
            err.public_message(),
            "video file size exceeds limit: max 50MB, got 51.00MB"
        );
        assert_eq!(
            code(&draft("emoji", None, Some(json!({"emoji_id": "smile"})))),
            None
        );
        assert_eq!(code(&draft("emoji", Some("🙂"), None)), None);
        assert_eq!(
            code(&draft("emoji", None, Some(json!({})))),
            Some("content_required")
        );
    }

    #[test]
    fn targets() {
        let me = UserId::new_v4();
        let mut d = draft("text", Some("x"), None);
        d.conversation_id = None;
        assert_eq!(
            validate(&d, me, &settings()).unwrap_err().code(),
            "conversation_required"
        );
        d.receiver_id = Some(me);
        let e = validate(&d, me, &settings()).unwrap_err();
        assert!(e.public_message().contains("yourself"));
        d.receiver_id = Some(UserId::new_v4());
        assert!(validate(&d, me, &settings()).is_ok());
        d.client_msg_id = Some("x".repeat(65));
        assert_eq!(
            validate(&d, me, &settings()).unwrap_err().code(),
            "invalid_client_msg_id"
        );
    }
}
