//! The authorization matrix over WebSocket (issue 7 item 3): every client frame
//! (`message`, `typing`, `read`, `recall`, `set_current_conversation`, `ack`, `heartbeat`)
//! sent by every kind of caller of `authz` on a real node. Each cell states the `error`
//! code the caller must get, or the effect that must happen (delivered to the members,
//! typing or receipt shown, recalled, viewing, delivery cursor stored, presence refreshed),
//! or that the frame is ignored; and in every cell nobody outside the conversation
//! concerned hears anything of it (DECISIONS.md "members who left get nothing").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use super::authz::{EVERYONE, Fixture, Matrix, Who};
use super::realtime::{send_text, uuid_of};
use super::ws_client::{ConnectOptions, Ws};
use crate::ws::protocol::{self, Request};

use Who::*;

/// The frame type of a decoded request. A new request type fails to compile here: add it
/// to [`FRAME_TYPES`] and give it a row in [`WS`].
fn frame_type(r: &Request) -> &'static str {
    match r {
        Request::Heartbeat => "heartbeat",
        Request::Message(_) => "message",
        Request::Typing { .. } => "typing",
        Request::Read { .. } => "read",
        Request::Recall { .. } => "recall",
        Request::SetCurrentConversation(_) => "set_current_conversation",
        Request::Ack { .. } => "ack",
    }
}

/// Every client frame type; each needs at least one row.
const FRAME_TYPES: [&str; 7] = [
    "message",
    "typing",
    "read",
    "recall",
    "set_current_conversation",
    "ack",
    "heartbeat",
];

/// One row of the matrix: a frame, and what it acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A text to the caller's conversation by `conversation_id`.
    Message,
    /// A text by `receiver_id` to the blocked user's partner.
    MessageToPartner,
    Typing,
    /// Reading a fresh message of someone else in the caller's conversation.
    Read,
    /// Recalling a message the caller sent.
    RecallOwn,
    /// Recalling a fresh message of the member.
    RecallMembers,
    /// Viewing the caller's conversation while someone else writes in it.
    Viewing,
    /// Acknowledging a fresh message of someone else in the caller's conversation.
    Ack,
    Heartbeat,
}

impl Kind {
    fn frame_type(self) -> &'static str {
        match self {
            Kind::Message | Kind::MessageToPartner => "message",
            Kind::Typing => "typing",
            Kind::Read => "read",
            Kind::RecallOwn | Kind::RecallMembers => "recall",
            Kind::Viewing => "set_current_conversation",
            Kind::Ack => "ack",
            Kind::Heartbeat => "heartbeat",
        }
    }

    fn name(self) -> String {
        let variant = match self {
            Kind::Message => " (conversation_id)",
            Kind::MessageToPartner => " (receiver_id = the blocker)",
            Kind::RecallOwn => " (own message)",
            Kind::RecallMembers => " (member's message)",
            _ => "",
        };
        format!("{}{variant}", self.frame_type())
    }
}

/// What a cell must show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// No error; the row's effect happened.
    Done,
    /// This `error` code to the caller; no effect.
    Error(&'static str),
    /// No error and no effect.
    Ignored,
    /// No token: the handshake is refused (401 `missing_token`), there is no socket.
    NoSocket,
}

const D: Expect = Expect::Done;
const NM: Expect = Expect::Error("not_member");
const BL: Expect = Expect::Error("blocked");
const NS: Expect = Expect::Error("not_sender");
const IG: Expect = Expect::Ignored;
const NO: Expect = Expect::NoSocket;

/// Every frame and what each principal gets, in the order of [`EVERYONE`]: owner, group
/// admin, member, former member, outsider, blocked, admin claim, ADMIN_USER_IDS, no token.
/// The caller's conversation is the group, the blocked user's their private one.
#[rustfmt::skip]
const WS: &[(Kind, &str, [Expect; 9])] = &[
    (Kind::Message, "delivered", [D, D, D, NM, NM, BL, NM, NM, NO]),
    (Kind::MessageToPartner, "delivered", [D, D, D, D, D, BL, D, D, NO]),
    (Kind::Typing, "shown", [D, D, D, NM, NM, D, NM, NM, NO]),
    (Kind::Read, "read", [D, D, D, NM, NM, D, NM, NM, NO]),
    (Kind::RecallOwn, "recalled", [D, D, D, NM, D, D, D, D, NO]),
    (Kind::RecallMembers, "recalled", [NS, NS, D, NS, NS, NS, NS, NS, NO]),
    (Kind::Viewing, "viewing", [D, D, D, IG, IG, D, IG, IG, NO]),
    (Kind::Ack, "cursor stored", [D, D, D, IG, IG, D, IG, IG, NO]),
    (Kind::Heartbeat, "online", [D, D, D, D, D, D, D, D, NO]),
];

/// What one cell sends and watches.
struct Cell {
    frame: Value,
    /// The conversation the frame is about.
    conversation: Uuid,
    /// A text unique to the cell (in the messages it makes).
    marker: String,
    /// The message acted on.
    mid: Option<Uuid>,
    seq: Option<i64>,
    /// Who must hear of a successful frame (besides the caller).
    audience: Vec<Uuid>,
    /// Who may hear of it at all; every other socket must see nothing with a needle.
    allowed: Vec<Uuid>,
    needles: Vec<String>,
}

/// The fixture with one ack-mode connection per principal with a token, and the partner.
struct Room {
    fx: Fixture,
    socks: HashMap<Uuid, Ws>,
    redis: redis::aio::MultiplexedConnection,
}

impl Room {
    async fn open() -> Room {
        let fx = Fixture::new().await;
        let mut socks = HashMap::new();
        let opts = ConnectOptions {
            ack: true,
            ..Default::default()
        };
        let users = EVERYONE
            .iter()
            .filter_map(|w| fx.uid(*w).map(|u| (u, *w == Claim)));
        for (user, admin) in users.chain([(fx.partner, false)]) {
            let token = fx.c.env.token(user, admin);
            let ws = Ws::connect_with(fx.c.nodes[0].addr, &token, user, opts.clone())
                .await
                .expect("connect");
            socks.insert(user, ws);
        }
        let client = redis::Client::open(format!("redis://{}", fx.c.env.redis)).unwrap();
        let redis = client.get_multiplexed_async_connection().await.unwrap();
        Room { fx, socks, redis }
    }

    fn ws(&mut self, user: Uuid) -> &mut Ws {
        self.socks.get_mut(&user).expect("a connected user")
    }

    /// Sends a text from `from`'s connection; returns the echo.
    async fn say(&mut self, from: Uuid, conv: Option<Uuid>, to: Option<Uuid>, text: &str) -> Value {
        send_text(self.ws(from), conv, to, text).await
    }

    async fn drain_into(&mut self, seen: &mut HashMap<Uuid, Vec<Value>>) {
        for (user, ws) in self.socks.iter_mut() {
            seen.entry(*user)
                .or_default()
                .extend(ws.drain(Duration::ZERO).await);
        }
    }

    /// Lets pending events arrive and forgets them.
    async fn settle(&mut self) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.drain_into(&mut HashMap::new()).await;
    }

    fn online_key(&self, user: Uuid) -> String {
        format!("{}online:{user}", self.fx.c.env.prefix)
    }

    /// Someone other than `who` who writes in `who`'s conversation.
    fn other_sender(&self, who: Who) -> Uuid {
        match who {
            Blocked => self.fx.partner,
            Owner => self.fx.user(Member),
            _ => self.fx.user(Owner),
        }
    }

    async fn prepare(&mut self, kind: Kind, who: Who, n: usize) -> Cell {
        let me = self.fx.user(who);
        let conversation = self.fx.target(who);
        let members = self.fx.members(conversation);
        let marker = format!("authz-ws-{n}");
        let mut cell = Cell {
            frame: Value::Null,
            conversation,
            marker: marker.clone(),
            mid: None,
            seq: None,
            audience: members.iter().copied().filter(|u| *u != me).collect(),
            allowed: members.clone(),
            needles: vec![conversation.to_string(), marker.clone()],
        };
        let text = |data: Value| json!({"type": "message", "data": data});
        match kind {
            Kind::Message => {
                cell.frame = text(
                    json!({"conversation_id": conversation, "message_type": "text", "content": marker}),
                );
            }
            Kind::MessageToPartner => {
                let partner = self.fx.partner;
                cell.frame = text(
                    json!({"receiver_id": partner, "message_type": "text", "content": marker}),
                );
                cell.audience = vec![partner];
                cell.allowed = vec![me, partner];
                cell.needles = vec![marker];
            }
            Kind::Typing => {
                cell.frame = json!({"type": "typing", "data": {"conversation_id": conversation}});
            }
            Kind::Read | Kind::Ack => {
                let m = self
                    .say(self.other_sender(who), Some(conversation), None, &marker)
                    .await;
                let mid = uuid_of(&m["id"]);
                cell.mid = Some(mid);
                cell.seq = m["seq"].as_i64();
                cell.frame = if kind == Kind::Read {
                    json!({"type": "read", "data": {"conversation_id": conversation, "message_id": mid}})
                } else {
                    if members.contains(&me) {
                        // The ack can only confirm what reached the device.
                        while self.ws(me).expect("message").await["id"] != m["id"] {}
                    }
                    cell.audience = Vec::new();
                    json!({"type": "ack", "data": {"conversation_id": conversation, "seq": cell.seq}})
                };
            }
            Kind::RecallOwn => {
                let mid = match who {
                    Owner | Admin | Member => {
                        uuid_of(&self.say(me, Some(conversation), None, &marker).await["id"])
                    }
                    Former => self.fx.former_msg,
                    Blocked => self.fx.blocked_msg,
                    _ => {
                        // An outsider's own message lives in a private conversation of its own.
                        let m = self.say(me, None, Some(Uuid::new_v4()), &marker).await;
                        cell.allowed = vec![me];
                        cell.needles = vec![marker.clone()];
                        uuid_of(&m["id"])
                    }
                };
                cell.audience = cell.allowed.clone();
                cell.needles.push(mid.to_string());
                cell.mid = Some(mid);
                cell.frame = json!({"type": "recall", "data": {"message_id": mid}});
            }
            Kind::RecallMembers => {
                let group = self.fx.group;
                let m = self
                    .say(self.fx.user(Member), Some(group), None, &marker)
                    .await;
                let mid = uuid_of(&m["id"]);
                cell.conversation = group;
                cell.allowed = self.fx.members(group);
                cell.audience = cell.allowed.clone();
                cell.needles = vec![group.to_string(), marker, mid.to_string()];
                cell.mid = Some(mid);
                cell.frame = json!({"type": "recall", "data": {"message_id": mid}});
            }
            Kind::Viewing => {
                cell.audience = Vec::new();
                cell.frame = json!({"type": "set_current_conversation", "data": {"conversation_id": conversation}});
            }
            Kind::Heartbeat => {
                let key = self.online_key(me);
                redis::cmd("DEL")
                    .arg(&key)
                    .query_async::<()>(&mut self.redis)
                    .await
                    .unwrap();
                cell.needles = Vec::new();
                cell.frame = json!({"type": "heartbeat", "data": null});
            }
        }
        cell
    }

    /// The parts of the row's effect that happened (all: done; none: no effect).
    async fn effect(
        &mut self,
        kind: Kind,
        cell: &Cell,
        me: Uuid,
        seen: &HashMap<Uuid, Vec<Value>>,
    ) -> Vec<bool> {
        let got = |user: Uuid, ty: &str, fields: &[(&str, Value)]| {
            seen.get(&user).is_some_and(|events| {
                events
                    .iter()
                    .any(|e| e["type"] == ty && fields.iter().all(|(k, v)| e["data"][*k] == *v))
            })
        };
        let (conv, mid, me_s) = (json!(cell.conversation), json!(cell.mid), json!(me));
        let each = |ty: &str, fields: &[(&str, Value)]| -> Vec<bool> {
            cell.audience.iter().map(|u| got(*u, ty, fields)).collect()
        };
        let marker = json!(cell.marker);
        match kind {
            Kind::Message | Kind::MessageToPartner => {
                let mut parts = vec![got(
                    me,
                    "message",
                    &[("content", marker.clone()), ("sender_id", me_s)],
                )];
                parts.extend(each("message", &[("content", marker)]));
                parts
            }
            Kind::Typing => each("typing", &[("conversation_id", conv), ("user_id", me_s)]),
            Kind::Read => {
                let zero = [("conversation_id", conv), ("unread_count", json!(0))];
                let mut parts = vec![got(me, "unread_count_update", &zero)];
                parts.extend(each("read", &[("message_id", mid), ("reader_id", me_s)]));
                parts
            }
            Kind::RecallOwn | Kind::RecallMembers => {
                let mut parts = vec![self.fx.recalled(cell.mid.unwrap_or_default()).await];
                parts.extend(each("recalled", &[("message_id", mid)]));
                parts
            }
            Kind::Viewing => {
                vec![got(
                    me,
                    "unread_count_update",
                    &[("conversation_id", conv), ("unread_count", json!(0))],
                )]
            }
            Kind::Ack => {
                let sql = "SELECT delivered_seq FROM conversation_members WHERE conversation_id = $1 AND user_id = $2";
                let stored: Option<i64> = self.fx.value(sql, &[&cell.conversation, &me]).await;
                vec![stored.is_some() && stored == cell.seq]
            }
            Kind::Heartbeat => {
                let key = self.online_key(me);
                vec![
                    redis::cmd("EXISTS")
                        .arg(&key)
                        .query_async::<bool>(&mut self.redis)
                        .await
                        .unwrap(),
                ]
            }
        }
    }

    /// Runs one cell: what happened, and what was wrong with it.
    async fn run(
        &mut self,
        kind: Kind,
        label: &str,
        who: Who,
        want: Expect,
        n: usize,
    ) -> (String, Vec<String>) {
        let me = self.fx.user(who);
        let cell = self.prepare(kind, who, n).await;
        self.settle().await;
        let mut problems = Vec::new();
        let mut bytes = cell.frame.to_string().into_bytes();
        match protocol::decode(&mut bytes) {
            Ok(r) if frame_type(&r) == kind.frame_type() => {}
            other => problems.push(format!("the frame {} decodes to {other:?}", cell.frame)),
        }
        self.ws(me).send(cell.frame.clone()).await;
        if kind == Kind::Viewing {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let from = self.other_sender(who);
            self.say(from, Some(cell.conversation), None, &cell.marker)
                .await;
        }
        // Negative cells watch for a fixed window (longer than a cursor flush for acks);
        // positive ones until the effect is complete.
        let window = Duration::from_millis(if kind == Kind::Ack { 1500 } else { 500 });
        let limit = if want == Expect::Done {
            Duration::from_secs(4)
        } else {
            window
        };
        let started = Instant::now();
        let mut seen = HashMap::new();
        let parts = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.drain_into(&mut seen).await;
            let parts = self.effect(kind, &cell, me, &seen).await;
            let complete = parts.iter().all(|p| *p);
            if (want == Expect::Done && complete) || started.elapsed() >= limit {
                break parts;
            }
        };
        if kind == Kind::Viewing {
            self.ws(me)
                .send(
                    json!({"type": "set_current_conversation", "data": {"conversation_id": null}}),
                )
                .await;
        }
        let error = seen[&me]
            .iter()
            .find(|e| e["type"] == "error")
            .map(|e| e["data"]["code"].as_str().unwrap_or("?").to_string());
        let (all, any) = (parts.iter().all(|p| *p), parts.iter().any(|p| *p));
        let got = match (error, all, any) {
            (Some(code), _, false) => format!("error {code}"),
            (Some(code), _, true) => format!("error {code} and {label}"),
            (None, true, _) => format!("ok: {label}"),
            (None, false, true) => format!("partly {label}"),
            (None, false, false) => "ignored".to_string(),
        };
        let wanted = match want {
            Expect::Done => format!("ok: {label}"),
            Expect::Error(code) => format!("error {code}"),
            Expect::Ignored => "ignored".to_string(),
            Expect::NoSocket => "no socket".to_string(),
        };
        if got != wanted {
            problems.push(format!("want {wanted}"));
        }
        for (user, events) in &seen {
            if cell.allowed.contains(user) {
                continue;
            }
            for e in events {
                let text = e.to_string();
                if cell
                    .needles
                    .iter()
                    .any(|needle| text.contains(needle.as_str()))
                {
                    problems.push(format!(
                        "{} (not in the conversation) got {e}",
                        self.fx.name(*user)
                    ));
                }
            }
        }
        (got, problems)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_as_every_caller() {
    let mut room = Room::open().await;
    let mut m = Matrix::new(
        "WebSocket authorization matrix: frame × caller → error code or effect",
        vec![
            "Frames act on the caller's conversation: the group, or the blocked user's private one. An outsider's own message".into(),
            "is in a private conversation of its own. Every cell also checks nobody outside the conversation hears of it. ✗ = not as expected.".into(),
        ],
    );
    for ty in FRAME_TYPES {
        if !WS.iter().any(|(k, _, _)| k.frame_type() == ty) {
            m.problem(format!("frame {ty}: no row in the authorization matrix"));
        }
    }
    let mut n = 0;
    for (kind, label, wants) in WS {
        let row = kind.name();
        let mut cells = Vec::new();
        for (who, want) in EVERYONE.iter().zip(wants) {
            n += 1;
            let (got, problems) = if *who == Anonymous {
                let a = room.fx.call(Anonymous, "GET", "/ws", None).await;
                let refused = *want == NO && a.0 == 401 && a.1["error"] == "missing_token";
                let problems = if refused {
                    Vec::new()
                } else {
                    vec![format!("want 401 missing_token, got {} {}", a.0, a.1)]
                };
                ("no socket (401 missing_token)".to_string(), problems)
            } else {
                room.run(*kind, label, *who, *want, n).await
            };
            cells.push(m.cell(&row, *who, got, problems));
            room.settle().await;
        }
        m.row(row, cells);
    }
    let Room { fx, socks, .. } = room;
    drop(socks);
    fx.c.stop().await;
    m.finish();
}
