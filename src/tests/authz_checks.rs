//! The HTTP authorization matrix's per-cell work: [`prepare`] builds each cell's request
//! and what it needs, [`verify`] checks the call's effect (or its absence) in the database
//! and puts back what a successful call changed in the shared fixture.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use super::authz_setup::Fixture;
use super::authz_setup::Who::{self, *};
use super::realtime::uuid_of;
use super::ws_client::{Seen, Ws};
use crate::http::router::RouteId;

/// What one cell sends and acts on.
#[derive(Default)]
pub(super) struct Prep {
    pub(super) params: Vec<(&'static str, String)>,
    pub(super) query: String,
    pub(super) body: Option<Value>,
    /// The resource the cell acts on (a message, notification, user or template).
    subject: Option<Uuid>,
    /// A text unique to the cell.
    marker: String,
    /// Sockets watched by the logout cell: the caller's (if any), then a bystander's.
    sockets: Vec<Ws>,
}

/// Builds the request of one cell, creating what it needs (fresh targets, messages,
/// notifications, blocks) so no cell depends on another.
pub(super) async fn prepare(fx: &Fixture, id: RouteId, variant: &str, who: Who, n: usize) -> Prep {
    use RouteId as R;
    let marker = format!("authz-{n}");
    let me = fx.uid(who);
    let target = fx.target(who).to_string();
    let member = fx.user(Member);
    let mut p = Prep {
        marker: marker.clone(),
        ..Prep::default()
    };
    match id {
        R::Health | R::Ready | R::Metrics | R::WebSocket | R::OpenApi => {}
        R::DevPage | R::DevScript | R::DevStyle => {}
        R::DevToken => p.body = Some(json!({ "admin": true })),
        R::WsToken | R::AdminSettingsReload | R::AdminTemplatesInitDefaults => {
            p.body = Some(json!({}))
        }
        R::AdminSettingsList | R::AdminTemplatesList | R::AdminNodes => {}
        R::Logout => {
            for user in me.into_iter().chain([fx.partner]) {
                p.sockets.push(fx.c.connect(0, user).await);
            }
        }
        R::ConversationsList | R::NotificationsList => p.query = "?limit=100".into(),
        R::ConversationsSearch => p.query = "?q=authz".into(),
        R::ConversationPrivate => p.body = Some(json!({ "receiver_id": fx.partner })),
        R::ConversationGroup => p.body = Some(json!({"group_name": marker, "member_ids": []})),
        R::ConversationMessages
        | R::ConversationHide
        | R::ConversationLeave
        | R::ConversationPin
        | R::ConversationMute
        | R::ConversationExport => p.params.push(("id", target)),
        R::ConversationUnpin | R::ConversationUnmute => {
            // Set first (on any row of the caller's, a former member's too), so an
            // accepted call is seen to clear it and a refused one to leave it.
            if let Some(me) = me {
                let column = flag_column(id);
                let sql = format!(
                    "UPDATE conversation_members SET {column} = TRUE
                     WHERE conversation_id = $1 AND user_id = $2"
                );
                let conv = fx.target(who);
                fx.db.execute(&sql, &[&conv, &me]).await.unwrap();
            }
            p.params.push(("id", target))
        }
        R::MessageReaders => {
            // The group's message for the group, the partner's for the private one; or
            // one of the other conversation.
            let (own, other) = if who == Blocked {
                (fx.partner_msg, fx.group_msg)
            } else {
                (fx.group_msg, fx.partner_msg)
            };
            let m = if variant == "its own message" {
                own
            } else {
                other
            };
            p.params.push(("id", target));
            p.params.push(("message_id", m.to_string()));
            p.subject = Some(m);
        }
        R::MembersAdd => {
            let t = Uuid::new_v4();
            p.params.push(("id", target));
            p.subject = Some(t);
            p.body = Some(json!({ "member_ids": [t] }));
        }
        R::MembersRemove => {
            let t = match variant {
                "the owner" => fx.user(Owner),
                "another admin" => fx.join_new("admin").await,
                _ => fx.join_new("member").await,
            };
            p.params.push(("id", target));
            p.subject = Some(t);
            p.body = Some(json!({ "user_id": t }));
        }
        R::MemberRole => {
            let t = fx.join_new("member").await;
            p.params.push(("id", target));
            p.params.push(("user_id", t.to_string()));
            p.subject = Some(t);
            p.body = Some(json!({"role": "admin"}));
        }
        R::MessageRecall | R::MessageEdit => {
            let m = match (variant, who, me) {
                ("own message", Owner | Admin | Member, Some(me)) => {
                    uuid_of(&fx.say(me, Some(fx.group), None, &marker).await["id"])
                }
                ("own message", Outsider | Claim | Listed, Some(me)) => {
                    // Their own message lives in a private conversation of their own.
                    let to = Uuid::new_v4();
                    uuid_of(&fx.say(me, None, Some(to), &marker).await["id"])
                }
                ("own message", Former, _) => fx.former_msg,
                ("own message", Blocked, _) => fx.blocked_msg,
                ("own message", _, _) => fx.group_msg,
                _ => uuid_of(&fx.say(member, Some(fx.group), None, &marker).await["id"]),
            };
            if id == R::MessageEdit {
                fx.unrecall(m).await;
                p.body = Some(json!({ "content": edited_text(&marker) }));
            }
            p.params.push(("id", m.to_string()));
            p.subject = Some(m);
        }
        R::MessagesForward => {
            // The group's message to the group, the partner's to the private one; or the
            // other conversation's message there.
            let (own, other) = if who == Blocked {
                (fx.partner_msg, fx.group_msg)
            } else {
                (fx.group_msg, fx.partner_msg)
            };
            let m = if variant == "another conversation's message" {
                other
            } else {
                own
            };
            p.subject = Some(m);
            p.body = Some(json!({"message_ids": [m], "conversation_ids": [target]}));
        }
        R::MessagesSearch => {
            p.query = match variant {
                "everywhere" => "?q=authzword&limit=100".into(),
                _ => format!("?q=authzword&conversation_id={target}"),
            }
        }
        R::NotificationsReadAll => p.subject = Some(fx.note(member).await),
        R::NotificationGet | R::NotificationRead | R::NotificationDelete => {
            let owner = match variant {
                "own" => me.unwrap_or(member),
                _ => member,
            };
            let note = fx.note(owner).await;
            p.params.push(("id", note.to_string()));
            p.subject = Some(note);
        }
        R::Block => {
            let t = Uuid::new_v4();
            p.subject = Some(t);
            p.body = Some(json!({ "target_user_id": t }));
        }
        R::Unblock | R::BlockedList => {
            let t = if variant == "the blocker's block" {
                fx.user(Blocked)
            } else {
                let t = Uuid::new_v4();
                if let Some(me) = me {
                    fx.db
                        .execute(
                            "INSERT INTO user_relationships (user_id, target_user_id, relationship_type)
                             VALUES ($1, $2, 'blocked')",
                            &[&me, &t],
                        )
                        .await
                        .unwrap();
                }
                t
            };
            p.subject = Some(t);
            if id == R::Unblock {
                p.body = Some(json!({ "target_user_id": t }));
            } else {
                p.query = "?limit=100".into();
            }
        }
        R::AdminSettingsUpdate => {
            p.marker = (2000 + n).to_string();
            p.params.push(("key", "offline_max_per_connect".into()));
            p.body = Some(json!({ "value": p.marker }));
        }
        R::AdminTemplateCreate => p.body = Some(json!({"type": marker, "title": "authz"})),
        R::AdminTemplateUpdate => {
            let sql = "SELECT id FROM notification_templates WHERE type = 'system'";
            let t: Uuid = fx.value(sql, &[]).await.expect("the system template");
            p.params.push(("id", t.to_string()));
            p.subject = Some(t);
            p.body = Some(json!({ "description": marker }));
        }
        R::AdminTemplateDelete => {
            let sql = "INSERT INTO notification_templates (type, title) VALUES ($1, 'authz') RETURNING id";
            let t: Uuid = fx.value(sql, &[&marker]).await.unwrap();
            p.params.push(("id", t.to_string()));
            p.subject = Some(t);
        }
        R::AdminBatchSend => {
            p.body = Some(json!({
                "user_ids": [member], "template_type": "system",
                "template_vars": { "content": marker },
            }))
        }
    }
    p
}

/// The text an edit cell gives its message.
pub(super) fn edited_text(marker: &str) -> String {
    format!("{marker} edited")
}

/// The member column a pin or mute route sets.
fn flag_column(id: RouteId) -> &'static str {
    match id {
        RouteId::ConversationPin | RouteId::ConversationUnpin => "is_pinned",
        _ => "is_muted",
    }
}

fn items<'a>(data: &'a Value, key: &str) -> &'a [Value] {
    data[key].as_array().map_or(&[], Vec::as_slice)
}

fn ids(list: &[Value], field: &str) -> Vec<Uuid> {
    list.iter()
        .filter_map(|v| v[field].as_str())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Waits up to `window` for the server to close `ws`; its close code, if it did.
async fn closed_within(ws: &mut Ws, window: Duration) -> Option<u16> {
    let deadline = Instant::now() + window;
    loop {
        match ws
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Some(Seen::Event(_)) => continue,
            Some(Seen::Closed(code, _)) => return Some(code),
            Some(Seen::Gone) => return Some(1006),
            None => return None,
        }
    }
}

/// Checks what the call did (or did not do) and puts back what a successful call changed
/// in the shared fixture (hidden, left).
pub(super) async fn verify(
    fx: &Fixture,
    id: RouteId,
    variant: &str,
    who: Who,
    p: &mut Prep,
    answer: &(u16, Value),
) -> Vec<String> {
    use RouteId as R;
    let ok = answer.0 == 200;
    let data = &answer.1["data"];
    let me = fx.uid(who).unwrap_or_default();
    let (target, group) = (fx.target(who), fx.group);
    let s = p.subject.unwrap_or_default();
    let mark = p.marker.as_str();
    let member_sql = "SELECT left_at IS NULL FROM conversation_members
                      WHERE conversation_id = $1 AND user_id = $2";
    let note_sql = "SELECT is_read FROM notifications WHERE id = $1";
    // (what must hold, what it means)
    let checks: Vec<(bool, &str)> = match id {
        R::WsToken if ok => {
            let tokens = crate::auth::Tokens::new(&fx.c.env.secret, Default::default());
            let caller = tokens.verify(data["ws_token"].as_str().unwrap_or_default());
            let mine = caller.is_ok_and(|c| c.user_id == me.into() && !c.is_admin);
            vec![(mine, "a ws token of the caller, without admin rights")]
        }
        R::Logout => {
            let mut bystander = p.sockets.pop().expect("the bystander's socket");
            let mut checks = Vec::new();
            if let Some(mut mine) = p.sockets.pop() {
                let code = closed_within(&mut mine, Duration::from_secs(3)).await;
                checks.push((code == Some(1000), "the caller's devices closed with 1000"));
            }
            let code = closed_within(&mut bystander, Duration::from_millis(300)).await;
            bystander.close().await;
            checks.push((code.is_none(), "another user's device stays open"));
            checks
        }
        R::ConversationsList if ok => {
            let listed = ids(items(data, "conversations"), "id");
            vec![
                (
                    listed.contains(&group) == who.in_group(),
                    "the group listed to members only",
                ),
                (
                    listed.contains(&fx.private) == (who == Blocked),
                    "the private one too",
                ),
            ]
        }
        R::ConversationHide => {
            let sql = "SELECT hidden_seq IS NOT NULL FROM conversation_members
                       WHERE conversation_id = $1 AND user_id = $2";
            let hidden = fx.value(sql, &[&target, &me]).await.unwrap_or(false);
            let sql = "UPDATE conversation_members SET hidden_seq = NULL
                       WHERE conversation_id = $1 AND user_id = $2";
            fx.db.execute(sql, &[&target, &me]).await.unwrap();
            vec![(hidden == ok, "hidden exactly when 200")]
        }
        R::ConversationPin | R::ConversationUnpin | R::ConversationMute | R::ConversationUnmute => {
            let column = flag_column(id);
            let sql = format!(
                "SELECT COALESCE({column}, FALSE) FROM conversation_members
                 WHERE conversation_id = $1 AND user_id = $2"
            );
            let set: Option<bool> = fx.value(&sql, &[&target, &me]).await;
            let sets = matches!(id, R::ConversationPin | R::ConversationMute);
            let reset = format!(
                "UPDATE conversation_members SET {column} = FALSE
                 WHERE conversation_id = $1 AND user_id = $2"
            );
            fx.db.execute(&reset, &[&target, &me]).await.unwrap();
            let answered =
                !ok || (data["conversation_id"] == json!(target) && data[column] == sets);
            vec![
                (
                    (set == Some(sets)) == ok,
                    "the caller's flag changed exactly when 200",
                ),
                (answered, "the answer shows the flag as set"),
            ]
        }
        R::MessageReaders if ok => {
            let read = ids(items(data, "read"), "user_id");
            let unread = ids(items(data, "unread"), "user_id");
            let sender = if target == fx.private {
                fx.partner
            } else {
                fx.user(Owner)
            };
            let listed: Vec<Uuid> = read.iter().chain(&unread).copied().collect();
            let members = fx.members(target);
            vec![
                (!listed.contains(&sender), "the sender left out"),
                (
                    listed.iter().all(|u| members.contains(u)),
                    "only members of that conversation",
                ),
                (
                    me == sender || listed.contains(&me),
                    "the caller listed (unless the sender)",
                ),
                (
                    data["read_count"] == read.len() && data["unread_count"] == unread.len(),
                    "counts match the lists",
                ),
            ]
        }
        R::ConversationLeave if ok => {
            let left = fx.value(member_sql, &[&target, &me]).await == Some(false);
            fx.join(me, if who == Admin { "admin" } else { "member" })
                .await;
            vec![(left, "the caller left")]
        }
        R::MembersAdd => {
            let active = fx.value(member_sql, &[&group, &s]).await == Some(true);
            vec![(active == ok, "joined exactly when 200")]
        }
        R::MembersRemove => {
            let active = fx.value(member_sql, &[&group, &s]).await == Some(true);
            vec![(active != ok, "removed exactly when 200")]
        }
        R::MemberRole => {
            let sql = "SELECT role = 'admin' FROM conversation_members
                       WHERE conversation_id = $1 AND user_id = $2";
            let admin = fx.value(sql, &[&group, &s]).await == Some(true);
            vec![(admin == ok, "promoted exactly when 200")]
        }
        R::MessageRecall => vec![(fx.recalled(s).await == ok, "recalled exactly when 200")],
        R::MessageEdit => {
            let text = edited_text(mark);
            let answered = !ok || (data["id"] == json!(s) && data["content"] == text.as_str());
            vec![
                (
                    fx.edited_to(s, &text).await == ok,
                    "edited exactly when 200",
                ),
                (answered, "the answer is the edited message"),
            ]
        }
        R::MessagesForward => {
            let sql = "SELECT count(*) FROM messages
                       WHERE forwarded_message_id = $1 AND sender_id = $2 AND conversation_id = $3";
            let copies: i64 = fx.value(sql, &[&s, &me, &target]).await.unwrap_or(0);
            let answered = !ok || data["messages"][0]["forwarded_from"]["message_id"] == json!(s);
            vec![
                (copies == i64::from(ok), "one copy stored exactly when 200"),
                (answered, "the answer is the copy"),
            ]
        }
        R::MessagesSearch if ok && variant == "everywhere" => {
            let found = ids(items(data, "messages"), "id");
            let in_group = who.in_group();
            vec![
                (
                    found.contains(&fx.group_msg) == in_group,
                    "group messages: members only",
                ),
                (
                    found.contains(&fx.former_msg) == in_group,
                    "group messages: members only",
                ),
                (
                    found.contains(&fx.partner_msg) == (who == Blocked),
                    "private: members only",
                ),
            ]
        }
        R::MessagesSearch if ok => {
            let convs = ids(items(data, "messages"), "conversation_id");
            let only = !convs.is_empty() && convs.iter().all(|c| *c == target);
            vec![(only, "messages of that conversation only")]
        }
        R::NotificationsList if ok => {
            let list = items(data, "notifications");
            let listed = ids(list, "id").contains(&fx.member_note);
            vec![
                (
                    ids(list, "user_id").iter().all(|u| *u == me),
                    "the caller's only",
                ),
                (
                    listed == (who == Member),
                    "the member's listed to the member only",
                ),
            ]
        }
        R::NotificationsReadAll => {
            let read = fx.value(note_sql, &[&s]).await == Some(who == Member && ok);
            vec![(read, "the member's marked read by the member only")]
        }
        R::NotificationGet | R::NotificationRead => {
            let read = fx.value(note_sql, &[&s]).await == Some(ok);
            let shown = id == R::NotificationRead || !ok || data["notification"]["id"] == json!(s);
            vec![
                (read, "read exactly when 200"),
                (shown, "the one asked for"),
            ]
        }
        R::NotificationDelete => {
            let gone = fx.value::<bool>(note_sql, &[&s]).await.is_none();
            vec![(gone == ok, "deleted exactly when 200")]
        }
        R::Block => {
            let sql = "SELECT user_id FROM user_relationships WHERE target_user_id = $1";
            let rows = fx.db.query(sql, &[&s]).await.unwrap();
            let by: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
            vec![(
                by == if ok { vec![me] } else { vec![] },
                "blocked by the caller when 200",
            )]
        }
        R::Unblock if variant == "own block" => {
            let kept = fx.blocks(me, s).await;
            vec![(
                kept == (fx.uid(who).is_some() && !ok),
                "unblocked exactly when 200",
            )]
        }
        R::Unblock => {
            let kept = fx.blocks(fx.partner, fx.user(Blocked)).await;
            vec![(kept, "the blocker's block stays")]
        }
        R::BlockedList if ok => {
            let list = items(data, "blocked_users");
            vec![
                (
                    ids(list, "user_id").iter().all(|u| *u == me),
                    "the caller's only",
                ),
                (
                    ids(list, "target_user_id").contains(&s),
                    "the caller's block listed",
                ),
            ]
        }
        R::AdminSettingsUpdate => {
            let sql = "SELECT setting_value = $1 FROM system_settings
                       WHERE setting_key = 'offline_max_per_connect'";
            let set = fx.value(sql, &[&mark]).await == Some(true);
            vec![(set == ok, "changed exactly when 200")]
        }
        R::AdminTemplateCreate => {
            let sql = "SELECT count(*) > 0 FROM notification_templates WHERE type = $1";
            vec![(
                fx.value(sql, &[&mark]).await == Some(ok),
                "created exactly when 200",
            )]
        }
        R::AdminTemplateUpdate => {
            let sql = "SELECT description = $2 FROM notification_templates WHERE id = $1";
            let set = fx.value(sql, &[&s, &mark]).await.flatten() == Some(true);
            vec![(set == ok, "updated exactly when 200")]
        }
        R::AdminTemplateDelete => {
            let sql = "SELECT count(*) > 0 FROM notification_templates WHERE id = $1";
            vec![(
                fx.value(sql, &[&s]).await == Some(!ok),
                "deleted exactly when 200",
            )]
        }
        R::AdminBatchSend => {
            let sql = "SELECT count(*) FROM notifications WHERE user_id = $1 AND content = $2";
            let sent: Option<i64> = fx.value(sql, &[&fx.user(Member), &mark]).await;
            vec![(
                sent == Some(i64::from(ok)),
                "sent to the member exactly when 200",
            )]
        }
        _ => Vec::new(),
    };
    checks
        .into_iter()
        .filter(|(holds, _)| !holds)
        .map(|(_, what)| format!("expected: {what}"))
        .collect()
}
