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
    let config = &ctx.services.config;
    let ttl = config.ws_token_ttl;
    let token = ctx.services.tokens.issue(caller.user_id, false, ttl);
    let ws_url = match ctx.services.registry.live().await {
        Ok(nodes) if !nodes.is_empty() => nodes[0].ws_url.clone(),
        Ok(_) => config.ws_public_url.clone(),
        Err(e) => {
            tracing::warn!(error = %e, "registry unavailable; offering this node");
            config.ws_public_url.clone()
        }
    };
    Ok(response::ok(json!({
        "ws_token": token,
        "ws_url": ws_url,
        "expires_in": ttl.as_secs().to_string(),
    })))
}

/// `POST /api/v1/logout`: closes every connection of the token's own user on every node
/// (DECISIONS.md fixes the original's trust in an `X-User-ID` header).
pub async fn logout(ctx: &Ctx, call: Call) -> Result<Resp> {
    let caller = call.caller()?;
    let env = ctx
        .services
        .envelope(&crate::domain::routing::Routed::Logout);
    ctx.services.bus.route(caller.user_id, env).await;
    Ok(response::ok_message("Logged out"))
}
