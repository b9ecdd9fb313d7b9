//! The HTTP client of the external profile ("agent") service: `POST
//! {AGENT_URL}/api/v1/user-data/batch` with `{"user_ids": […]}`, answered by
//! `{"code":0,"data":{uid:{name,avatar_url,domain,full_position}}}`. One call has a 2 s
//! budget, connection included; after a failure the service is left alone for a few
//! seconds so a dead agent does not slow every list request.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::Value;

use crate::model::Profile;
use crate::model::UserId;

/// Budget of one call to the agent, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// How long the agent is not called after a failure.
pub const BACKOFF: Duration = Duration::from_secs(5);
/// Largest answer read from the agent.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// The profiles the agent at `base` knows among `users`; `None` when it failed, timed
/// out or is being left alone after a recent failure (logged here).
pub async fn call(base: &str, users: &[UserId]) -> Option<HashMap<UserId, Profile>> {
    if backing_off(base) {
        return None;
    }
    match tokio::time::timeout(TIMEOUT, fetch(base, users)).await {
        Ok(Ok(fetched)) => Some(fetched),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "profile service failed; answering without profiles");
            failed(base);
            None
        }
        Err(_) => {
            tracing::warn!("profile service timed out; answering without profiles");
            failed(base);
            None
        }
    }
}

/// Reads a profile object leniently: string fields only, anything else is empty.
fn profile_from_value(v: &Value) -> Option<Profile> {
    let o = v.as_object()?;
    let field = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Some(Profile {
        name: field("name"),
        avatar_url: field("avatar_url"),
        domain: field("domain"),
        full_position: field("full_position"),
    })
}

/// Agent base URLs that failed recently, with when they may be tried again.
fn backoffs() -> &'static Mutex<HashMap<String, Instant>> {
    static BACKOFFS: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    BACKOFFS.get_or_init(Default::default)
}

fn backing_off(base: &str) -> bool {
    let map = backoffs().lock().unwrap_or_else(|e| e.into_inner());
    map.get(base).is_some_and(|until| Instant::now() < *until)
}

fn failed(base: &str) {
    let mut map = backoffs().lock().unwrap_or_else(|e| e.into_inner());
    map.insert(base.to_string(), Instant::now() + BACKOFF);
}

/// The parts of an `http://` base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `host[:port]` for the `Host` header.
    authority: String,
    /// Host name or address to connect to.
    host: String,
    /// TCP port.
    port: u16,
    /// Path prefix without a trailing slash (may be empty).
    path: String,
}

fn parse_base(base: &str) -> Result<Target, String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {base}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, tail) = v6
            .split_once(']')
            .ok_or_else(|| format!("bad IPv6 address in {base}"))?;
        (host, tail.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port in {base}"))?,
        None => 80,
    };
    if host.is_empty() {
        return Err(format!("no host in {base}"));
    }
    Ok(Target {
        authority: authority.to_string(),
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// Aborts the connection task when the call ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One batch call to the agent.
async fn fetch(base: &str, users: &[UserId]) -> Result<HashMap<UserId, Profile>, String> {
    let target = parse_base(base)?;
    let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let body =
        serde_json::to_vec(&serde_json::json!({ "user_ids": users })).map_err(|e| e.to_string())?;
    let req = Request::post(format!("{}/api/v1/user-data/batch", target.path))
        .header(hyper::header::HOST, &target.authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if resp.status() != hyper::StatusCode::OK {
        return Err(format!("status {}", resp.status()));
    }
    let bytes = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    parse_answer(&bytes)
}

/// Reads the agent's answer; `code` must be 0.
fn parse_answer(bytes: &[u8]) -> Result<HashMap<UserId, Profile>, String> {
    #[derive(Deserialize)]
    struct Answer {
        code: i64,
        #[serde(default)]
        data: Option<HashMap<String, Value>>,
    }
    let answer: Answer = serde_json::from_slice(bytes).map_err(|e| format!("answer: {e}"))?;
    if answer.code != 0 {
        return Err(format!("code {}", answer.code));
    }
    Ok(answer
        .data
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, v)| Some((k.parse::<UserId>().ok()?, profile_from_value(v)?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let t = parse_base("http://agent:9000/base").unwrap();
        assert_eq!(
            (
                t.authority.as_str(),
                t.host.as_str(),
                t.port,
                t.path.as_str()
            ),
            ("agent:9000", "agent", 9000, "/base")
        );
        let t = parse_base("http://127.0.0.1").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, ""));
        let t = parse_base("http://[::1]:81/").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 81, ""));
        assert!(parse_base("https://x").is_err());
        assert!(parse_base("http://x:port").is_err());
        assert!(parse_base("http://:80").is_err());
    }

    #[test]
    fn answers() {
        let u = UserId::new_v4();
        let ok = format!(
            r#"{{"code":0,"data":{{"{u}":{{"name":"Ann","avatar_url":"a.png","domain":"ann","full_position":7}},"nope":{{}}}}}}"#
        );
        let got = parse_answer(ok.as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        let p = &got[&u];
        assert_eq!((p.name.as_str(), p.domain.as_str()), ("Ann", "ann"));
        assert_eq!(p.full_position, "", "non-strings are empty");
        assert!(parse_answer(br#"{"code":1,"data":{}}"#).is_err());
        assert!(parse_answer(b"<html>").is_err());
        assert!(
            parse_answer(br#"{"code":0,"data":null}"#)
                .unwrap()
                .is_empty()
        );
    }
}
