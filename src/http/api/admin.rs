//! Admin routes (`/api/admin/…`, `/api/v1/admin/…`); the router has already checked that
//! the caller is an admin.

use serde::Deserialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::http::body;
use crate::http::response::{self, Resp};
use crate::http::{Call, Ctx};

/// `GET /api/admin/settings`: every setting as a key → value map.
pub async fn settings_list(ctx: &Ctx, _call: Call) -> Result<Resp> {
    let snapshot = ctx.services.settings.get();
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
            return Err(Error::bad_request(
                "invalid_body",
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
