//! Session routes: `POST /api/v1/ws-token` issues a short-lived WebSocket token and the
//! `ws_url` of a node, in the Gateway's response shape (PROTOCOL.md §1.2).

use serde_json::json;

use crate::error::Result;
use crate::http::response::{self, Resp};
use crate::http::{Call, Ctx};

/// `POST /api/v1/ws-token`.
pub async fn ws_token(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let config = &ctx.services.config;
    let ttl = config.ws_token_ttl;
    let token = ctx.services.tokens.issue(caller.user_id, false, ttl);
    Ok(response::ok(json!({
        "ws_token": token,
        "ws_url": config.ws_public_url,
        "expires_in": ttl.as_secs().to_string(),
    })))
}
