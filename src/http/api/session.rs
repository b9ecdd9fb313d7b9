//! Session routes: `POST /api/v1/logout`; `POST /api/v1/ws-token` issues a short-lived WebSocket token and the
//! `ws_url` of the live node with the fewest connections, in the Gateway's response shape
//! (PROTOCOL.md §1.2).

use serde_json::json;

use crate::error::Result;
use crate::http::response::{self, Resp};
use crate::http::{Call, Ctx};

/// `POST /api/v1/ws-token`.
pub async fn ws_token(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let t = ctx.services.ws_token(caller.user_id).await;
    Ok(response::ok(json!({
        "ws_token": t.token,
        "ws_url": t.ws_url,
        "expires_in": t.ttl.as_secs().to_string(),
    })))
}

/// `POST /api/v1/logout`: closes every connection of the token's own user on every node
/// (DECISIONS.md fixes the original's trust in an `X-User-ID` header).
pub async fn logout(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    ctx.services.logout(caller.user_id).await;
    Ok(response::ok_message("Logged out"))
}
