//! The authorization matrix (issue 7 item 3): every HTTP route of the route table
//! (`ROUTES`, iterated, so a route without a matrix row fails the test) tried as every kind
//! of caller against a real node, real PostgreSQL and Redis, and each answer asserted
//! exactly (status and `error` code), with the effect checked in the database: a refused
//! call changes nothing, an accepted one does what it says, and routes on "the caller's
//! own" resources (notifications, blocks, logout, ws-token) never reach another user's.
//! The WebSocket frames' matrix is in `authz_ws`; both share the fixture and table printer
//! of `authz_setup`, and each cell's preparation and effect checks are in `authz_checks`.
//! Expectations follow DECISIONS.md (admins, groups, blocking, members who left).

use serde_json::{Value, json};

use super::authz_checks::{prepare, verify};
pub use super::authz_setup::{EVERYONE, Fixture, Matrix, Who};
use super::ws_client::Ws;
use crate::http::router::{ROUTES, RouteId};

/// The expected answer of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// 200 (101 for the WebSocket handshake), no `error`.
    Ok,
    /// This status, with the envelope's `code` equal to it, and this `error` code.
    Err(u16, &'static str),
}

const OK: Want = Want::Ok;
const ANON: Want = Want::Err(401, "missing_authorization");
const NOT_ADMIN: Want = Want::Err(403, "admin_required");
const NM: Want = Want::Err(403, "not_member");
const NG: Want = Want::Err(403, "not_group");
const NOA: Want = Want::Err(403, "not_owner_or_admin");
const NOT_OWNER: Want = Want::Err(403, "not_owner");
const NO_ADMIN_REMOVAL: Want = Want::Err(403, "cannot_remove_admin");
const NO_OWNER_REMOVAL: Want = Want::Err(403, "cannot_remove_owner");
const NS: Want = Want::Err(403, "not_sender");
const NF: Want = Want::Err(404, "notification_not_found");
const NB: Want = Want::Err(404, "not_blocked");
const MNF: Want = Want::Err(404, "message_not_found");

/// Public routes: anyone, with a token or without.
const PUBLIC: [Want; 9] = [OK; 9];
/// The web client's routes answer like unknown ones when `DEV_UI` is off (the default).
const DEV_OFF: [Want; 9] = [Want::Err(404, "route_not_found"); 9];
/// Any valid token.
const USERS: [Want; 9] = [OK, OK, OK, OK, OK, OK, OK, OK, ANON];
/// Active members of the caller's conversation (the blocked user's is the private one).
const MEMBERS: [Want; 9] = [OK, OK, OK, NM, NM, OK, NM, NM, ANON];
/// Admins only (DECISIONS.md "admin"): every plain user is refused.
const ADMINS: [Want; 9] = [
    NOT_ADMIN, NOT_ADMIN, NOT_ADMIN, NOT_ADMIN, NOT_ADMIN, NOT_ADMIN, OK, OK, ANON,
];

/// Every route (with variants where the target matters) and what each principal gets, in
/// the order of [`EVERYONE`]: owner, group admin, member, former member, outsider, blocked,
/// admin claim, ADMIN_USER_IDS, no token.
#[rustfmt::skip]
const HTTP: &[(RouteId, &str, [Want; 9])] = {
    use RouteId as R;
    &[
        (R::Health, "", PUBLIC),
        (R::Ready, "", PUBLIC),
        (R::Metrics, "", PUBLIC),
        (R::WebSocket, "handshake", [OK, OK, OK, OK, OK, OK, OK, OK, Want::Err(401, "missing_token")]),
        (R::OpenApi, "", PUBLIC),
        (R::WsToken, "for oneself", USERS),
        (R::Logout, "own devices only", USERS),
        (R::ConversationsList, "", USERS),
        (R::ConversationsSearch, "", USERS),
        (R::ConversationPrivate, "with the blocker", USERS),
        (R::ConversationGroup, "", USERS),
        (R::ConversationMessages, "", MEMBERS),
        (R::ConversationHide, "", MEMBERS),
        (R::ConversationPin, "", MEMBERS),
        (R::ConversationUnpin, "", MEMBERS),
        (R::ConversationMute, "", MEMBERS),
        (R::ConversationUnmute, "", MEMBERS),
        (R::MessageReaders, "its own message", MEMBERS),
        (R::MessageReaders, "another conversation's message", [MNF, MNF, MNF, NM, NM, MNF, NM, NM, ANON]),
        (R::ConversationExport, "", MEMBERS),
        (R::MembersAdd, "a new user", [OK, OK, NOA, NM, NM, NG, NM, NM, ANON]),
        (R::MembersRemove, "a member", [OK, OK, NOA, NM, NM, NG, NM, NM, ANON]),
        (R::MembersRemove, "another admin", [OK, NO_ADMIN_REMOVAL, NOA, NM, NM, NG, NM, NM, ANON]),
        (R::MembersRemove, "the owner", [NO_OWNER_REMOVAL, NO_OWNER_REMOVAL, NOA, NM, NM, NG, NM, NM, ANON]),
        (R::ConversationLeave, "", [Want::Err(403, "owner_cannot_leave"), OK, OK, NM, NM, NG, NM, NM, ANON]),
        (R::MemberRole, "member to admin", [OK, NOT_OWNER, NOT_OWNER, NM, NM, NG, NM, NM, ANON]),
        (R::MessageRecall, "own message", [OK, OK, OK, NM, OK, OK, OK, OK, ANON]),
        (R::MessageRecall, "member's message", [NS, NS, OK, NS, NS, NS, NS, NS, ANON]),
        (R::MessageEdit, "own message", [OK, OK, OK, NM, OK, OK, OK, OK, ANON]),
        (R::MessageEdit, "member's message", [NS, NS, OK, NS, NS, NS, NS, NS, ANON]),
        (R::MessagesForward, "its conversation's message there", [OK, OK, OK, NM, NM, Want::Err(403, "blocked"), NM, NM, ANON]),
        (R::MessagesForward, "another conversation's message", [NM, NM, NM, NM, NM, NM, NM, NM, ANON]),
        (R::MessagesSearch, "everywhere", USERS),
        (R::MessagesSearch, "in the conversation", MEMBERS),
        (R::NotificationsList, "", USERS),
        (R::NotificationsReadAll, "", USERS),
        (R::NotificationGet, "own", USERS),
        (R::NotificationGet, "member's", [NF, NF, OK, NF, NF, NF, NF, NF, ANON]),
        (R::NotificationRead, "own", USERS),
        (R::NotificationRead, "member's", [NF, NF, OK, NF, NF, NF, NF, NF, ANON]),
        (R::NotificationDelete, "own", USERS),
        (R::NotificationDelete, "member's", [NF, NF, OK, NF, NF, NF, NF, NF, ANON]),
        (R::Block, "a new user", USERS),
        (R::Unblock, "own block", USERS),
        (R::Unblock, "the blocker's block", [NB, NB, NB, NB, NB, NB, NB, NB, ANON]),
        (R::BlockedList, "", USERS),
        (R::AdminSettingsList, "", ADMINS),
        (R::AdminSettingsReload, "", ADMINS),
        (R::AdminSettingsUpdate, "", ADMINS),
        (R::AdminTemplatesList, "", ADMINS),
        (R::AdminTemplateCreate, "", ADMINS),
        (R::AdminTemplatesInitDefaults, "", ADMINS),
        (R::AdminTemplateUpdate, "", ADMINS),
        (R::AdminTemplateDelete, "", ADMINS),
        (R::AdminBatchSend, "", ADMINS),
        (R::AdminNodes, "", ADMINS),
        (R::DevPage, "DEV_UI off", DEV_OFF),
        (R::DevScript, "DEV_UI off", DEV_OFF),
        (R::DevStyle, "DEV_UI off", DEV_OFF),
        (R::DevToken, "DEV_UI off", DEV_OFF),
    ]
};

/// The WebSocket route: a real handshake with a token, a plain GET without one.
async fn handshake(fx: &Fixture, who: Who) -> (u16, Value) {
    match (fx.uid(who), fx.token(who)) {
        (Some(user), Some(token)) => match Ws::connect(fx.c.nodes[0].addr, &token, user).await {
            Ok(ws) => {
                ws.close().await;
                (101, Value::Null)
            }
            Err(e) => (0, json!({ "error": e.to_string() })),
        },
        _ => fx.call(who, "GET", "/ws", None).await,
    }
}

/// `template` with its `:name` segments filled in.
fn fill(template: &str, params: &[(&'static str, String)]) -> String {
    template
        .split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => params
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no value for :{name} in {template}")),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn shown(a: &(u16, Value)) -> String {
    match a.1.get("error").and_then(Value::as_str) {
        Some(code) => format!("{} {code}", a.0),
        None => a.0.to_string(),
    }
}

fn matches(want: Want, ok_status: u16, a: &(u16, Value)) -> bool {
    match want {
        // Envelopes say code 0; /metrics and /openapi.json are not envelopes.
        Want::Ok => {
            a.0 == ok_status && a.1.get("error").is_none() && a.1.get("code").is_none_or(|c| c == 0)
        }
        Want::Err(status, code) => a.0 == status && a.1["code"] == status && a.1["error"] == code,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_as_every_caller() {
    let fx = Fixture::new().await;
    let mut m = Matrix::new(
        "HTTP authorization matrix: route × caller → status and error code",
        vec![
            "Group: owner, group admin, member, former member (left). The blocked user's private partner has blocked them;".into(),
            "conversation routes act on the group, except for the blocked user (their private conversation).".into(),
            "On admin routes owner..blocked are the non-admins. ✗ = not as expected.".into(),
        ],
    );
    for (id, variant, _) in HTTP {
        if !ROUTES.iter().any(|r| r.id == *id) {
            m.problem(format!(
                "matrix row {id:?} {variant} names no route of ROUTES"
            ));
        }
    }
    let mut n = 0;
    for route in ROUTES {
        let name = format!("{} {}", route.method, route.template());
        let rows: Vec<_> = HTTP.iter().filter(|r| r.0 == route.id).collect();
        if rows.is_empty() {
            m.problem(format!("{name}: no row in the authorization matrix"));
        }
        let ok_status = if route.id == RouteId::WebSocket {
            101
        } else {
            200
        };
        for (id, variant, wants) in rows {
            let row = if variant.is_empty() {
                name.clone()
            } else {
                format!("{name} ({variant})")
            };
            let mut cells = Vec::new();
            for (who, want) in EVERYONE.iter().zip(wants) {
                n += 1;
                let mut p = prepare(&fx, *id, variant, *who, n).await;
                let path = format!("{}{}", fill(&route.template(), &p.params), p.query);
                let answer = if *id == RouteId::WebSocket {
                    handshake(&fx, *who).await
                } else {
                    fx.call(*who, route.method.as_str(), &path, p.body.as_ref())
                        .await
                };
                let mut problems = Vec::new();
                if !matches(*want, ok_status, &answer) {
                    let wanted = match want {
                        Want::Ok => ok_status.to_string(),
                        Want::Err(s, c) => format!("{s} {c}"),
                    };
                    let body: String = answer.1.to_string().chars().take(200).collect();
                    problems.push(format!("want {wanted} ({body})"));
                }
                problems.extend(verify(&fx, *id, variant, *who, &mut p, &answer).await);
                cells.push(m.cell(&row, *who, shown(&answer), problems));
            }
            m.row(row, cells);
        }
    }
    fx.c.stop().await;
    m.finish();
}
