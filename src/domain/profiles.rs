//! Profile enrichment from the external "agent" service (PROTOCOL.md §5.20, DECISIONS.md
//! "profile service"): `POST {AGENT_URL}/api/v1/user-data/batch` with `{"user_ids": […]}`,
//! answered by `{"code":0,"data":{uid:{name,avatar_url,domain,full_position}}}`.
//!
//! Profiles are cached in Redis for ten minutes (users the service does not know for one
//! minute) and read from there first. The call has a 2 s budget; any failure means no
//! enrichment, and after a failure the service is left alone for a few seconds so a dead
//! agent does not slow every list request. Nothing on the send path waits for this.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::Services;

/// Budget of one call to the agent, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a profile stays cached.
pub const CACHE_TTL_SECONDS: u64 = 600;
/// How long "the service does not know this user" stays cached.
pub const MISS_TTL_SECONDS: u64 = 60;
/// How long the agent is not called after a failure.
pub const BACKOFF: Duration = Duration::from_secs(5);
/// Largest answer read from the agent.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;
/// The cached value for a user the service does not know.
const MISS: &str = "null";

/// What the agent knows about a user; a missing field is an empty string, as in the
/// original.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Avatar URL.
    #[serde(default)]
    pub avatar_url: String,
    /// The user's domain (shown as `username`).
    #[serde(default)]
    pub domain: String,
    /// Job title.
    #[serde(default)]
    pub full_position: String,
}

impl Profile {
    /// Reads a profile object leniently: string fields only, anything else is empty.
    fn from_value(v: &Value) -> Option<Profile> {
        let o = v.as_object()?;
        let field = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Some(Profile {
            name: field("name"),
            avatar_url: field("avatar_url"),
            domain: field("domain"),
            full_position: field("full_position"),
        })
    }
}

/// Known profiles by user.
pub type Profiles = HashMap<Uuid, Arc<Profile>>;

impl Services {
    /// The profiles of `users` that are known: from the Redis cache, then from the agent.
    /// Empty when `AGENT_URL` is unset; never an error.
    pub async fn profiles(&self, users: &[Uuid]) -> Profiles {
        let mut found = Profiles::new();
        let Some(base) = self.config.agent_url.as_deref() else {
            return found;
        };
        let mut unique = users.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if unique.is_empty() {
            return found;
        }
        let keys: Vec<String> = unique.iter().map(|u| self.keys.profile(*u)).collect();
        let mut redis = self.redis.clone();
        let cached: Vec<Option<String>> =
            match redis::cmd("MGET").arg(&keys).query_async(&mut redis).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "profile cache unavailable");
                    vec![None; unique.len()]
                }
            };
        let mut missing = Vec::new();
        for (user, value) in unique.iter().zip(cached) {
            match value.as_deref() {
                Some(MISS) => {}
                Some(json) => match serde_json::from_str::<Profile>(json) {
                    Ok(p) => {
                        found.insert(*user, Arc::new(p));
                    }
                    Err(_) => missing.push(*user),
                },
                None => missing.push(*user),
            }
        }
        if missing.is_empty() || backing_off(base) {
            return found;
        }
        let fetched = match tokio::time::timeout(TIMEOUT, fetch(base, &missing)).await {
            Ok(Ok(fetched)) => fetched,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "profile service failed; answering without profiles");
                failed(base);
                return found;
            }
            Err(_) => {
                tracing::warn!("profile service timed out; answering without profiles");
                failed(base);
                return found;
            }
        };
        let cmds = missing
            .iter()
            .map(|user| {
                let (value, ttl) = match fetched.get(user) {
                    Some(p) => (
                        serde_json::to_string(p).unwrap_or_else(|_| MISS.into()),
                        CACHE_TTL_SECONDS,
                    ),
                    None => (MISS.to_string(), MISS_TTL_SECONDS),
                };
                let mut cmd = redis::cmd("SET");
                cmd.arg(self.keys.profile(*user))
                    .arg(value)
                    .arg("EX")
                    .arg(ttl);
                cmd
            })
            .collect();
        if let Err(e) = self.redis.run_all(cmds).await {
            tracing::debug!(error = %e, "profile cache write failed");
        }
        found.extend(fetched.into_iter().map(|(u, p)| (u, Arc::new(p))));
        found
    }
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
async fn fetch(base: &str, users: &[Uuid]) -> Result<HashMap<Uuid, Profile>, String> {
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
fn parse_answer(bytes: &[u8]) -> Result<HashMap<Uuid, Profile>, String> {
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
        .filter_map(|(k, v)| Some((Uuid::try_parse(k).ok()?, Profile::from_value(v)?)))
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
        let u = Uuid::new_v4();
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
