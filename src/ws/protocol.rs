//! Client → server frames (PROTOCOL.md §4.4 plus `ack`), decoded with serde_json into typed
//! requests, and the close codes this server uses.
//!
//! Every malformed frame maps to an [`Error`] whose code and message become an `error`
//! event; the connection stays usable.

use serde::Deserialize;
use uuid::Uuid;

use crate::domain::send::Draft;
use crate::error::{Code, Error};
use crate::model::{ConversationId, MessageId, MessageType};

/// Close codes (RFC 6455 §7.4.1) and when we use them; defined beside
/// [`crate::delivery::Kill`], which carries them.
pub use crate::delivery::close;

/// Largest inbound message (a frame, or a fragmented message in total).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A decoded client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Keep-alive; refreshes presence.
    Heartbeat,
    /// Send a message.
    Message(Draft),
    /// The user is typing in a conversation.
    Typing {
        /// Conversation.
        conversation_id: ConversationId,
    },
    /// The user read up to a message.
    Read {
        /// Conversation.
        conversation_id: ConversationId,
        /// Message.
        message_id: MessageId,
    },
    /// Recall one's own message.
    Recall {
        /// Message.
        message_id: MessageId,
    },
    /// Edit one's own text message.
    Edit {
        /// Message.
        message_id: MessageId,
        /// The new text (checked like a text message's by the domain, so a missing one
        /// gets the send's `content_required`).
        content: Option<String>,
    },
    /// Which conversation this connection is viewing (`None` clears).
    SetCurrentConversation(Option<ConversationId>),
    /// `?ack=1` connections: everything up to `seq` in the conversation has arrived.
    Ack {
        /// Conversation.
        conversation_id: ConversationId,
        /// Highest seq received.
        seq: i64,
    },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Kept as text and parsed once into the kind's own struct (no intermediate tree).
    #[serde(default, borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
struct MessageData {
    conversation_id: Option<String>,
    receiver_id: Option<String>,
    message_type: Option<String>,
    content: Option<String>,
    metadata: Option<serde_json::Value>,
    reply_to_message_id: Option<String>,
    client_msg_id: Option<String>,
}

#[derive(Deserialize)]
struct ConversationData {
    conversation_id: Option<String>,
}

#[derive(Deserialize)]
struct ReadData {
    conversation_id: String,
    message_id: String,
}

#[derive(Deserialize)]
struct RecallData {
    message_id: String,
}

#[derive(Deserialize)]
struct EditData {
    message_id: String,
    content: Option<String>,
}

#[derive(Deserialize)]
struct AckData {
    conversation_id: String,
    seq: i64,
}

fn format_error(code: Code, what: &'static str) -> Error {
    Error::bad_request(code, what)
}

/// Parses an optional UUID field: absent, null or the nil UUID mean none; anything else
/// that is not a UUID is an error.
fn opt_uuid<T: From<Uuid>>(v: Option<String>) -> Result<Option<T>, ()> {
    match v {
        None => Ok(None),
        Some(s) => match Uuid::try_parse(&s) {
            Ok(id) if id.is_nil() => Ok(None),
            Ok(id) => Ok(Some(T::from(id))),
            Err(_) => Err(()),
        },
    }
}

fn data_as<T: for<'de> Deserialize<'de>>(data: Option<&serde_json::value::RawValue>) -> Option<T> {
    serde_json::from_str(data.map_or("null", |d| d.get())).ok()
}

/// Decodes one text or binary frame. (`payload` is not modified; it is `&mut` because the
/// callers' buffers are, from the days of an in-place parser.)
pub fn decode(payload: &mut [u8]) -> Result<Request, Error> {
    let envelope: Envelope = serde_json::from_slice(payload)
        .map_err(|_| format_error(Code::InvalidJson, "Invalid JSON format"))?;
    let kind = envelope
        .kind
        .ok_or_else(|| Error::bad_request(Code::UnknownType, "message type is required"))?;
    match kind.as_str() {
        "heartbeat" => Ok(Request::Heartbeat),
        "message" => {
            let bad = || format_error(Code::InvalidMessageFormat, "Invalid message format");
            let d: MessageData = data_as(envelope.data).ok_or_else(bad)?;
            let conversation_id = opt_uuid(d.conversation_id).map_err(|_| bad())?;
            let receiver_id = opt_uuid(d.receiver_id).map_err(|_| bad())?;
            let reply_to_message_id = opt_uuid(d.reply_to_message_id).map_err(|_| bad())?;
            Ok(Request::Message(Draft {
                conversation_id,
                receiver_id,
                message_type: MessageType::from(d.message_type.unwrap_or_default()),
                content: d.content,
                metadata: d.metadata.filter(|m| !m.is_null()),
                reply_to_message_id,
                client_msg_id: d.client_msg_id,
                forwarded_from: None,
            }))
        }
        "typing" => {
            let bad = || format_error(Code::InvalidTypingFormat, "Invalid typing format");
            let d: ConversationData = data_as(envelope.data).ok_or_else(bad)?;
            match opt_uuid(d.conversation_id) {
                Ok(Some(conversation_id)) => Ok(Request::Typing { conversation_id }),
                _ => Err(bad()),
            }
        }
        "read" => {
            let bad = || format_error(Code::InvalidReadFormat, "Invalid read format");
            let d: ReadData = data_as(envelope.data).ok_or_else(bad)?;
            match (
                d.conversation_id.parse::<ConversationId>(),
                d.message_id.parse::<MessageId>(),
            ) {
                (Ok(conversation_id), Ok(message_id)) => Ok(Request::Read {
                    conversation_id,
                    message_id,
                }),
                _ => Err(bad()),
            }
        }
        "recall" => {
            let bad = || format_error(Code::InvalidRecallFormat, "Invalid recall format");
            let d: RecallData = data_as(envelope.data).ok_or_else(bad)?;
            d.message_id
                .parse::<MessageId>()
                .map(|message_id| Request::Recall { message_id })
                .map_err(|_| bad())
        }
        "edit" => {
            let bad = || format_error(Code::InvalidEditFormat, "Invalid edit format");
            let d: EditData = data_as(envelope.data).ok_or_else(bad)?;
            d.message_id
                .parse::<MessageId>()
                .map(|message_id| Request::Edit {
                    message_id,
                    content: d.content,
                })
                .map_err(|_| bad())
        }
        "set_current_conversation" => {
            let bad = || {
                format_error(
                    Code::InvalidSetCurrentConversationFormat,
                    "Invalid set_current_conversation format",
                )
            };
            let d: ConversationData = data_as(envelope.data).ok_or_else(bad)?;
            match d.conversation_id.as_deref() {
                None | Some("") => Ok(Request::SetCurrentConversation(None)),
                Some(_) => opt_uuid(d.conversation_id)
                    .map(Request::SetCurrentConversation)
                    .map_err(|_| bad()),
            }
        }
        "ack" => {
            let bad = || format_error(Code::InvalidAckFormat, "Invalid ack format");
            let d: AckData = data_as(envelope.data).ok_or_else(bad)?;
            match d.conversation_id.parse::<ConversationId>() {
                Ok(conversation_id) if d.seq >= 0 => Ok(Request::Ack {
                    conversation_id,
                    seq: d.seq,
                }),
                _ => Err(bad()),
            }
        }
        other => Err(Error::bad_request(
            Code::UnknownType,
            format!(
                "unknown message type: {}",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Result<Request, String> {
        let mut b = s.as_bytes().to_vec();
        decode(&mut b).map_err(|e| e.public_message().into_owned())
    }

    #[test]
    fn good_frames() {
        let c = ConversationId::new_v4();
        assert_eq!(dec(r#"{"type":"heartbeat"}"#), Ok(Request::Heartbeat));
        assert_eq!(
            dec(r#"{"type":"heartbeat","data":null}"#),
            Ok(Request::Heartbeat)
        );
        let m = dec(&format!(
            r#"{{"type":"message","data":{{"conversation_id":"{c}","message_type":"text","content":"a \"q\" \u00e9","metadata":{{"k":[1,2]}},"client_msg_id":"x1"}}}}"#
        ))
        .unwrap();
        let Request::Message(d) = m else { panic!() };
        assert_eq!(d.conversation_id, Some(c));
        assert_eq!(d.content.as_deref(), Some("a \"q\" é"));
        assert_eq!(d.metadata, Some(serde_json::json!({"k": [1, 2]})));
        assert_eq!(d.client_msg_id.as_deref(), Some("x1"));
        let nil = Uuid::nil();
        let Request::Message(d) = dec(&format!(
            r#"{{"type":"message","data":{{"conversation_id":"{nil}","receiver_id":"{c}","message_type":"text","content":"x"}}}}"#
        ))
        .unwrap() else {
            panic!()
        };
        let receiver = crate::model::UserId::from_uuid(c.as_uuid());
        assert_eq!((d.conversation_id, d.receiver_id), (None, Some(receiver)));
        assert_eq!(
            dec(&format!(
                r#"{{"type":"set_current_conversation","data":{{"conversation_id":"{c}"}}}}"#
            )),
            Ok(Request::SetCurrentConversation(Some(c)))
        );
        assert_eq!(
            dec(r#"{"type":"set_current_conversation","data":{"conversation_id":""}}"#),
            Ok(Request::SetCurrentConversation(None))
        );
        assert_eq!(
            dec(&format!(
                r#"{{"type":"ack","data":{{"conversation_id":"{c}","seq":5}}}}"#
            )),
            Ok(Request::Ack {
                conversation_id: c,
                seq: 5
            })
        );
        let m = MessageId::new_v4();
        assert_eq!(
            dec(&format!(
                r#"{{"type":"edit","data":{{"message_id":"{m}","content":"new \"text\""}}}}"#
            )),
            Ok(Request::Edit {
                message_id: m,
                content: Some("new \"text\"".into())
            })
        );
        // Content is the domain's to judge: missing or null decodes to none.
        for data in [
            format!(r#"{{"message_id":"{m}"}}"#),
            format!(r#"{{"message_id":"{m}","content":null}}"#),
        ] {
            assert_eq!(
                dec(&format!(r#"{{"type":"edit","data":{data}}}"#)),
                Ok(Request::Edit {
                    message_id: m,
                    content: None
                })
            );
        }
    }

    #[test]
    fn bad_frames() {
        let c = ConversationId::new_v4();
        for (frame, msg) in [
            ("{invalid json", "Invalid JSON format"),
            ("[1,2]", "Invalid JSON format"),
            (r#"{"type":5}"#, "Invalid JSON format"),
            ("null", "Invalid JSON format"),
            (r#"{"data":{}}"#, "message type is required"),
            (r#"{"type":"dance"}"#, "unknown message type: dance"),
            (r#"{"type":"message"}"#, "Invalid message format"),
            (
                r#"{"type":"message","data":{"conversation_id":"abc"}}"#,
                "Invalid message format",
            ),
            (
                r#"{"type":"message","data":{"conversation_id":""}}"#,
                "Invalid message format",
            ),
            (
                r#"{"type":"message","data":{"content":5}}"#,
                "Invalid message format",
            ),
            (r#"{"type":"typing","data":{}}"#, "Invalid typing format"),
            (
                r#"{"type":"typing","data":{"conversation_id":"zz"}}"#,
                "Invalid typing format",
            ),
            (
                r#"{"type":"read","data":{"conversation_id":"x","message_id":"y"}}"#,
                "Invalid read format",
            ),
            (
                r#"{"type":"recall","data":{"message_id":"nope"}}"#,
                "Invalid recall format",
            ),
            (r#"{"type":"recall"}"#, "Invalid recall format"),
            (r#"{"type":"edit"}"#, "Invalid edit format"),
            (
                r#"{"type":"edit","data":{"message_id":"nope","content":"x"}}"#,
                "Invalid edit format",
            ),
            (
                r#"{"type":"edit","data":{"content":"x"}}"#,
                "Invalid edit format",
            ),
            (
                r#"{"type":"edit","data":{"message_id":"00000000-0000-0000-0000-000000000001","content":5}}"#,
                "Invalid edit format",
            ),
            (
                r#"{"type":"set_current_conversation","data":{"conversation_id":"bad"}}"#,
                "Invalid set_current_conversation format",
            ),
            (
                r#"{"type":"ack","data":{"conversation_id":"bad","seq":1}}"#,
                "Invalid ack format",
            ),
        ] {
            assert_eq!(dec(frame), Err(msg.to_string()), "{frame}");
        }
        assert_eq!(
            dec(&format!(
                r#"{{"type":"ack","data":{{"conversation_id":"{c}","seq":-1}}}}"#
            )),
            Err("Invalid ack format".into())
        );
    }
}
