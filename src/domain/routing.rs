//! What travels on a user's channel: [`Routed`] events in a compact binary body after the
//! bus header. Frames that are the same for every recipient are serialized once by the
//! sending node; what depends on the recipient (unread counts) is computed by the node
//! that holds the recipient's devices.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::model::{ConversationId, MessageId, Timestamp, UserId};

/// An event routed to one user.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// A committed message. The recipient's node emits `conversation_update`,
    /// `unread_count_update` and `message`; the sender's devices get only `message`.
    Message {
        /// Conversation.
        conversation_id: ConversationId,
        /// Seq of the message.
        seq: i64,
        /// Sender.
        sender_id: UserId,
        /// Commit time.
        created_at: Timestamp,
        /// Preview text for `conversation_update`.
        preview: Option<String>,
        /// The serialized `message` frame for this user.
        frame: Bytes,
    },
    /// A frame for every device of the user as it is (typing, receipts, notifications…), except
    /// connection `except` of the origin node (0: none), so an actor's own device is skipped
    /// while its other devices get the mirror.
    Frame {
        /// The serialized frame.
        frame: Bytes,
        /// Connection id on the origin node to skip; 0 for none.
        except: u64,
    },
    /// A partner's presence changed (`online_status_update`), for the user's private
    /// conversation `conversation_id` with that partner. Pushed only when a message of that
    /// conversation has reached the user's devices here, so a client never hears of a
    /// partner before the conversation; otherwise dropped (HTTP `online_status` has it).
    Presence {
        /// The private conversation with the partner.
        conversation_id: ConversationId,
        /// The serialized `online_status_update` frame.
        frame: Bytes,
    },
    /// The user's read cursor moved (on another device or node).
    ReadCursor {
        /// Conversation.
        conversation_id: ConversationId,
        /// The new read cursor.
        read_seq: i64,
        /// The conversation's highest seq when it moved.
        last_seq: i64,
    },
    /// A message was recalled: `recalled`, then `conversation_update`.
    Recall {
        /// Conversation.
        conversation_id: ConversationId,
        /// The recalled message.
        message_id: MessageId,
        /// The conversation's highest seq.
        last_seq: i64,
        /// Time of the conversation's last message.
        last_message_time: Option<Timestamp>,
        /// Preview of the last message after the recall.
        preview: Option<String>,
    },
    /// Close every device of the user (logout).
    Logout,
    /// The user became a member of a conversation.
    Joined {
        /// Conversation.
        conversation_id: ConversationId,
        /// Its highest seq at the time (nothing before is pending or unread).
        last_seq: i64,
    },
    /// The user left or was removed from a conversation.
    Left {
        /// Conversation.
        conversation_id: ConversationId,
    },
}

const MESSAGE: u8 = 1;
const FRAME: u8 = 2;
const READ_CURSOR: u8 = 3;
const RECALL: u8 = 4;
const LOGOUT: u8 = 5;
const JOINED: u8 = 6;
const LEFT: u8 = 7;
const PRESENCE: u8 = 8;

fn put_id(b: &mut BytesMut, id: &[u8; 16]) {
    b.put_slice(id);
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => {
            b.put_u32(s.len() as u32);
            b.put_slice(s.as_bytes());
        }
        None => b.put_u32(u32::MAX),
    }
}

fn put_opt_ts(b: &mut BytesMut, t: Option<Timestamp>) {
    match t {
        Some(t) => {
            b.put_u8(1);
            b.put_i64(t.0);
        }
        None => b.put_u8(0),
    }
}

impl Routed {
    /// Appends the body to `out` (a bus envelope with its header already written).
    pub fn encode_into(&self, out: &mut BytesMut) {
        match self {
            Routed::Message {
                conversation_id,
                seq,
                sender_id,
                created_at,
                preview,
                frame,
            } => {
                out.reserve(64 + frame.len());
                out.put_u8(MESSAGE);
                put_id(out, conversation_id.as_bytes());
                out.put_i64(*seq);
                put_id(out, sender_id.as_bytes());
                out.put_i64(created_at.0);
                put_opt_str(out, preview.as_deref());
                out.put_slice(frame);
            }
            Routed::Frame { frame, except } => {
                out.put_u8(FRAME);
                out.put_u64(*except);
                out.put_slice(frame);
            }
            Routed::Presence {
                conversation_id,
                frame,
            } => {
                out.reserve(17 + frame.len());
                out.put_u8(PRESENCE);
                put_id(out, conversation_id.as_bytes());
                out.put_slice(frame);
            }
            Routed::ReadCursor {
                conversation_id,
                read_seq,
                last_seq,
            } => {
                out.put_u8(READ_CURSOR);
                put_id(out, conversation_id.as_bytes());
                out.put_i64(*read_seq);
                out.put_i64(*last_seq);
            }
            Routed::Recall {
                conversation_id,
                message_id,
                last_seq,
                last_message_time,
                preview,
            } => {
                out.put_u8(RECALL);
                put_id(out, conversation_id.as_bytes());
                put_id(out, message_id.as_bytes());
                out.put_i64(*last_seq);
                put_opt_ts(out, *last_message_time);
                put_opt_str(out, preview.as_deref());
            }
            Routed::Logout => out.put_u8(LOGOUT),
            Routed::Joined {
                conversation_id,
                last_seq,
            } => {
                out.put_u8(JOINED);
                put_id(out, conversation_id.as_bytes());
                out.put_i64(*last_seq);
            }
            Routed::Left { conversation_id } => {
                out.put_u8(LEFT);
                put_id(out, conversation_id.as_bytes());
            }
        }
    }

    /// Decodes a body; `None` when it is malformed.
    pub fn decode(mut body: Bytes) -> Option<Routed> {
        fn id(b: &mut Bytes) -> Option<[u8; 16]> {
            (b.remaining() >= 16).then(|| {
                let mut id = [0u8; 16];
                b.copy_to_slice(&mut id);
                id
            })
        }
        let conv = |b: &mut Bytes| id(b).map(ConversationId::from_bytes);
        let user = |b: &mut Bytes| id(b).map(UserId::from_bytes);
        let message = |b: &mut Bytes| id(b).map(MessageId::from_bytes);
        fn i64_(b: &mut Bytes) -> Option<i64> {
            (b.remaining() >= 8).then(|| b.get_i64())
        }
        fn opt_str(b: &mut Bytes) -> Option<Option<String>> {
            if b.remaining() < 4 {
                return None;
            }
            let len = b.get_u32();
            if len == u32::MAX {
                return Some(None);
            }
            let len = len as usize;
            if b.remaining() < len {
                return None;
            }
            let s = String::from_utf8(b.split_to(len).to_vec()).ok()?;
            Some(Some(s))
        }
        fn opt_ts(b: &mut Bytes) -> Option<Option<Timestamp>> {
            if b.remaining() < 1 {
                return None;
            }
            match b.get_u8() {
                0 => Some(None),
                _ => i64_(b).map(|t| Some(Timestamp(t))),
            }
        }
        if body.remaining() < 1 {
            return None;
        }
        let b = &mut body;
        Some(match b.get_u8() {
            MESSAGE => Routed::Message {
                conversation_id: conv(b)?,
                seq: i64_(b)?,
                sender_id: user(b)?,
                created_at: Timestamp(i64_(b)?),
                preview: opt_str(b)?,
                frame: b.split_off(0),
            },
            FRAME => Routed::Frame {
                except: (b.remaining() >= 8).then(|| b.get_u64())?,
                frame: b.split_off(0),
            },
            PRESENCE => Routed::Presence {
                conversation_id: conv(b)?,
                frame: b.split_off(0),
            },
            READ_CURSOR => Routed::ReadCursor {
                conversation_id: conv(b)?,
                read_seq: i64_(b)?,
                last_seq: i64_(b)?,
            },
            RECALL => Routed::Recall {
                conversation_id: conv(b)?,
                message_id: message(b)?,
                last_seq: i64_(b)?,
                last_message_time: opt_ts(b)?,
                preview: opt_str(b)?,
            },
            LOGOUT => Routed::Logout,
            JOINED => Routed::Joined {
                conversation_id: conv(b)?,
                last_seq: i64_(b)?,
            },
            LEFT => Routed::Left {
                conversation_id: conv(b)?,
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let c = ConversationId::new_v4();
        let cases = [
            Routed::Message {
                conversation_id: c,
                seq: 7,
                sender_id: UserId::new_v4(),
                created_at: Timestamp(123),
                preview: Some("héllo".into()),
                frame: Bytes::from_static(b"{\"type\":\"message\"}"),
            },
            Routed::Message {
                conversation_id: c,
                seq: 1,
                sender_id: UserId::new_v4(),
                created_at: Timestamp(-5),
                preview: None,
                frame: Bytes::new(),
            },
            Routed::Frame {
                frame: Bytes::from_static(b"{}"),
                except: 42,
            },
            Routed::Presence {
                conversation_id: c,
                frame: Bytes::from_static(b"{\"type\":\"online_status_update\"}"),
            },
            Routed::ReadCursor {
                conversation_id: c,
                read_seq: 3,
                last_seq: 9,
            },
            Routed::Recall {
                conversation_id: c,
                message_id: MessageId::new_v4(),
                last_seq: 4,
                last_message_time: Some(Timestamp(99)),
                preview: None,
            },
            Routed::Logout,
            Routed::Joined {
                conversation_id: c,
                last_seq: 12,
            },
            Routed::Left { conversation_id: c },
        ];
        for r in cases {
            let mut b = BytesMut::new();
            r.encode_into(&mut b);
            assert_eq!(Routed::decode(b.freeze()), Some(r));
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert_eq!(Routed::decode(Bytes::new()), None);
        assert_eq!(Routed::decode(Bytes::from_static(&[99])), None);
        assert_eq!(
            Routed::decode(Bytes::from_static(&[READ_CURSOR, 1, 2])),
            None
        );
        let mut b = BytesMut::new();
        b.put_u8(MESSAGE);
        b.put_slice(&[0u8; 40]);
        b.put_u32(1000);
        assert_eq!(Routed::decode(b.freeze()), None);
    }
}
