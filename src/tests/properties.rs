//! Property tests: thousands of generated inputs for the validation rules, the frame
//! decoder, the envelope codec (fan-out envelopes too) and the paging parameters. Each checks an invariant (never
//! a panic; accepted exactly when the rule says so), not a handful of examples. The
//! generator is a small seeded xorshift so a failure names its seed and replays.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::cluster::envelope;
use crate::domain::routing::Routed;
use crate::domain::send::{self, Draft, MAX_CLIENT_MSG_ID, MAX_TEXT_CHARS};
use crate::domain::settings::Snapshot;
use crate::http::params::Query;
use crate::model::{ConversationId, MessageId, Timestamp, UserId};
use crate::ws::protocol;

struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn text(&mut self, max: u64) -> String {
        let alphabet = ['a', 'Z', ' ', '字', '🙂', '\0', '"', '\\', '%', '\n'];
        let len = self.below(max + 1);
        (0..len).map(|_| *self.pick(&alphabet)).collect()
    }
    fn long_text(&mut self) -> String {
        match self.below(4) {
            0 => "a".repeat(MAX_TEXT_CHARS),
            1 => "字".repeat(MAX_TEXT_CHARS + 1),
            _ => self.text(30),
        }
    }
    fn json(&mut self, depth: u32) -> Value {
        match self.below(if depth == 0 { 4 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.below(200) as i64 - 100),
            2 => json!(self.text(6)),
            3 => json!(self.chance(2)),
            4 => Value::Array((0..self.below(3)).map(|_| self.json(depth - 1)).collect()),
            _ => {
                let mut o = serde_json::Map::new();
                for _ in 0..self.below(4) {
                    let key = self
                        .pick(&[
                            "url",
                            "image_url",
                            "video_url",
                            "file_size",
                            "x",
                            "emoji_id",
                        ])
                        .to_string();
                    let v = if key == "file_size" {
                        json!(self.below(120) * 1_048_576)
                    } else {
                        self.json(depth - 1)
                    };
                    o.insert(key, v);
                }
                Value::Object(o)
            }
        }
    }
}

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

fn draft(g: &mut Gen, me: UserId) -> Draft {
    Draft {
        conversation_id: g.chance(3).then(ConversationId::new_v4),
        receiver_id: match g.below(4) {
            0 => None,
            1 => Some(me),
            _ => Some(UserId::new_v4()),
        },
        message_type: g
            .pick(&["text", "image", "video", "emoji", "sticker", ""])
            .to_string()
            .into(),
        content: g.chance(4).then(|| g.long_text()),
        metadata: if g.chance(2) { Some(g.json(2)) } else { None },
        reply_to_message_id: g.chance(3).then(MessageId::new_v4),
        client_msg_id: match g.below(4) {
            0 => Some(String::new()),
            1 => Some("k".repeat(MAX_CLIENT_MSG_ID + g.below(2) as usize)),
            _ => None,
        },
        forwarded_from: None,
    }
}

/// What the rules say, written independently of `send::validate`.
fn allowed(d: &Draft, me: UserId, max_video_mb: u64) -> bool {
    let meta = match &d.metadata {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => return false,
    };
    let has_nul = |v: &Value| v.to_string().contains("\\u0000");
    if d.metadata.as_ref().is_some_and(has_nul) {
        return false;
    }
    if let Some(c) = &d.content
        && (c.contains('\0') || c.chars().count() > MAX_TEXT_CHARS)
    {
        return false;
    }
    let url = |keys: &[&str]| {
        meta.is_some_and(|m| {
            keys.iter().any(|k| {
                m.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.trim().is_empty())
            })
        })
    };
    let ok_type = match d.message_type.as_str() {
        "text" => d.content.as_deref().is_some_and(|c| !c.is_empty()),
        "image" => url(&["url", "image_url"]),
        "video" => {
            url(&["url", "video_url"])
                && meta
                    .and_then(|m| m.get("file_size"))
                    .and_then(Value::as_f64)
                    .is_none_or(|s| s / 1_048_576.0 <= max_video_mb as f64)
        }
        "emoji" => {
            d.content.as_deref().is_some_and(|c| !c.is_empty())
                || meta.is_some_and(|m| !m.is_empty())
        }
        _ => false,
    };
    let ok_cmid = d
        .client_msg_id
        .as_ref()
        .is_none_or(|c| !c.is_empty() && c.len() <= MAX_CLIENT_MSG_ID);
    let ok_target = d.conversation_id.is_some() || d.receiver_id.is_some_and(|r| r != me);
    ok_type && ok_cmid && ok_target
}

#[test]
fn validation_accepts_exactly_what_the_rules_allow() {
    let s = settings();
    for seed in 1..=5000u64 {
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let me = UserId::new_v4();
        let d = draft(&mut g, me);
        let got = send::validate(&d, me, &s).is_ok();
        assert_eq!(
            got,
            allowed(&d, me, s.max_video_size_mb),
            "seed {seed}: {d:?}"
        );
    }
}

#[test]
fn the_frame_decoder_never_panics_and_answers_every_frame() {
    let kinds = [
        "message",
        "typing",
        "read",
        "recall",
        "edit",
        "set_current_conversation",
        "ack",
        "heartbeat",
        "nope",
    ];
    for seed in 1..=5000u64 {
        let mut g = Gen(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
        let mut bytes: Vec<u8> = match g.below(3) {
            // Arbitrary bytes.
            0 => (0..g.below(64)).map(|_| g.next() as u8).collect(),
            // A frame shaped like ours with random data.
            1 => json!({"type": g.pick(&kinds), "data": g.json(3)})
                .to_string()
                .into_bytes(),
            // A frame with plausible fields of random types.
            _ => json!({"type": g.pick(&kinds), "data": {
                "conversation_id": if g.chance(2) { json!(Uuid::new_v4()) } else { g.json(1) },
                "message_id": if g.chance(2) { json!(Uuid::new_v4()) } else { g.json(1) },
                "receiver_id": g.json(1), "message_type": g.json(1), "content": g.json(1),
                "metadata": g.json(2), "seq": g.json(1), "client_msg_id": g.json(1),
            }})
            .to_string()
            .into_bytes(),
        };
        let copy = bytes.clone();
        if let Err(e) = protocol::decode(&mut bytes) {
            assert!(
                e.is_client(),
                "seed {seed}: {:?}",
                String::from_utf8_lossy(&copy)
            );
            assert!(!e.public_message().is_empty());
        }
    }
}

#[test]
fn envelopes_round_trip_and_garbage_is_refused_without_panic() {
    for seed in 1..=3000u64 {
        let mut g = Gen(seed.wrapping_mul(0xA24B_AED4_963E_E407) | 1);
        let conv = ConversationId::new_v4();
        let routed = match g.below(8) {
            0 => Routed::Message {
                conversation_id: conv,
                seq: g.next() as i64 >> 1,
                sender_id: UserId::new_v4(),
                created_at: Timestamp(g.next() as i64 >> 8),
                preview: g.chance(2).then(|| g.text(60)),
                frame: bytes::Bytes::from(g.text(40)),
            },
            1 => Routed::Frame {
                frame: bytes::Bytes::from(g.text(40)),
                except: g.next(),
            },
            2 => Routed::ReadCursor {
                conversation_id: conv,
                read_seq: g.below(1000) as i64,
                last_seq: g.below(1000) as i64,
            },
            3 => Routed::Recall {
                conversation_id: conv,
                message_id: MessageId::new_v4(),
                last_seq: g.below(1000) as i64,
                last_message_time: g.chance(2).then(|| Timestamp(g.next() as i64 >> 8)),
                preview: g.chance(2).then(|| g.text(20)),
            },
            4 => Routed::Logout,
            5 => Routed::Joined {
                conversation_id: conv,
                last_seq: g.below(1000) as i64,
            },
            6 => Routed::Presence {
                conversation_id: conv,
                frame: bytes::Bytes::from(g.text(40)),
            },
            _ => Routed::Left {
                conversation_id: conv,
            },
        };
        let mut buf = bytes::BytesMut::new();
        routed.encode_into(&mut buf);
        let encoded = buf.freeze();
        assert_eq!(Routed::decode(encoded.clone()), Some(routed), "seed {seed}");
        // Every prefix of a valid body and random bytes decode to something or nothing.
        let cut = g.below(encoded.len() as u64 + 1) as usize;
        let _ = Routed::decode(encoded.slice(..cut));
        let junk: Vec<u8> = (0..g.below(80)).map(|_| g.next() as u8).collect();
        let _ = Routed::decode(bytes::Bytes::from(junk.clone()));
        // The same body for many users in a fan-out envelope: the list and the body come
        // back; a cut or junk splits into something or nothing.
        let users: Vec<UserId> = (0..g.below(20)).map(|_| UserId::new_v4()).collect();
        let fanout = envelope::fanout(g.next(), &users, &encoded);
        let (_, body) = envelope::split(&fanout).expect("a header");
        let (listed, inner) = envelope::split_fanout(&body).expect("well formed");
        assert_eq!(listed, users, "seed {seed}");
        assert_eq!(Routed::decode(inner), Routed::decode(encoded.clone()));
        let cut = g.below(body.len() as u64 + 1) as usize;
        let _ = envelope::split_fanout(&body.slice(..cut));
        let _ = envelope::split_fanout(&bytes::Bytes::from(junk));
    }
}

#[test]
fn paging_accepts_exactly_its_ranges() {
    for seed in 1..=3000u64 {
        let mut g = Gen(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let raw: String = match g.below(3) {
            0 => (g.below(250) as i64 - 50).to_string(),
            1 => g.text(4),
            _ => format!("{}{}", g.below(300), g.pick(&["", "x", ".5", "%20"])),
        };
        let q = Query::parse(&format!("limit={raw}&offset={raw}"));
        let as_int = raw.parse::<i64>().ok();
        assert_eq!(
            q.limit(20).ok(),
            as_int.filter(|n| (1..=100).contains(n)),
            "limit={raw:?}"
        );
        assert_eq!(
            q.offset().ok(),
            as_int.filter(|n| *n >= 0),
            "offset={raw:?}"
        );
    }
}
