//! Group membership routes (PROTOCOL.md §3.3, DECISIONS.md "groups"): add, remove,
//! leave and change role. The rules live in `domain::groups`.

use serde::Deserialize;

use crate::error::{Code, Error, Result};
use crate::http::params::path_uuid;
use crate::http::response::{self, Resp};
use crate::http::{Call, Ctx, body};
use crate::model::Role;
use crate::model::UserId;

const INVALID_CONVERSATION: &str = "invalid conversation id";

#[derive(Deserialize)]
struct AddBody {
    member_ids: Vec<UserId>,
}

/// `POST /conversations/:id/members` `{member_ids}`.
pub async fn add(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let id = path_uuid(&call, "id", INVALID_CONVERSATION)?;
    let b: AddBody = body::json(call.req.into_body()).await?;
    ctx.services
        .add_members(caller.user_id, id, &b.member_ids)
        .await?;
    Ok(response::ok_message("members added successfully"))
}

#[derive(Deserialize)]
struct RemoveBody {
    user_id: UserId,
}

/// `POST /conversations/:id/members/remove` `{user_id}`.
pub async fn remove(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let id = path_uuid(&call, "id", INVALID_CONVERSATION)?;
    let b: RemoveBody = body::json(call.req.into_body()).await?;
    if b.user_id.is_nil() {
        return Err(Error::bad_request(
            Code::InvalidUserId,
            "user_id is required",
        ));
    }
    ctx.services
        .remove_member(caller.user_id, id, b.user_id)
        .await?;
    Ok(response::ok_message("member removed successfully"))
}

/// `POST /conversations/:id/leave`.
pub async fn leave(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let id = path_uuid(&call, "id", INVALID_CONVERSATION)?;
    ctx.services.leave_group(caller.user_id, id).await?;
    Ok(response::ok_message("left group successfully"))
}

#[derive(Deserialize)]
struct RoleBody {
    role: String,
}

/// `POST /conversations/:id/members/:user_id/role` `{role}`.
pub async fn change_role(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let id = path_uuid(&call, "id", INVALID_CONVERSATION)?;
    let target = path_uuid(&call, "user_id", "invalid user id")?;
    let b: RoleBody = body::json(call.req.into_body()).await?;
    let role = Role::parse(&b.role).ok_or_else(|| {
        Error::bad_request(
            Code::InvalidRole,
            "invalid role: must be owner, admin or member",
        )
    })?;
    ctx.services
        .change_role(caller.user_id, id, target, role)
        .await?;
    Ok(response::ok_message("role updated successfully"))
}
