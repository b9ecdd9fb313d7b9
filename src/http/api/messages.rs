//! Message routes: recall and edit (the same rules and events as over WebSocket) and
//! search.

use serde::Deserialize;

use crate::error::{Code, Error, Result};
use crate::http::response::Resp;
use crate::http::{Call, Ctx};

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
