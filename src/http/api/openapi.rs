//! The OpenAPI 3.1 document of every HTTP route, served at `GET /api/v1/openapi.json`.
//!
//! Each route is described here by hand ([`DOCS`]); a test checks that this list and the
//! route table name exactly the same routes, so a new route cannot go undocumented.
//! Schemas live in `openapi_components.json`; the `error` property of the error schema
//! lists every stable code, from [`Code::ALL`].

use std::sync::OnceLock;

use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use crate::error::Code;
use crate::http::response::{self, Resp};

/// How one route is documented.
pub struct Doc {
    /// HTTP method.
    pub method: Method,
    /// Canonical path (`/api/v1/...`, `/api/admin/...`, `:param` segments).
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Query parameters: (name, schema type, description).
    pub query: &'static [(&'static str, &'static str, &'static str)],
    /// Request body schema (a component name), if any.
    pub body: Option<&'static str>,
    /// `data` schema of the success envelope (a component name), or `None` for a message only.
    pub data: Option<&'static str>,
    /// Who may call it: "public", "user" or "admin".
    pub auth: &'static str,
    /// For an answer that is not an envelope but NDJSON: the schema of each line.
    pub lines: Option<&'static str>,
    /// More than the summary line, when the route needs it (the operation's description).
    pub note: Option<&'static str>,
}

const PAGING: [(&str, &str, &str); 2] = [
    (
        "limit",
        "integer",
        "1..100; the route's default when absent",
    ),
    (
        "offset",
        "integer",
        "0..10000 (invalid_offset past it; page far back in a history with before_seq)",
    ),
];

macro_rules! doc {
    ($m:ident $path:literal, $summary:literal, query: $q:expr, body: $b:expr, data: $d:expr, auth: $a:literal) => {
        doc!($m $path, $summary, query: $q, body: $b, data: $d, auth: $a, lines: None, note: None)
    };
    ($m:ident $path:literal, $summary:literal, query: $q:expr, body: $b:expr, data: $d:expr, auth: $a:literal, lines: $l:expr) => {
        doc!($m $path, $summary, query: $q, body: $b, data: $d, auth: $a, lines: $l, note: None)
    };
    ($m:ident $path:literal, $summary:literal, query: $q:expr, body: $b:expr, data: $d:expr, auth: $a:literal, note: $n:expr) => {
        doc!($m $path, $summary, query: $q, body: $b, data: $d, auth: $a, lines: None, note: $n)
    };
    ($m:ident $path:literal, $summary:literal, query: $q:expr, body: $b:expr, data: $d:expr, auth: $a:literal, lines: $l:expr, note: $n:expr) => {
        Doc {
            method: Method::$m,
            path: $path,
            summary: $summary,
            query: $q,
            body: $b,
            data: $d,
            auth: $a,
            lines: $l,
            note: $n,
        }
    };
}

/// The search-freshness bound (DECISIONS.md "search", README "HTTP API").
const SEARCH_FRESHNESS: &str = "Freshness: a message is found by any search made after its echo reached the sender (the messages the search index has not reached yet are read directly), so at the latest 1 s after the echo, under any load the node accepts. With DATABASE_READ_URL search reads the replica: add its replication lag. Terms shorter than 3 characters (too short for the trigram index; common two-character Chinese words) are answered, not refused, by a bounded scan: the newest 1000 indexed messages of each of the caller's 100 most recently active conversations (plus the not yet indexed tail); longer terms search the whole history.";

/// What the forward route says besides its summary.
const FORWARD_NOTE: &str = "For each conversation of conversation_ids, the caller sends one new message per message of message_ids, in the order given; each keeps the source's message_type, content and metadata and gains forwarded_from {message_id, sender_id, created_at}: the source's, or the one it carries when it is itself forwarded. Answers the new messages, conversation by conversation; their members get ordinary message events. The caller must be an active member of each source's conversation (403 not_member), the source not recalled (400 message_recalled; 404 message_not_found for an unknown id), and allowed to send to each target as for any send (403 not_member, blocked, first_message_limit; each new message counts against max_messages_per_second: 429 rate_limited with retry_after_ms). Everything is checked before anything is stored, and the messages are written in one transaction: a refusal stores none. Bad lists: 400 message_ids_required, conversation_ids_required, too_many_messages (over 50), too_many_conversations (over 20), duplicate_message_id, duplicate_conversation_id, invalid_message_id, invalid_conversation_id.";

/// Every route, documented.
#[rustfmt::skip]
/// What every pin and mute route says besides its summary.
const SETTINGS_NOTE: &str = "Active members only (403 not_member otherwise, former members too); no body. Answers the caller's settings now. A change (not a repeat) reaches every device of the caller, on any node, as the WebSocket event conversation_settings_update with the same data; nobody else sees a member's settings.";

/// What the edit route says besides its summary.
const EDIT_NOTE: &str = "The same rule and event as the WebSocket frame edit. Only the sender (403 not_sender), still an active member (403 not_member), of a text message (400 not_text_message) not recalled (400 message_recalled), at most edit_window_seconds after it was sent (setting, default 900; 0 turns editing off; 400 edit_window_passed); an unknown message is 404 message_not_found. The content is checked like a text message's (content_required, content_too_long, invalid_content). Answers the message as history shows it, with the new content and edited_at; every active member, on any node, gets the WebSocket event message_edited {conversation_id, message_id, content, edited_at}. History, export and search show the latest text only.";

pub static DOCS: &[Doc] = &[
    doc!(GET "/health", "Liveness: data.status = \"ok\"", query: &[], body: None, data: Some("Health"), auth: "public"),
    doc!(GET "/ready", "Readiness: 200 when PostgreSQL and Redis answer and the node is not draining, else 503", query: &[], body: None, data: Some("Ready"), auth: "public"),
    doc!(GET "/metrics", "Prometheus text exposition (not an envelope)", query: &[], body: None, data: None, auth: "public"),
    doc!(GET "/ws", "WebSocket upgrade; the token is checked before the upgrade (see the README for the protocol)", query: &[("token", "string", "a JWT"), ("ack", "string", "1 for acknowledged delivery")], body: None, data: None, auth: "public"),
    doc!(GET "/api/v1/openapi.json", "This document", query: &[], body: None, data: None, auth: "public"),
    doc!(POST "/api/v1/ws-token", "A short-lived WebSocket token (scope ws: opens /ws only; HTTP routes answer 401 to it) and the ws_url of the least-loaded live node", query: &[], body: None, data: Some("WsToken"), auth: "user"),
    doc!(POST "/api/v1/logout", "Closes every connection of the caller on every node", query: &[], body: None, data: None, auth: "user"),
    doc!(GET "/api/v1/conversations", "The caller's conversations: pinned ones first, newest activity first within each part (hidden ones left out); with total_unread over the ones not muted", query: &[PAGING[0], PAGING[1], ("search", "string", "private conversations whose partner's name or domain contains this")], body: None, data: Some("ConversationList"), auth: "user"),
    doc!(GET "/api/v1/conversations/search", "The caller's private conversations whose partner's name matches", query: &[("q", "string", "search term (or keyword)"), ("keyword", "string", "alias of q"), PAGING[0], PAGING[1]], body: None, data: Some("ConversationSearch"), auth: "user"),
    doc!(POST "/api/v1/conversations/private", "Get or create the private conversation with a user", query: &[], body: Some("PrivateRequest"), data: Some("PrivateResponse"), auth: "user"),
    doc!(POST "/api/v1/conversations/group", "Create a group; the caller becomes its owner. More members than the max_group_members setting (default 2000, owner included) is a 400 group_too_large", query: &[], body: Some("GroupRequest"), data: Some("Conversation"), auth: "user"),
    doc!(GET "/api/v1/conversations/:id/messages", "History, oldest to newest within the page; pages by offset, before_seq or after_seq", query: &[PAGING[0], PAGING[1], ("before_seq", "integer", "the page just before this seq"), ("after_seq", "integer", "the page just after this seq")], body: None, data: Some("History"), auth: "user"),
    doc!(POST "/api/v1/conversations/:id/hide", "Hide a conversation for the caller until its next message", query: &[], body: None, data: None, auth: "user"),
    doc!(POST "/api/v1/conversations/:id/pin", "Pin a conversation for the caller", query: &[], body: None, data: Some("ConversationSettings"), auth: "user", note: Some(SETTINGS_NOTE)),
    doc!(POST "/api/v1/conversations/:id/unpin", "Unpin a conversation for the caller", query: &[], body: None, data: Some("ConversationSettings"), auth: "user", note: Some(SETTINGS_NOTE)),
    doc!(POST "/api/v1/conversations/:id/mute", "Mute a conversation for the caller: left out of their total_unread", query: &[], body: None, data: Some("ConversationSettings"), auth: "user", note: Some(SETTINGS_NOTE)),
    doc!(POST "/api/v1/conversations/:id/unmute", "Unmute a conversation for the caller", query: &[], body: None, data: Some("ConversationSettings"), auth: "user", note: Some(SETTINGS_NOTE)),
    doc!(GET "/api/v1/conversations/:id/messages/:message_id/readers", "Group read status of a message: which members read it and which did not", query: &[], body: None, data: Some("Readers"), auth: "user", note: Some("From the members' read cursors (read = cursor at or past the message's seq), nothing stored per message. The sender, members who joined after the message and members who left are in neither list. 403 not_member for a non-member or former member, 404 message_not_found for a message not in this conversation, 403 read_receipts_disabled while enable_read_receipt is off.")),
    doc!(GET "/api/v1/conversations/:id/export", "Export the conversation as NDJSON, oldest first", query: &[("after_seq", "integer", "only messages after this seq (to resume)")], body: None, data: None, auth: "user", lines: Some("Message"), note: Some("One history item per line in seq order (recalled ones without content), up to the conversation's last seq when the export starts, streamed in constant memory. Active members only (403 not_member, as a JSON error, before any line). Cut short by a server failure, the response ends without its final chunk: resume with after_seq = the last seq received.")),
    doc!(POST "/api/v1/conversations/:id/members", "Add members to a group (owner or admin); past the max_group_members setting a 400 group_too_large that adds no one", query: &[], body: Some("MemberIds"), data: None, auth: "user"),
    doc!(POST "/api/v1/conversations/:id/members/remove", "Remove a member from a group (owner or admin; admins cannot remove admins)", query: &[], body: Some("UserIdRequest"), data: None, auth: "user"),
    doc!(POST "/api/v1/conversations/:id/leave", "Leave a group (the owner must hand over ownership first)", query: &[], body: None, data: None, auth: "user"),
    doc!(POST "/api/v1/conversations/:id/members/:user_id/role", "Change a member's role (owner only; making someone owner demotes the old owner to admin)", query: &[], body: Some("RoleRequest"), data: None, auth: "user"),
    doc!(POST "/api/v1/messages/:id/recall", "Recall one's own message within the recall window", query: &[], body: None, data: None, auth: "user"),
    doc!(POST "/api/v1/messages/:id/edit", "Edit the text of one's own text message within the edit window", query: &[], body: Some("EditRequest"), data: Some("Message"), auth: "user", note: Some(EDIT_NOTE)),
    doc!(POST "/api/v1/messages/forward", "Forward messages to conversations: every message, in order, to every conversation, all or nothing", query: &[], body: Some("ForwardRequest"), data: Some("MessageList"), auth: "user", note: Some(FORWARD_NOTE)),
    doc!(GET "/api/v1/messages/search", "Search the caller's active conversations, newest first", query: &[("q", "string", "search term (or keyword)"), ("keyword", "string", "alias of q"), ("conversation_id", "string", "only this conversation"), PAGING[0], PAGING[1]], body: None, data: Some("MessageList"), auth: "user", note: Some(SEARCH_FRESHNESS)),
    doc!(GET "/api/v1/notifications", "The caller's notifications, most important and newest first", query: &[PAGING[0], PAGING[1], ("unread_only", "string", "true for unread only")], body: None, data: Some("NotificationList"), auth: "user"),
    doc!(POST "/api/v1/notifications/read-all", "Mark every notification read", query: &[], body: None, data: None, auth: "user"),
    doc!(GET "/api/v1/notifications/:id", "One notification (marks it read)", query: &[], body: None, data: Some("NotificationDetail"), auth: "user"),
    doc!(POST "/api/v1/notifications/:id/read", "Mark one notification read", query: &[], body: None, data: None, auth: "user"),
    doc!(POST "/api/v1/notifications/:id/delete", "Delete one notification", query: &[], body: None, data: None, auth: "user"),
    doc!(POST "/api/v1/relationships/block", "Block a user", query: &[], body: Some("TargetRequest"), data: None, auth: "user"),
    doc!(POST "/api/v1/relationships/unblock", "Unblock a user", query: &[], body: Some("TargetRequest"), data: None, auth: "user"),
    doc!(GET "/api/v1/relationships/blocked", "Users the caller blocked, newest first", query: &[PAGING[0], PAGING[1]], body: None, data: Some("BlockedList"), auth: "user"),
    doc!(GET "/api/admin/settings", "Every system setting", query: &[], body: None, data: Some("Settings"), auth: "admin"),
    doc!(POST "/api/admin/settings/reload", "Re-read the settings on every node", query: &[], body: None, data: Some("MessageData"), auth: "admin"),
    doc!(POST "/api/admin/settings/:key", "Change a setting (typed; reaches every node within a second)", query: &[], body: Some("SettingRequest"), data: Some("SettingUpdated"), auth: "admin"),
    doc!(GET "/api/admin/notification-templates", "Every notification template", query: &[], body: None, data: Some("TemplateList"), auth: "admin"),
    doc!(POST "/api/admin/notification-templates", "Create a template", query: &[], body: Some("NotificationTemplate"), data: Some("TemplateDetail"), auth: "admin"),
    doc!(POST "/api/admin/notification-templates/init-defaults", "Insert the default templates that are missing", query: &[], body: None, data: None, auth: "admin"),
    doc!(POST "/api/admin/notification-templates/:id", "Update a template's fields", query: &[], body: Some("NotificationTemplate"), data: None, auth: "admin"),
    doc!(DELETE "/api/admin/notification-templates/:id", "Delete a template", query: &[], body: None, data: None, auth: "admin"),
    doc!(POST "/api/admin/notifications/batch-send", "Send a templated notification to users", query: &[], body: Some("BatchSendRequest"), data: Some("BatchSendResult"), auth: "admin"),
    doc!(GET "/api/admin/nodes", "The node registry", query: &[], body: None, data: Some("Nodes"), auth: "admin"),
    doc!(GET "/", "The web client's page, HTML (dev only: exists only with DEV_UI=1)", query: &[], body: None, data: None, auth: "public"),
    doc!(GET "/ui/app.js", "The web client's script (dev only: exists only with DEV_UI=1)", query: &[], body: None, data: None, auth: "public"),
    doc!(GET "/ui/style.css", "The web client's style sheet (dev only: exists only with DEV_UI=1)", query: &[], body: None, data: None, auth: "public"),
    doc!(POST "/api/dev/token", "A token for any user, admin when asked, valid 12 hours (dev only: exists only with DEV_UI=1)", query: &[], body: Some("DevTokenRequest"), data: Some("DevToken"), auth: "public"),
];

fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix(':'))
        .collect()
}

fn openapi_path(path: &str) -> String {
    path.split('/')
        .map(|s| match s.strip_prefix(':') {
            Some(p) => format!("{{{p}}}"),
            None => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn operation(d: &Doc) -> Value {
    let mut params: Vec<Value> = path_params(d.path)
        .into_iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    params.extend(d.query.iter().map(|(name, ty, desc)| {
        json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": ty}})
    }));
    let success = match d.data {
        Some(schema) => json!({"allOf": [
            {"$ref": "#/components/schemas/Envelope"},
            {"type": "object", "properties": {"data": {"$ref": format!("#/components/schemas/{schema}")}}}
        ]}),
        None => json!({"$ref": "#/components/schemas/Envelope"}),
    };
    let ok = match d.lines {
        Some(schema) => json!({"description": "success: one JSON object per line",
            "content": {"application/x-ndjson": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
        None => {
            json!({"description": "success", "content": {"application/json": {"schema": success}}})
        }
    };
    let mut op = json!({
        "summary": d.summary,
        "parameters": params,
        "responses": {
            "200": ok,
            "default": {"description": "an error envelope: code is the HTTP status, error a stable code",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        }
    });
    if let Some(body) = d.body {
        op["requestBody"] = json!({"required": true, "content": {"application/json": {
            "schema": {"$ref": format!("#/components/schemas/{body}")}}}});
    }
    op["security"] = match d.auth {
        "public" => json!([]),
        _ => json!([{"bearer": []}]),
    };
    if d.auth != "public" {
        op["responses"]["429"] = json!({
            "description": "rate_limited: the caller is over its HTTP request rate (HTTP_RATE_PER_SECOND, burst HTTP_RATE_BURST, per node); try again after Retry-After seconds",
            "headers": {"Retry-After": {"description": "whole seconds to wait", "schema": {"type": "integer", "minimum": 1}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        });
    }
    let served = if d.auth == "admin" {
        Some(
            "Admin only: a token with role \"admin\" or a user in ADMIN_USER_IDS; anyone else gets 403. Also served under /api/v1/admin.",
        )
    } else if d.path.starts_with("/api/v1/") {
        Some("Also served under /api (without v1).")
    } else {
        None
    };
    let description: Vec<&str> = d.note.into_iter().chain(served).collect();
    if !description.is_empty() {
        op["description"] = json!(description.join(" "));
    }
    op
}

/// The whole document.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut paths = serde_json::Map::new();
        for d in DOCS {
            let entry = paths
                .entry(openapi_path(d.path))
                .or_insert_with(|| json!({}));
            entry[d.method.as_str().to_lowercase()] = operation(d);
        }
        let mut components: Value =
            serde_json::from_str(include_str!("openapi_components.json"))
                .expect("openapi_components.json is valid JSON");
        components["schemas"]["Error"]["properties"]["error"]["enum"] =
            Code::ALL.iter().map(|c| c.as_str()).collect();
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "dinq-message",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "HTTP API of dinq-message, wire-compatible with dinq_message. Every answer is the envelope {code, message, data}."
            },
            "paths": paths,
            "components": components,
        })
    })
}

/// `GET /api/v1/openapi.json`.
pub fn serve() -> Resp {
    static BODY: OnceLock<Bytes> = OnceLock::new();
    let body =
        BODY.get_or_init(|| Bytes::from(serde_json::to_vec(document()).expect("serializable")));
    response::json(hyper::StatusCode::OK, body.to_vec())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::http::router::ROUTES;

    #[test]
    fn the_document_names_exactly_the_routes_of_the_table() {
        let table: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.template()))
            .collect();
        let documented: BTreeSet<(String, String)> = DOCS
            .iter()
            .map(|d| (d.method.to_string(), d.path.to_string()))
            .collect();
        assert_eq!(table, documented);
        for r in ROUTES {
            let doc = DOCS
                .iter()
                .find(|d| d.method == r.method && d.path == r.template())
                .unwrap();
            let expected = match r.access {
                crate::http::router::Access::Public => "public",
                crate::http::router::Access::User => "user",
                crate::http::router::Access::Admin => "admin",
            };
            assert_eq!(doc.auth, expected, "{} {}", r.method, r.template());
        }
    }

    #[test]
    fn every_referenced_schema_exists() {
        let doc = document();
        let text = doc.to_string();
        let schemas = &doc["components"]["schemas"];
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(
                schemas.get(&name).is_some(),
                "schema {name} is referenced but not defined"
            );
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/api/v1/conversations/{id}/messages"]["get"].is_object());
    }

    /// The keys a schema requires, sorted.
    fn required(schema: &str) -> Vec<String> {
        let mut keys: Vec<String> = document()["components"]["schemas"][schema]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema} lists its required keys"))
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        keys.sort();
        keys
    }

    fn keys(v: &Value) -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    #[test]
    fn pin_mute_readers_and_export_document_what_they_answer() {
        let paths = &document()["paths"];
        let ok = |path: &str, method: &str| paths[path][method]["responses"]["200"].clone();
        // The export's lines are history items, as NDJSON.
        let export = ok("/api/v1/conversations/{id}/export", "get");
        assert_eq!(
            export["content"]["application/x-ndjson"]["schema"]["$ref"],
            "#/components/schemas/Message"
        );
        assert!(export["content"].get("application/json").is_none());
        let params = &paths["/api/v1/conversations/{id}/export"]["get"]["parameters"];
        assert!(params.to_string().contains("after_seq"), "{params}");
        // Pin and mute answer the settings, in the shape of the event they push.
        for route in ["pin", "unpin", "mute", "unmute"] {
            let answer = ok(&format!("/api/v1/conversations/{{id}}/{route}"), "post");
            assert!(
                answer
                    .to_string()
                    .contains("#/components/schemas/ConversationSettings"),
                "{route}: {answer}"
            );
        }
        let event = crate::domain::events::conversation_settings_update(
            crate::model::ConversationId::new_v4(),
            true,
            false,
        );
        let event: Value = serde_json::from_slice(&event).unwrap();
        assert_eq!(event["type"], "conversation_settings_update");
        assert_eq!(keys(&event["data"]), required("ConversationSettings"));
        // Read status: the schema's keys are the answer's.
        let answer = ok(
            "/api/v1/conversations/{id}/messages/{message_id}/readers",
            "get",
        );
        assert!(answer.to_string().contains("#/components/schemas/Readers"));
        let user = crate::model::UserId::new_v4();
        let status = crate::domain::read_status::ReadStatus {
            read: vec![user],
            unread: vec![],
        };
        let shown = serde_json::to_value(super::super::shapes::Readers::of(&status)).unwrap();
        assert_eq!(keys(&shown), required("Readers"));
        assert_eq!(shown["read"], json!([{ "user_id": user }]));
        // The list documents total_unread and the item's flags.
        let list = &document()["components"]["schemas"];
        assert!(list["ConversationList"]["properties"]["total_unread"].is_object());
        let item = list["ConversationListItem"].to_string();
        assert!(
            item.contains("is_pinned") && item.contains("is_muted"),
            "{item}"
        );
    }

    #[test]
    fn edit_documents_its_body_answer_rules_and_event() {
        let op = &document()["paths"]["/api/v1/messages/{id}/edit"]["post"];
        assert!(
            op["requestBody"]
                .to_string()
                .contains("#/components/schemas/EditRequest"),
            "{op}"
        );
        assert!(
            op["responses"]["200"]
                .to_string()
                .contains("#/components/schemas/Message"),
            "{op}"
        );
        assert_eq!(required("EditRequest"), ["content"]);
        let message = &document()["components"]["schemas"]["Message"]["properties"];
        assert!(message["edited_at"].is_object());
        let described = op["description"].as_str().expect("a description");
        for code in [
            Code::NotSender,
            Code::NotMember,
            Code::NotTextMessage,
            Code::MessageRecalled,
            Code::EditWindowPassed,
            Code::MessageNotFound,
            Code::ContentRequired,
            Code::ContentTooLong,
        ] {
            assert!(described.contains(code.as_str()), "{code:?}: {described}");
        }
        // The event it names, with the keys it names.
        let m = crate::model::Message {
            id: crate::model::MessageId::new_v4(),
            conversation_id: crate::model::ConversationId::new_v4(),
            seq: 1,
            sender_id: crate::model::UserId::new_v4(),
            message_type: crate::model::MessageType::Text,
            content: Some("new".into()),
            metadata: None,
            reply_to_message_id: None,
            is_recalled: false,
            recalled_at: None,
            edited_at: Some(crate::model::Timestamp(7)),
            created_at: crate::model::Timestamp(1),
            client_msg_id: None,
            forwarded_from: None,
        };
        let event: Value =
            serde_json::from_slice(&crate::domain::events::message_edited(&m)).unwrap();
        assert_eq!(event["type"], "message_edited");
        assert_eq!(
            keys(&event["data"]),
            ["content", "conversation_id", "edited_at", "message_id"]
        );
        assert!(
            described.contains("message_edited {conversation_id, message_id, content, edited_at}")
        );
    }

    #[test]
    fn message_search_states_its_freshness_bound() {
        let described = document()["paths"]["/api/v1/messages/search"]["get"]["description"]
            .as_str()
            .expect("a description")
            .to_string();
        assert!(described.starts_with(SEARCH_FRESHNESS), "{described}");
        assert!(described.ends_with("Also served under /api (without v1)."));
        assert!(
            SEARCH_FRESHNESS.contains(&format!(
                "{} s after the echo",
                crate::tests::contract_gaps::SEARCH_FRESHNESS.as_secs()
            )),
            "the bound the contract test checks"
        );
    }

    #[tokio::test]
    async fn the_error_schema_lists_every_stable_code() {
        let body = serve().into_body();
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .unwrap()
            .to_bytes();
        let served: Value = serde_json::from_slice(&bytes).unwrap();
        let listed: Vec<&str> =
            served["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
                .as_array()
                .expect("an enum of codes")
                .iter()
                .map(|v| v.as_str().expect("a string"))
                .collect();
        for code in Code::ALL {
            assert!(
                listed.contains(&code.as_str()),
                "{} is not listed",
                code.as_str()
            );
        }
        assert_eq!(listed.len(), Code::ALL.len());
    }
}
