//! Conversation routes (PROTOCOL.md §3.3): the list, the partner-name search, private
//! get-or-create, group creation, history and hiding; and (issue 19) pin and mute, group
//! read status and the NDJSON export. Thin: parameters in, domain call, wire shape out.

use hyper::header::{CACHE_CONTROL, CONTENT_DISPOSITION, HeaderValue};
use serde::Deserialize;
use serde_json::json;

use super::shapes::{ConversationObject, HistoryPage, ListItem, Readers, SearchItem};
use crate::domain::member_settings::Setting;
use crate::error::{Code, Error, Result};
use crate::http::params::{Query, path_uuid};
use crate::http::response::{self, Resp};
use crate::http::{Call, Ctx, body};
use crate::model::{ConversationId, Page, UserId};

/// `GET /conversations[?search=…]`.
pub async fn list(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let q = Query::of(&call);
    let (limit, offset) = (q.limit(20)?, q.offset()?);
    let search = q.text(&["search"]);
    let page = ctx
        .services
        .conversation_list(caller.user_id, limit, offset, search.as_deref())
        .await?;
    let items: Vec<ListItem<'_>> = page.conversations.iter().map(ListItem::of).collect();
    Ok(response::ok(json!({
        "conversations": items,
        "total_unread": page.total_unread,
    })))
}

/// `GET /conversations/search?q=…`.
pub async fn search(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let q = Query::of(&call);
    let term = q
        .text(&["q", "keyword"])
        .ok_or_else(|| Error::bad_request(Code::MissingQuery, "q or keyword is required"))?;
    let (limit, offset) = (q.limit(50)?, q.offset()?);
    let (found, total) = ctx
        .services
        .search_private_conversations(caller.user_id, &term, limit, offset)
        .await?;
    let items: Vec<SearchItem<'_>> = found.iter().map(SearchItem::of).collect();
    Ok(response::ok(
        json!({ "conversations": items, "total": total }),
    ))
}

#[derive(Deserialize)]
struct PrivateBody {
    receiver_id: UserId,
}

/// `POST /conversations/private`.
pub async fn create_private(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let b: PrivateBody = body::json(call.req.into_body()).await?;
    let (listed, created) = ctx
        .services
        .open_private_conversation(caller.user_id, b.receiver_id)
        .await?;
    Ok(response::ok(json!({
        "conversation": ListItem::of(&listed),
        "is_newly_created": created,
    })))
}

#[derive(Deserialize)]
struct GroupBody {
    group_name: String,
    member_ids: Vec<UserId>,
}

/// `POST /conversations/group`.
pub async fn create_group(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let b: GroupBody = body::json(call.req.into_body()).await?;
    let created = ctx
        .services
        .create_group(caller.user_id, &b.group_name, &b.member_ids)
        .await?;
    Ok(response::ok(ConversationObject::new_group(
        created.id,
        &b.group_name,
        created.created_at,
    )))
}

/// `GET /conversations/:id/messages[?limit&offset|before_seq|after_seq]`.
pub async fn history(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let id = path_uuid(&call, "id", "invalid conversation id")?;
    let q = Query::of(&call);
    let limit = q.limit(50)?;
    let offset = q.offset()?;
    let page = match (q.seq("before_seq")?, q.seq("after_seq")?) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_request(
                Code::InvalidSeq,
                "before_seq and after_seq cannot be combined",
            ));
        }
        (Some(before), None) => Page::Before(before),
        (None, Some(after)) => Page::After(after),
        (None, None) => Page::Newest { offset },
    };
    let h = ctx
        .services
        .conversation_history(caller.user_id, id, page, limit)
        .await?;
    Ok(response::ok(HistoryPage::of(&h)))
}

/// `POST /conversations/:id/hide`.
pub async fn hide(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let id = path_uuid(&call, "id", "invalid conversation id")?;
    ctx.services.hide_conversation(caller.user_id, id).await?;
    Ok(response::ok_message("conversation hidden successfully"))
}

/// `POST /conversations/:id/pin`, `/unpin`, `/mute` and `/unmute`.
pub async fn setting(ctx: &Ctx, call: Call, setting: Setting) -> Result<Resp> {
    let caller = call.caller()?;
    let id = path_uuid(&call, "id", "invalid conversation id")?;
    let flags = ctx
        .services
        .change_member_setting(caller.user_id, id, setting)
        .await?;
    Ok(response::ok(json!({
        "conversation_id": id,
        "is_pinned": flags.is_pinned,
        "is_muted": flags.is_muted,
    })))
}

/// `GET /conversations/:id/messages/:message_id/readers`.
pub async fn readers(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let id = path_uuid(&call, "id", "invalid conversation id")?;
    let message = path_uuid(&call, "message_id", "invalid message id")?;
    let status = ctx
        .services
        .message_readers(caller.user_id, id, message)
        .await?;
    Ok(response::ok(Readers::of(&status)))
}

/// `GET /conversations/:id/export[?after_seq=]`: NDJSON, streamed.
pub async fn export(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let id: ConversationId = path_uuid(&call, "id", "invalid conversation id")?;
    let after = Query::of(&call).seq("after_seq")?.unwrap_or(0);
    let chunks = ctx
        .services
        .export_conversation(caller.user_id, id, after)
        .await?;
    let mut resp = response::stream("application/x-ndjson", chunks);
    let disposition = format!("attachment; filename=\"conversation-{id}.ndjson\"");
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
