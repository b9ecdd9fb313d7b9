//! Admin routes (`/api/admin/…`, `/api/v1/admin/…`): settings, notification templates
//! and the templated batch send, and the node registry. The router has already checked that
//! the caller is an admin.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::domain::notifications::BatchSend;
use crate::error::{Error, Result};
use crate::http::body;
use crate::http::params::path_uuid;
use crate::http::response::{self, Resp};
use crate::http::{Call, Ctx};
use crate::model::{Template, Timestamp};

/// `GET /api/admin/settings`: every setting as a key → value map.
pub async fn settings_list(ctx: &Ctx, _call: Call) -> Result<Resp> {
    let snapshot = ctx.services.settings();
    Ok(response::ok(json!({ "settings": snapshot.raw })))
}

#[derive(Deserialize)]
struct SettingBody {
    value: Option<serde_json::Value>,
}

/// `POST /api/admin/settings/:key` with `{"value": "<string>"}`.
pub async fn settings_update(ctx: &Ctx, call: Call) -> Result<Resp> {
    let key = call.params.get("key").unwrap_or_default().to_string();
    let parsed: SettingBody = body::json(call.req.into_body()).await?;
    let value = match parsed.value {
        Some(serde_json::Value::String(v)) if !v.is_empty() => v,
        _ => {
            return Err(Error::invalid_body(
                "invalid request body: value must be a non-empty string",
            ));
        }
    };
    ctx.services.update_setting(&key, &value).await?;
    Ok(response::ok(json!({
        "message": "setting updated successfully",
        "key": key,
        "value": value,
    })))
}

/// `POST /api/admin/settings/reload`: re-read the settings on every node.
pub async fn settings_reload(ctx: &Ctx, _call: Call) -> Result<Resp> {
    ctx.services.reload_settings().await?;
    Ok(response::ok(
        json!({"message": "settings reloaded successfully"}),
    ))
}

/// The wire shape of a NotificationTemplate (PROTOCOL.md §3.1).
#[derive(Serialize)]
struct TemplateObject<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_template: Option<&'a str>,
    priority: i32,
    enable_push: bool,
    enable_websocket: bool,
    is_active: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

impl<'a> From<&'a Template> for TemplateObject<'a> {
    fn from(t: &'a Template) -> Self {
        TemplateObject {
            id: t.id,
            kind: &t.kind,
            title: &t.title,
            content_template: t.content_template.as_deref(),
            priority: t.priority,
            enable_push: t.enable_push,
            enable_websocket: t.enable_websocket,
            is_active: t.is_active,
            created_at: t.created_at,
            updated_at: t.updated_at,
            description: t.description.as_deref(),
        }
    }
}

fn template_id(call: &Call) -> Result<Uuid> {
    path_uuid(call, "id", "Invalid template ID")
}

/// The body as a JSON object.
async fn object_body(call: Call) -> Result<Map<String, Value>> {
    match body::json::<Value>(call.req.into_body()).await? {
        Value::Object(m) => Ok(m),
        _ => Err(Error::invalid_body(
            "invalid request body: a JSON object is required",
        )),
    }
}

fn template_answer(t: &Template) -> Resp {
    response::ok(json!({ "template": TemplateObject::from(t) }))
}

/// `GET /api/admin/notification-templates`: every template, by type.
pub async fn templates_list(ctx: &Ctx, _call: Call) -> Result<Resp> {
    let templates = ctx.services.templates().await?;
    let templates: Vec<TemplateObject<'_>> = templates.iter().map(TemplateObject::from).collect();
    Ok(response::ok(json!({ "templates": templates })))
}

/// `POST /api/admin/notification-templates` with the template's fields.
pub async fn template_create(ctx: &Ctx, call: Call) -> Result<Resp> {
    let fields = object_body(call).await?;
    let t = ctx.services.create_template(&fields).await?;
    Ok(template_answer(&t))
}

/// `POST /api/admin/notification-templates/:id` with the fields to change.
pub async fn template_update(ctx: &Ctx, call: Call) -> Result<Resp> {
    let id = template_id(&call)?;
    let fields = object_body(call).await?;
    ctx.services.update_template(id, &fields).await?;
    Ok(response::ok_message("Template updated successfully"))
}

/// `DELETE /api/admin/notification-templates/:id`.
pub async fn template_delete(ctx: &Ctx, call: Call) -> Result<Resp> {
    let id = template_id(&call)?;
    ctx.services.delete_template(id).await?;
    Ok(response::ok_message("Template deleted successfully"))
}

/// `POST /api/admin/notification-templates/init-defaults`: inserts the missing defaults.
pub async fn templates_init_defaults(ctx: &Ctx, _call: Call) -> Result<Resp> {
    ctx.services.init_default_templates().await?;
    Ok(response::ok_message(
        "Default templates initialized successfully",
    ))
}

#[derive(Deserialize)]
struct BatchBody {
    user_ids: Option<Vec<String>>,
    template_type: Option<String>,
    template_vars: Option<HashMap<String, String>>,
    metadata: Option<Map<String, Value>>,
}

/// `POST /api/admin/notifications/batch-send`.
pub async fn batch_send(ctx: &Ctx, call: Call) -> Result<Resp> {
    let b: BatchBody = body::json(call.req.into_body()).await?;
    let outcome = ctx
        .services
        .batch_send(BatchSend {
            user_ids: b.user_ids,
            template_type: b.template_type,
            template_vars: b.template_vars,
            metadata: b.metadata,
        })
        .await?;
    Ok(response::ok(json!({
        "success_count": outcome.success_count,
        "total_count": outcome.total_count,
        "message": "notifications sent",
    })))
}

/// `GET /api/admin/nodes`: the node registry, with each node's connections and liveness.
pub async fn nodes(ctx: &Ctx, _call: Call) -> Result<Resp> {
    let nodes = ctx.services.nodes().await?;
    Ok(response::ok(json!({ "nodes": nodes })))
}
