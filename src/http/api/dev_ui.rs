//! The web client for trying the server, served only with `DEV_UI=1`: the page at `/`, its
//! script and style sheet (embedded from `src/http/ui/`), and `POST /api/dev/token`, which
//! signs a token for any user id, admin or not. With DEV_UI off each of them answers the
//! 404 envelope of an unknown route.

use std::time::Duration;

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::json;

use crate::error::{Code, Error, Result};
use crate::http::response::{self, Resp};
use crate::http::router::RouteId;
use crate::http::{Call, Ctx, body};
use crate::model::UserId;

const INDEX_HTML: &str = include_str!("../ui/index.html");
const APP_JS: &str = include_str!("../ui/app.js");
const STYLE_CSS: &str = include_str!("../ui/style.css");

/// Lifetime of a token from `POST /api/dev/token`: a working day of trying things out.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// The page may load only its own assets, talk only to this node (HTTP and WebSocket) and
/// show images from anywhere (image messages carry a URL).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src * data:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'";

/// Body of `POST /api/dev/token`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    /// The user to sign for; a new random id when absent or null.
    #[serde(default)]
    user_id: Option<UserId>,
    /// Adds `role: "admin"`.
    #[serde(default)]
    admin: bool,
}

/// The handler of every route of the web client.
pub async fn serve(ctx: &Ctx, call: Call) -> Result<Resp> {
    if !ctx.services.config().dev_ui {
        // Exactly what an unknown route answers (src/http.rs).
        return Err(Error::route_not_found());
    }
    match call.route.id {
        RouteId::DevPage => Ok(asset("text/html; charset=utf-8", INDEX_HTML, true)),
        RouteId::DevScript => Ok(asset("text/javascript; charset=utf-8", APP_JS, false)),
        RouteId::DevStyle => Ok(asset("text/css; charset=utf-8", STYLE_CSS, false)),
        RouteId::DevToken => token(ctx, call).await,
        other => Err(Error::internal(format!(
            "route {other:?} dispatched to the web client"
        ))),
    }
}

fn asset(content_type: &'static str, text: &'static str, page: bool) -> Resp {
    let mut resp = response::text(StatusCode::OK, content_type, text);
    let headers = resp.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    if page {
        headers.insert(
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(CSP),
        );
    }
    resp
}

/// `POST /api/dev/token`: `{user_id: uuid|null, admin: bool}` → `{token, user_id}`.
async fn token(ctx: &Ctx, call: Call) -> Result<Resp> {
    let req = parse_request(&body::read(call.req.into_body()).await?)?;
    let user_id = match req.user_id {
        Some(id) if id.is_nil() => {
            return Err(Error::bad_request(
                Code::InvalidUserId,
                "user_id must be a non-nil UUID or null",
            ));
        }
        Some(id) => id,
        None => UserId::new_v4(),
    };
    let token = ctx
        .services
        .tokens()
        .issue(user_id, req.admin, DEV_TOKEN_TTL);
    let mut resp = response::ok(json!({ "token": token, "user_id": user_id }));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Decodes a token request; only a JSON object is one (serde would take `[]` too).
fn parse_request(bytes: &[u8]) -> Result<TokenRequest> {
    let raw: serde_json::Value = body::decode(bytes)?;
    if !raw.is_object() {
        return Err(Error::invalid_body("request body must be a JSON object"));
    }
    serde_json::from_value(raw)
        .map_err(|e| Error::invalid_body(format!("invalid request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_assets() {
        assert!(INDEX_HTML.contains(r#"src="/ui/app.js""#));
        assert!(INDEX_HTML.contains(r#"href="/ui/style.css""#));
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
        ] {
            for external in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(external), "{name} refers to {external}");
            }
        }
    }

    #[test]
    fn token_bodies() {
        let r = parse_request(br#"{"user_id": null, "admin": true}"#).unwrap();
        assert!(r.user_id.is_none() && r.admin);
        let id = UserId::new_v4();
        let r = parse_request(format!(r#"{{"user_id": "{id}"}}"#).as_bytes()).unwrap();
        assert_eq!(r.user_id, Some(id));
        assert!(!r.admin);
        assert!(parse_request(br#"{}"#).is_ok_and(|r| r.user_id.is_none() && !r.admin));
        for bad in [
            &br#"{"user_id": "nope"}"#[..],
            br#"{"user": "x"}"#,
            b"[]",
            b"",
            b"null",
        ] {
            assert!(
                parse_request(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
