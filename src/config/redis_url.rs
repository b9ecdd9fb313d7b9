//! The Redis part of the configuration: `REDIS_URL` in either of the original's forms,
//! `REDIS_PASSWORD`, `REDIS_DB` and `REDIS_KEY_PREFIX`, turned into one `redis://` URL.

use std::fmt;

use super::{ConfigError, Reader, redact_url};

/// How to reach Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// A `redis://` URL with password and database applied.
    pub url: String,
    /// Prefix put before every key and channel name (empty by default, so keys keep the
    /// original service's names). Lets several deployments or tests share one Redis.
    pub key_prefix: String,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

pub(super) fn redis_config(r: &Reader<'_>) -> Result<RedisConfig, ConfigError> {
    let raw = r
        .opt("REDIS_URL")
        .unwrap_or_else(|| "localhost:6379".into());
    let password = r.env.get("REDIS_PASSWORD").filter(|p| !p.is_empty());
    let db: u32 = r.number("REDIS_DB", 0, 0, 1_000_000)?;
    let bad = |raw: &str| ConfigError {
        var: "REDIS_URL",
        expected: "host:port or a redis:// URL".into(),
        got: Some(redact_url(raw)),
    };
    let url = if let Some(rest) = raw.strip_prefix("redis://") {
        let mut url = raw.clone();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(bad(&raw));
        }
        if let Some(pw) = &password
            && !authority.contains('@')
        {
            url = format!("redis://:{}@{}", percent_encode(pw), rest);
        }
        if db != 0 && path.trim_matches('/').is_empty() {
            url = format!("{}/{db}", url.trim_end_matches('/'));
        }
        url
    } else if raw.contains("://") {
        return Err(bad(&raw));
    } else {
        let (host, port) = raw.rsplit_once(':').unwrap_or((raw.as_str(), "6379"));
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad(&raw));
        }
        let auth = password
            .as_deref()
            .map(|p| format!(":{}@", percent_encode(p)))
            .unwrap_or_default();
        format!("redis://{auth}{host}:{port}/{db}")
    };
    if redis::Client::open(url.as_str()).is_err() {
        return Err(bad(&raw));
    }
    let key_prefix = r.opt("REDIS_KEY_PREFIX").unwrap_or_default();
    Ok(RedisConfig { url, key_prefix })
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
