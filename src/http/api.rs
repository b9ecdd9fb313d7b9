//! Route handlers: thin adapters from HTTP to the domain services, one submodule per area.

mod admin;
mod conversations;
mod dev_ui;
mod members;
mod messages;
mod notifications;
mod openapi;
mod relationships;
mod session;
mod shapes;

use super::response::{Body, Resp};
use super::router::RouteId;
use super::{Call, Ctx, probes};
use crate::domain::member_settings::Setting;
use crate::error::{Error, Result};

/// Runs the handler of `call.route`.
pub async fn dispatch(ctx: &Ctx, call: Call) -> Result<Resp> {
    use RouteId as R;
    match call.route.id {
        R::Health => Ok(probes::health()),
        R::Ready => probes::ready(ctx).await,
        // With METRICS_PORT, /metrics is served there only.
        R::Metrics if ctx.services.config().metrics_port.is_some() => Err(Error::route_not_found()),
        R::Metrics => Ok(probes::metrics(ctx)),
        R::WebSocket => {
            let switching = crate::ws::upgrade(
                &ctx.hub,
                &ctx.ws_limits,
                ctx.shutdown.is_shutting_down(),
                call.req,
            )
            .await?;
            Ok(switching.map(|_| Body::default()))
        }
        R::OpenApi => Ok(openapi::serve()),
        R::WsToken => session::ws_token(ctx, call).await,
        R::Logout => session::logout(ctx, call).await,
        R::ConversationsList => conversations::list(ctx, call).await,
        R::ConversationsSearch => conversations::search(ctx, call).await,
        R::ConversationPrivate => conversations::create_private(ctx, call).await,
        R::ConversationGroup => conversations::create_group(ctx, call).await,
        R::ConversationMessages => conversations::history(ctx, call).await,
        R::ConversationHide => conversations::hide(ctx, call).await,
        R::ConversationPin => conversations::setting(ctx, call, Setting::Pin).await,
        R::ConversationUnpin => conversations::setting(ctx, call, Setting::Unpin).await,
        R::ConversationMute => conversations::setting(ctx, call, Setting::Mute).await,
        R::ConversationUnmute => conversations::setting(ctx, call, Setting::Unmute).await,
        R::MessageReaders => conversations::readers(ctx, call).await,
        R::ConversationExport => conversations::export(ctx, call).await,
        R::MembersAdd => members::add(ctx, call).await,
        R::MembersRemove => members::remove(ctx, call).await,
        R::ConversationLeave => members::leave(ctx, call).await,
        R::MemberRole => members::change_role(ctx, call).await,
        R::MessageRecall => messages::recall(ctx, call).await,
        R::MessageEdit => messages::edit(ctx, call).await,
        R::MessagesForward => messages::forward(ctx, call).await,
        R::MessagesSearch => messages::search(ctx, call).await,
        R::NotificationsList => notifications::list(ctx, call).await,
        R::NotificationsReadAll => notifications::read_all(ctx, call).await,
        R::NotificationGet => notifications::get(ctx, call).await,
        R::NotificationRead => notifications::mark_read(ctx, call).await,
        R::NotificationDelete => notifications::delete(ctx, call).await,
        R::Block => relationships::block(ctx, call).await,
        R::Unblock => relationships::unblock(ctx, call).await,
        R::BlockedList => relationships::blocked(ctx, call).await,
        R::AdminSettingsList => admin::settings_list(ctx, call).await,
        R::AdminSettingsReload => admin::settings_reload(ctx, call).await,
        R::AdminSettingsUpdate => admin::settings_update(ctx, call).await,
        R::AdminTemplatesList => admin::templates_list(ctx, call).await,
        R::AdminTemplateCreate => admin::template_create(ctx, call).await,
        R::AdminTemplatesInitDefaults => admin::templates_init_defaults(ctx, call).await,
        R::AdminTemplateUpdate => admin::template_update(ctx, call).await,
        R::AdminTemplateDelete => admin::template_delete(ctx, call).await,
        R::AdminBatchSend => admin::batch_send(ctx, call).await,
        R::AdminNodes => admin::nodes(ctx, call).await,
        R::DevPage | R::DevScript | R::DevStyle | R::DevToken => dev_ui::serve(ctx, call).await,
    }
}
