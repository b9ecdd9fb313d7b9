//! The caller's notifications (PROTOCOL.md §3.5): list with summary, open (marks read),
//! mark one or all read, delete. The live `notification_update` events are the domain's.

use serde::Serialize;
use uuid::Uuid;

use crate::domain::notifications::{NotificationObject, SummaryObject};
use crate::error::Result;
use crate::http::params::{Query, path_uuid};
use crate::http::response::{self, Resp};
use crate::http::{Call, Ctx};

/// Default page size of `GET /notifications`.
const DEFAULT_LIMIT: i64 = 50;

fn notification_id(call: &Call) -> Result<Uuid> {
    path_uuid(call, "id", "invalid notification id")
}

/// `GET /notifications?limit&offset&unread_only=true`.
pub async fn list(ctx: &Ctx, call: Call) -> Result<Resp> {
    let user = call.caller()?.user_id;
    let q = Query::of(&call);
    let limit = q.limit(DEFAULT_LIMIT)?;
    let offset = q.offset()?;
    let unread_only = q.get("unread_only") == Some("true");
    let (items, summary) = ctx
        .services
        .notifications(user, unread_only, limit, offset)
        .await?;
    #[derive(Serialize)]
    struct Data<'a> {
        notifications: Vec<NotificationObject<'a>>,
        #[serde(flatten)]
        summary: SummaryObject,
    }
    Ok(response::ok(Data {
        notifications: items.iter().map(NotificationObject::from).collect(),
        summary: summary.into(),
    }))
}

/// `GET /notifications/:id`: the notification, marked read.
pub async fn get(ctx: &Ctx, call: Call) -> Result<Resp> {
    let user = call.caller()?.user_id;
    let id = notification_id(&call)?;
    let n = ctx.services.open_notification(user, id).await?;
    #[derive(Serialize)]
    struct Data<'a> {
        notification: NotificationObject<'a>,
    }
    Ok(response::ok(Data {
        notification: (&n).into(),
    }))
}

/// `POST /notifications/:id/read` (DECISIONS.md "prefixes").
pub async fn mark_read(ctx: &Ctx, call: Call) -> Result<Resp> {
    let user = call.caller()?.user_id;
    let id = notification_id(&call)?;
    ctx.services.open_notification(user, id).await?;
    Ok(response::ok_message("notification marked as read"))
}

/// `POST /notifications/read-all`.
pub async fn read_all(ctx: &Ctx, call: Call) -> Result<Resp> {
    let user = call.caller()?.user_id;
    ctx.services.read_all_notifications(user).await?;
    Ok(response::ok_message("all notifications marked as read"))
}

/// `POST /notifications/:id/delete`.
pub async fn delete(ctx: &Ctx, call: Call) -> Result<Resp> {
    let user = call.caller()?.user_id;
    let id = notification_id(&call)?;
    ctx.services.delete_notification(user, id).await?;
    Ok(response::ok_message("notification deleted"))
}
