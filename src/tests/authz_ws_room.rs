//! The fixture of the WebSocket authorization matrix: one ack-mode connection per kind of
//! caller, and for each cell the frame to send ([`Room::prepare`]) and the effect to look
//! for ([`Room::effect`]).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::authz::{EVERYONE, Fixture, Who};
use super::authz_checks::edited_text;
use super::authz_ws::Kind;
use super::realtime::{send_text, uuid_of};
use super::ws_client::{ConnectOptions, Ws};

use Who::*;

/// What one cell sends and watches.
pub(super) struct Cell {
    pub(super) frame: Value,
    /// The conversation the frame is about.
    pub(super) conversation: Uuid,
    /// A text unique to the cell (in the messages it makes).
    pub(super) marker: String,
    /// The message acted on.
    pub(super) mid: Option<Uuid>,
    pub(super) seq: Option<i64>,
    /// Who must hear of a successful frame (besides the caller).
    pub(super) audience: Vec<Uuid>,
    /// Who may hear of it at all; every other socket must see nothing with a needle.
    pub(super) allowed: Vec<Uuid>,
    pub(super) needles: Vec<String>,
}

/// The frame of a recall or edit cell acting on `mid`.
fn act(kind: Kind, mid: Uuid, marker: &str) -> Value {
    match kind {
        Kind::EditOwn | Kind::EditMembers => json!({"type": "edit", "data": {
            "message_id": mid, "content": edited_text(marker),
        }}),
        _ => json!({"type": "recall", "data": {"message_id": mid}}),
    }
}

/// The fixture with one ack-mode connection per principal with a token, and the partner.
pub(super) struct Room {
    pub(super) fx: Fixture,
    pub(super) socks: HashMap<Uuid, Ws>,
    pub(super) redis: redis::aio::MultiplexedConnection,
}

impl Room {
    pub(super) async fn open() -> Room {
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

    pub(super) fn ws(&mut self, user: Uuid) -> &mut Ws {
        self.socks.get_mut(&user).expect("a connected user")
    }

    /// Sends a text from `from`'s connection; returns the echo.
    pub(super) async fn say(
        &mut self,
        from: Uuid,
        conv: Option<Uuid>,
        to: Option<Uuid>,
        text: &str,
    ) -> Value {
        send_text(self.ws(from), conv, to, text).await
    }

    pub(super) async fn drain_into(&mut self, seen: &mut HashMap<Uuid, Vec<Value>>) {
        for (user, ws) in self.socks.iter_mut() {
            seen.entry(*user)
                .or_default()
                .extend(ws.drain(Duration::ZERO).await);
        }
    }

    /// Lets pending events arrive and forgets them.
    pub(super) async fn settle(&mut self) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.drain_into(&mut HashMap::new()).await;
    }

    pub(super) fn online_key(&self, user: Uuid) -> String {
        format!("{}online:{user}", self.fx.c.env.prefix)
    }

    /// Someone other than `who` who writes in `who`'s conversation.
    pub(super) fn other_sender(&self, who: Who) -> Uuid {
        match who {
            Blocked => self.fx.partner,
            Owner => self.fx.user(Member),
            _ => self.fx.user(Owner),
        }
    }

    pub(super) async fn prepare(&mut self, kind: Kind, who: Who, n: usize) -> Cell {
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
            Kind::RecallOwn | Kind::EditOwn => {
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
                if kind == Kind::EditOwn {
                    self.fx.unrecall(mid).await;
                }
                cell.audience = cell.allowed.clone();
                cell.needles.push(mid.to_string());
                cell.mid = Some(mid);
                cell.frame = act(kind, mid, &marker);
            }
            Kind::RecallMembers | Kind::EditMembers => {
                let group = self.fx.group;
                let m = self
                    .say(self.fx.user(Member), Some(group), None, &marker)
                    .await;
                let mid = uuid_of(&m["id"]);
                cell.conversation = group;
                cell.allowed = self.fx.members(group);
                cell.audience = cell.allowed.clone();
                cell.frame = act(kind, mid, &marker);
                cell.needles = vec![group.to_string(), marker, mid.to_string()];
                cell.mid = Some(mid);
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
    pub(super) async fn effect(
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
            Kind::EditOwn | Kind::EditMembers => {
                let text = edited_text(&cell.marker);
                let stored = self.fx.edited_to(cell.mid.unwrap_or_default(), &text);
                let mut parts = vec![stored.await];
                parts.extend(each(
                    "message_edited",
                    &[("message_id", mid), ("content", json!(text))],
                ));
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
}
