//! Message routes: recall and edit (the same rules and events as over WebSocket), forward
//! and search.

use std::str::FromStr;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{Code, Error, Result};
use crate::http::response::Resp;
use crate::http::{Call, Ctx};
use crate::model::{ConversationId, MessageId};

/// `POST /api/v1/messages/:id/recall`: the same rule and events as the WebSocket `recall`.
pub async fn recall(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let id = crate::http::params::path_uuid(&call, "id", "Invalid message ID")?;
    ctx.services.recall(caller.user_id, id).await?;
    Ok(crate::http::response::ok_message(
        "Message recalled successfully",
    ))
}

#[derive(Deserialize)]
struct EditBody {
    content: Option<String>,
}

/// `POST /api/v1/messages/:id/edit` `{content}`: the same rule and event as the WebSocket
/// `edit`; answers the message as history shows it.
pub async fn edit(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let id = crate::http::params::path_uuid(&call, "id", "Invalid message ID")?;
    let b: EditBody = crate::http::body::json(call.req.into_body()).await?;
    let edited = ctx
        .services
        .edit(caller.user_id, id, b.content.as_deref())
        .await?;
    Ok(crate::http::response::ok(
        crate::domain::events::MessageObject::from(&edited),
    ))
}

/// The ids of the array `field` of `body` (absent or null: none). Anything but an array
/// is `invalid_body`; an element that is not an id is `code`, naming its place.
fn ids<T: FromStr>(body: &Map<String, Value>, field: &str, code: Code) -> Result<Vec<T>> {
    let items = match body.get(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(Error::invalid_body(format!(
                "invalid request body: {field} must be an array of ids"
            )));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| Error::bad_request(code, format!("{field}[{i}] is not a valid id")))
        })
        .collect()
}

/// `POST /api/v1/messages/forward` with `{"message_ids": [...], "conversation_ids": [...]}`:
/// every message, in order, to every conversation, all or nothing; answers the new
/// messages (history items with `forwarded_from`). Each counts against the caller's send
/// rate (`max_messages_per_second`), like a `message` frame.
pub async fn forward(ctx: &Ctx, call: Call) -> Result<Resp> {
    let received = Instant::now();
    let caller = call.caller()?;
    let body = match crate::http::body::json::<Value>(call.req.into_body()).await? {
        Value::Object(m) => m,
        _ => {
            return Err(Error::invalid_body(
                "invalid request body: a JSON object is required",
            ));
        }
    };
    let sources: Vec<MessageId> = ids(&body, "message_ids", Code::InvalidMessageId)?;
    let targets: Vec<ConversationId> = ids(&body, "conversation_ids", Code::InvalidConversationId)?;
    let user = caller.user_id;
    let limit = ctx.services.settings().max_messages_per_second;
    let sent = ctx
        .services
        .forward(user, &sources, &targets, received, |n| {
            ctx.hub
                .allow_sends(user, n as u64, limit)
                .map_err(|wait| Error::rate_limited(limit, wait))
        })
        .await?;
    let messages: Vec<crate::domain::events::MessageObject<'_>> =
        sent.iter().map(Into::into).collect();
    Ok(crate::http::response::ok(
        serde_json::json!({ "messages": messages }),
    ))
}

/// `GET /api/v1/messages/search?q=…[&conversation_id][&limit][&offset]`: newest first,
/// only in conversations the caller is an active member of.
pub async fn search(ctx: &Ctx, call: Call) -> Result<Resp> {
    use crate::http::params::Query;
    let caller = call.caller()?;
    let q = Query::of(&call);
    let term = q
        .text(&["q", "keyword"])
        .ok_or_else(|| Error::bad_request(Code::MissingQuery, "q or keyword is required"))?;
    let conversation = match q.get("conversation_id").map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(v.parse::<crate::model::ConversationId>().map_err(|_| {
            Error::bad_request(Code::InvalidConversationId, "Invalid conversation_id")
        })?),
    };
    let (limit, offset) = (q.limit(50)?, q.offset()?);
    let found = ctx
        .services
        .search_messages(caller.user_id, &term, conversation, limit, offset)
        .await?;
    let messages: Vec<crate::domain::events::MessageObject<'_>> =
        found.iter().map(Into::into).collect();
    Ok(crate::http::response::ok(
        serde_json::json!({ "messages": messages }),
    ))
}
