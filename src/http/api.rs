//! Route handlers: thin adapters from HTTP to the domain services, one submodule per area.

mod admin;
mod session;

use super::response::Resp;
use super::router::RouteId;
use super::{Call, Ctx, probes};
use crate::error::Result;

/// Runs the handler of `call.route`.
pub async fn dispatch(ctx: &Ctx, call: Call) -> Result<Resp> {
    match call.route.id {
        RouteId::Health => Ok(probes::health()),
        RouteId::Ready => probes::ready(ctx).await,
        RouteId::Metrics => Ok(probes::metrics(ctx)),
        RouteId::WebSocket => {
            crate::ws::upgrade(
                &ctx.hub,
                &ctx.ws_limits,
                ctx.shutdown.is_shutting_down(),
                call.req,
            )
            .await
        }
        RouteId::WsToken => session::ws_token(ctx, call).await,
        RouteId::AdminSettingsList => admin::settings_list(ctx, call).await,
        RouteId::AdminSettingsReload => admin::settings_reload(ctx, call).await,
        RouteId::AdminSettingsUpdate => admin::settings_update(ctx, call).await,
    }
}
