//! The authorization matrix over WebSocket (issue 7 item 3): every client frame
//! (`message`, `typing`, `read`, `recall`, `edit`, `set_current_conversation`, `ack`,
//! `heartbeat`)
//! sent by every kind of caller of `authz` on a real node. Each cell states the `error`
//! code the caller must get, or the effect that must happen (delivered to the members,
//! typing or receipt shown, recalled, edited, viewing, delivery cursor stored, presence
//! refreshed),
//! or that the frame is ignored; and in every cell nobody outside the conversation
//! concerned hears anything of it (DECISIONS.md "members who left get nothing").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::authz::{EVERYONE, Matrix, Who};
use super::authz_ws_room::Room;
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
        Request::Edit { .. } => "edit",
        Request::SetCurrentConversation(_) => "set_current_conversation",
        Request::Ack { .. } => "ack",
    }
}

/// Every client frame type; each needs at least one row.
const FRAME_TYPES: [&str; 8] = [
    "message",
    "typing",
    "read",
    "recall",
    "edit",
    "set_current_conversation",
    "ack",
    "heartbeat",
];

/// One row of the matrix: a frame, and what it acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
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
    /// Editing a message the caller sent.
    EditOwn,
    /// Editing a fresh message of the member.
    EditMembers,
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
            Kind::EditOwn | Kind::EditMembers => "edit",
            Kind::Viewing => "set_current_conversation",
            Kind::Ack => "ack",
            Kind::Heartbeat => "heartbeat",
        }
    }

    fn name(self) -> String {
        let variant = match self {
            Kind::Message => " (conversation_id)",
            Kind::MessageToPartner => " (receiver_id = the blocker)",
            Kind::RecallOwn | Kind::EditOwn => " (own message)",
            Kind::RecallMembers | Kind::EditMembers => " (member's message)",
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
    (Kind::EditOwn, "edited", [D, D, D, NM, D, D, D, D, NO]),
    (Kind::EditMembers, "edited", [NS, NS, D, NS, NS, NS, NS, NS, NO]),
    (Kind::Viewing, "viewing", [D, D, D, IG, IG, D, IG, IG, NO]),
    (Kind::Ack, "cursor stored", [D, D, D, IG, IG, D, IG, IG, NO]),
    (Kind::Heartbeat, "online", [D, D, D, D, D, D, D, D, NO]),
];

impl Room {
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
