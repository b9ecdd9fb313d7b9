//! Recognising the server's frames by their parsed JSON `type`, whatever the order of keys,
//! so that any server speaking the original contract can be measured (the original Go
//! service writes `{"data":…,"type":…}` for some events). Load messages carry
//! `lt:<first send µs>:<stream>:<n>[:<attempt µs>]` as their text and, when sent through an
//! outbox, `lt-<stream>-<n>` as their `client_msg_id`.
//!
//! Cheap but correct: a frame that begins with `{"type":"<t>"` (dinq-message's order) and
//! whose `t` is not one the load tool reads is skipped without parsing the rest; every
//! other frame is parsed once into borrowed fields (no JSON tree is built).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use uuid::Uuid;

/// The position and clocks of one load message, from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// When the message was first sent (µs since the Unix epoch).
    pub first_sent_us: u64,
    /// When the attempt this copy comes from was sent (equal to `first_sent_us` unless the
    /// message was sent again after a refusal).
    pub attempt_us: u64,
    /// The stream (one sender's sequence of messages).
    pub stream: usize,
    /// Its number in the stream.
    pub n: u64,
}

/// What one frame means to the load tool.
#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    /// A `message` or `offline_message` carrying a load message, and its sender's id.
    Load {
        /// The load message.
        load: Load,
        /// `data.sender_id` as sent (empty when absent).
        sender: Cow<'a, str>,
    },
    /// A send refused by the server (`error` with code `overloaded` or `rate_limited`).
    Refused {
        /// `data.retry_after_ms`, when given.
        retry_after_ms: Option<u64>,
        /// The refused send's load message, when the server named its `client_msg_id`.
        refused: Option<(usize, u64)>,
        /// `rate_limited` (the sender's own rate, per second) rather than `overloaded`.
        rate_limited: bool,
    },
    /// Any other `error` event.
    Error,
    /// Anything else: other event types, messages that are not load, unparsable frames.
    Other,
}

/// A string borrowed from the frame when it has no escapes (serde borrows a bare `Cow`
/// field but not one inside an `Option`).
#[derive(Debug, Default)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// The `data` fields the load tool reads; every other field is skipped.
#[derive(Deserialize, Default)]
struct Data<'a> {
    #[serde(borrow, default)]
    content: Option<Text<'a>>,
    #[serde(borrow, default)]
    sender_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    code: Option<Text<'a>>,
    #[serde(default)]
    retry_after_ms: Option<f64>,
    #[serde(borrow, default)]
    client_msg_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
}

/// Only the type, for frames whose `data` is not an object of the expected shape.
#[derive(Deserialize)]
struct TypeOnly<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

/// The types the load tool reads.
fn wanted(kind: &str) -> bool {
    matches!(kind, "message" | "offline_message" | "error")
}

/// The type of a frame that starts exactly with `{"type":"<t>"` and `t` has no escape.
fn leading_type(frame: &[u8]) -> Option<&[u8]> {
    let rest = frame.strip_prefix(br#"{"type":""#)?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    (rest[end] == b'"').then_some(&rest[..end])
}

/// `<digits>` → its value; anything else → None.
fn number(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The load message in a text `lt:<first µs>:<stream>:<n>[:<attempt µs>]`, if it is one.
pub fn parse_load(content: &str) -> Option<Load> {
    let mut parts = content.strip_prefix("lt:")?.split(':');
    let first_sent_us = number(parts.next()?)?;
    let stream = number(parts.next()?)? as usize;
    let n = number(parts.next()?)?;
    let attempt_us = match parts.next() {
        Some(a) => number(a)?,
        None => first_sent_us,
    };
    parts.next().is_none().then_some(Load {
        first_sent_us,
        attempt_us,
        stream,
        n,
    })
}

/// The `client_msg_id` the load tool gives message `n` of `stream`.
pub fn client_msg_id(stream: usize, n: u64) -> String {
    format!("lt-{stream}-{n}")
}

/// `(stream, n)` from a `client_msg_id` made by [`client_msg_id`].
pub fn parse_client_msg_id(id: &str) -> Option<(usize, u64)> {
    let (stream, n) = id.strip_prefix("lt-")?.split_once('-')?;
    Some((number(stream)? as usize, number(n)?))
}

/// The `message` frame of load message `n` of `stream` in `conversation`, first sent at
/// `first_us` and this time at `attempt_us`; with its `client_msg_id` when `with_id`.
pub fn load_frame(
    conversation: Uuid,
    stream: usize,
    n: u64,
    first_us: u64,
    attempt_us: u64,
    with_id: bool,
) -> Bytes {
    let attempt = if attempt_us == first_us {
        String::new()
    } else {
        format!(":{attempt_us}")
    };
    let id = if with_id {
        format!(r#","client_msg_id":"{}""#, client_msg_id(stream, n))
    } else {
        String::new()
    };
    Bytes::from(format!(
        r#"{{"type":"message","data":{{"conversation_id":"{conversation}","message_type":"text","content":"lt:{first_us}:{stream}:{n}{attempt}"{id}}}}}"#
    ))
}

/// What `frame` means to the load tool.
pub fn recognise(frame: &[u8]) -> Event<'_> {
    if let Some(kind) = leading_type(frame)
        && !std::str::from_utf8(kind).is_ok_and(wanted)
    {
        return Event::Other;
    }
    let envelope: Envelope<'_> = match serde_json::from_slice(frame) {
        Ok(e) => e,
        // An `error` whose data has another shape is still an error.
        Err(_) => {
            return match serde_json::from_slice::<TypeOnly<'_>>(frame) {
                Ok(t) if t.kind == "error" => Event::Error,
                _ => Event::Other,
            };
        }
    };
    let data = envelope.data.unwrap_or_default();
    match envelope.kind.as_ref() {
        "message" | "offline_message" => {
            match data.content.as_ref().and_then(|c| parse_load(c.as_str())) {
                Some(load) => Event::Load {
                    load,
                    sender: data.sender_id.unwrap_or_default().0,
                },
                None => Event::Other,
            }
        }
        "error" => match data.code.as_ref().map(Text::as_str) {
            Some(code @ ("overloaded" | "rate_limited")) => Event::Refused {
                rate_limited: code == "rate_limited",
                retry_after_ms: data
                    .retry_after_ms
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .map(|v| v.round() as u64),
                refused: data
                    .client_msg_id
                    .as_ref()
                    .and_then(|c| parse_client_msg_id(c.as_str())),
            },
            _ => Event::Error,
        },
        _ => Event::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(first: u64, stream: usize, n: u64, attempt: u64) -> Load {
        Load {
            first_sent_us: first,
            attempt_us: attempt,
            stream,
            n,
        }
    }

    #[test]
    fn a_message_is_recognised_whatever_the_order_of_its_keys() {
        let ours = br#"{"type":"message","data":{"id":"x","sender_id":"abc","content":"lt:17:3:9","seq":4}}"#;
        let go = br#"{"data":{"content":"lt:17:3:9","id":"x","sender_id":"abc"},"type":"message"}"#;
        let spaced = br#" { "data" : { "sender_id" : "abc" , "content" : "lt:17:3:9" } , "type" : "message" } "#;
        for frame in [&ours[..], &go[..], &spaced[..]] {
            assert_eq!(
                recognise(frame),
                Event::Load {
                    load: load(17, 3, 9, 17),
                    sender: "abc".into()
                },
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn escapes_are_decoded_and_offline_messages_count() {
        let escaped =
            br#"{"data":{"content":"lt:17:3:9:25","sender_id":"ab\u0063"},"type":"\u006dessage"}"#;
        assert_eq!(
            recognise(escaped),
            Event::Load {
                load: load(17, 3, 9, 25),
                sender: "abc".into()
            }
        );
        let offline =
            br#"{"type":"offline_message","data":{"content":"lt:1:0:2","sender_id":"s"}}"#;
        assert!(matches!(recognise(offline), Event::Load { .. }));
    }

    #[test]
    fn other_events_and_other_texts_are_not_load() {
        for frame in [
            &br#"{"type":"conversation_update","data":{"last_message_text":"lt:1:2:3"}}"#[..],
            br#"{"data":{"last_message_text":"lt:1:2:3"},"type":"conversation_update"}"#,
            br#"{"type":"message","data":{"content":"hello","sender_id":"s"}}"#,
            br#"{"type":"message","data":{"content":null,"sender_id":"s"}}"#,
            br#"{"type":"message","data":{"content":"lt:1:2","sender_id":"s"}}"#,
            br#"{"type":"message","data":{"content":"lt:1:2:3:4:5","sender_id":"s"}}"#,
            br#"{"type":"message","data":{"content":"lt:1:x:3","sender_id":"s"}}"#,
            br#"{"data":{"content":"lt:1:2:3"}}"#,
            br#"{"type":"message""#,
            b"not json",
            br#"{"type":"message_x","data":{"content":"lt:1:2:3"}}"#,
        ] {
            assert_eq!(
                recognise(frame),
                Event::Other,
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn refusals_are_told_from_other_errors() {
        assert_eq!(
            recognise(
                br#"{"type":"error","data":{"code":"overloaded","message":"busy","retry_after_ms":150}}"#
            ),
            Event::Refused {
                retry_after_ms: Some(150),
                refused: None,
                rate_limited: false
            }
        );
        assert_eq!(
            recognise(
                br#"{"data":{"retry_after_ms":20.4,"client_msg_id":"lt-7-12","code":"overloaded"},"type":"error"}"#
            ),
            Event::Refused {
                retry_after_ms: Some(20),
                refused: Some((7, 12)),
                rate_limited: false
            }
        );
        assert_eq!(
            recognise(br#"{"type":"error","data":{"code":"rate_limited","message":"slow"}}"#),
            Event::Refused {
                retry_after_ms: None,
                refused: None,
                rate_limited: true
            }
        );
        assert_eq!(
            recognise(br#"{"type":"error","data":{"message":"Invalid JSON format"}}"#),
            Event::Error
        );
        assert_eq!(recognise(br#"{"type":"error","data":"odd"}"#), Event::Error);
        assert_eq!(
            recognise(br#"{"type":"error","data":{"code":"overloaded","retry_after_ms":"soon"}}"#),
            Event::Error,
            "a refusal whose fields do not parse is not taken for one"
        );
    }

    #[test]
    fn the_frames_the_tool_sends_are_the_ones_it_recognises() {
        let c = Uuid::new_v4();
        let first = load_frame(c, 4, 8, 1000, 1000, false);
        let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(v["data"]["conversation_id"], c.to_string());
        assert!(v["data"].get("client_msg_id").is_none());
        let again = load_frame(c, 4, 8, 1000, 2500, true);
        let v: serde_json::Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(v["data"]["client_msg_id"], "lt-4-8");
        // The server's echo carries the same content (and the sender).
        let echo = format!(
            r#"{{"type":"message","data":{{"sender_id":"me","content":{},"client_msg_id":"lt-4-8"}}}}"#,
            v["data"]["content"]
        );
        assert_eq!(
            recognise(echo.as_bytes()),
            Event::Load {
                load: load(1000, 4, 8, 2500),
                sender: "me".into()
            }
        );
    }

    #[test]
    fn client_msg_ids_round_trip() {
        assert_eq!(parse_client_msg_id(&client_msg_id(3, 41)), Some((3, 41)));
        assert_eq!(parse_client_msg_id("lt-3"), None);
        assert_eq!(parse_client_msg_id("x-3-4"), None);
        assert_eq!(parse_client_msg_id("lt--4"), None);
    }
}
