//! Tokens signed with the cluster's secret, and the HTTP calls a run needs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use uuid::Uuid;

/// An HS256 token for `user` (admin when asked), valid for a day.
pub fn token(secret: &str, user: Uuid, admin: bool) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(86_400);
    let mut claims = json!({"user_id": user, "exp": exp.as_secs()});
    if admin {
        claims["role"] = json!("admin");
    }
    hs256(secret, &claims)
}

/// A compact HS256 JWS of `claims` (RFC 7515), as the Gateway makes them.
fn hs256(secret: &str, claims: &Value) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use hmac::{KeyInit, Mac};
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = B64.encode(serde_json::to_vec(claims).expect("json"));
    let signing_input = format!("{header}.{payload}");
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        B64.encode(mac.finalize().into_bytes())
    )
}

/// One HTTP request; returns status and JSON body.
pub async fn request(
    method: &str,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let uri: hyper::Uri = format!("{base}{path}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let authority = uri.authority().ok_or("URL without host")?.to_string();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let bytes = body
        .map(|b| serde_json::to_vec(b).expect("json"))
        .unwrap_or_default();
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let resp = sender
        .send_request(
            req.body(Full::new(Bytes::from(bytes)))
                .map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Sets a system setting through the admin API of `base`.
pub async fn set_setting(base: &str, secret: &str, key: &str, value: &str) -> Result<(), String> {
    let admin = token(secret, Uuid::new_v4(), true);
    let (status, body) = request(
        "POST",
        base,
        &format!("/api/admin/settings/{key}"),
        Some(&admin),
        Some(&json!({"value": value})),
    )
    .await?;
    if status == 200 {
        Ok(())
    } else {
        Err(format!("setting {key}: {status} {body}"))
    }
}

/// The value of a Prometheus gauge or counter on `base`'s `/metrics` (first sample).
pub async fn metric(base: &str, name: &str) -> Result<f64, String> {
    let uri: hyper::Uri = format!("{base}/metrics")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let authority = uri.authority().ok_or("URL without host")?.to_string();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/metrics")
        .header("host", authority)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let text = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("metric {name} not found"))
}
