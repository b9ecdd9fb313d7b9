//! Blocking routes (PROTOCOL.md §3.6): block, unblock, and the caller's blocks.

use serde::{Deserialize, Serialize};

use crate::domain::relationships::RelationshipObject;
use crate::error::{Code, Error, Result};
use crate::http::body;
use crate::http::params::Query;
use crate::http::response::{self, Resp};
use crate::http::{Call, Ctx};
use crate::model::UserId;

/// Default page size of `GET /relationships/blocked`.
const DEFAULT_LIMIT: i64 = 50;

#[derive(Deserialize)]
struct Target {
    target_user_id: Option<String>,
}

/// The caller and the `target_user_id` of the body.
async fn caller_and_target(call: Call) -> Result<(UserId, UserId)> {
    let user = call.caller()?.user_id;
    let target: Target = body::json(call.req.into_body()).await?;
    let raw = target
        .target_user_id
        .ok_or_else(|| Error::invalid_body("invalid request body: target_user_id is required"))?;
    let target = raw
        .parse::<UserId>()
        .ok()
        .filter(|t| !t.is_nil())
        .ok_or_else(|| Error::bad_request(Code::InvalidUserId, "invalid target_user_id"))?;
    Ok((user, target))
}

/// `POST /relationships/block` `{"target_user_id": "<uid>"}`.
pub async fn block(ctx: &Ctx, call: Call) -> Result<Resp> {
    let (user, target) = caller_and_target(call).await?;
    ctx.services.block(user, target).await?;
    Ok(response::ok_message("user blocked successfully"))
}

/// `POST /relationships/unblock` `{"target_user_id": "<uid>"}`.
pub async fn unblock(ctx: &Ctx, call: Call) -> Result<Resp> {
    let (user, target) = caller_and_target(call).await?;
    ctx.services.unblock(user, target).await?;
    Ok(response::ok_message("user unblocked successfully"))
}

/// `GET /relationships/blocked?limit&offset`: newest first.
pub async fn blocked(ctx: &Ctx, call: Call) -> Result<Resp> {
    let user = call.caller()?.user_id;
    let q = Query::of(&call);
    let (limit, offset) = (q.limit(DEFAULT_LIMIT)?, q.offset()?);
    let rows = ctx.services.blocked_users(user, limit, offset).await?;
    #[derive(Serialize)]
    struct Data<'a> {
        blocked_users: Vec<RelationshipObject<'a>>,
    }
    Ok(response::ok(Data {
        blocked_users: rows.iter().map(RelationshipObject::from).collect(),
    }))
}
