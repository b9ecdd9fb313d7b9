//! Conversation routes (PROTOCOL.md §3.3): the list, the partner-name search, private
//! get-or-create, group creation, history and hiding. Thin: parameters in, domain call,
//! wire shape out.

use serde::Deserialize;
use serde_json::json;

use super::shapes::{ConversationObject, HistoryPage, ListItem, SearchItem};
use crate::error::{Code, Error, Result};
use crate::http::params::{Query, path_uuid};
use crate::http::response::{self, Resp};
use crate::http::{Call, Ctx, body};
use crate::model::{Page, UserId};

/// `GET /conversations[?search=…]`.
pub async fn list(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let q = Query::of(&call);
    let (limit, offset) = (q.limit(20)?, q.offset()?);
    let search = q.text(&["search"]);
    let listed = ctx
        .services
        .conversation_list(caller.user_id, limit, offset, search.as_deref())
        .await?;
    let items: Vec<ListItem<'_>> = listed.iter().map(ListItem::of).collect();
    Ok(response::ok(json!({ "conversations": items })))
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
