//! The Redis part of the configuration: `REDIS_URL` in either of the original's forms,
//! `REDIS_PASSWORD`, `REDIS_DB` and `REDIS_KEY_PREFIX`, turned into one `redis://` (or, for
//! TLS, `rediss://`) URL; or `REDIS_CLUSTER_URLS`, the seed nodes of a Redis Cluster, which
//! selects cluster mode. With `rediss://`, `REDIS_TLS_CA_FILE` and `REDIS_TLS_VERIFY` say
//! which CAs are trusted and what is checked.

use std::fmt;

use super::{ConfigError, Reader, redact_url};
use crate::tls::Verify;

/// How to reach Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// A `redis://` URL with password and database applied.
    pub url: String,
    /// Prefix put before every key and channel name (empty by default, so keys keep the
    /// original service's names). Lets several deployments or tests share one Redis.
    pub key_prefix: String,
    /// Seed nodes of a Redis Cluster (`REDIS_CLUSTER_URLS`), each a `redis://` URL with the
    /// password applied. Empty: one Redis server at `url` (the default).
    pub cluster_urls: Vec<String>,
    /// TLS settings, used when the URLs are `rediss://`.
    pub tls: RedisTls,
}

/// How a `rediss://` connection checks the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// `REDIS_TLS_VERIFY`: `full` (default: the CA and the host name), `ca` (the CA only,
    /// e.g. for a cluster announcing IP addresses its certificates do not name) or `none`.
    pub verify: Verify,
    /// `REDIS_TLS_CA_FILE`: the trusted CAs (PEM, read at start-up); `None`: the system's.
    pub ca_pem: Option<Vec<u8>>,
}

impl RedisConfig {
    /// True when the node runs against a Redis Cluster (sharded Pub/Sub, hash-tagged keys).
    pub fn is_cluster(&self) -> bool {
        !self.cluster_urls.is_empty()
    }

    /// True when the connections use TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field(
                "cluster_urls",
                &self
                    .cluster_urls
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("tls_verify", &self.tls.verify)
            .field("tls_ca_file", &self.tls.ca_pem.is_some())
            .finish()
    }
}

pub(super) fn redis_config(r: &Reader<'_>) -> Result<RedisConfig, ConfigError> {
    let password = r.env.get("REDIS_PASSWORD").filter(|p| !p.is_empty());
    let db: u32 = r.number("REDIS_DB", 0, 0, 1_000_000)?;
    let key_prefix = r.opt("REDIS_KEY_PREFIX").unwrap_or_default();
    if let Some(seeds) = r.opt("REDIS_CLUSTER_URLS") {
        if db != 0 {
            return Err(ConfigError {
                var: "REDIS_DB",
                expected: "0 with REDIS_CLUSTER_URLS (a Redis Cluster has only database 0)".into(),
                got: Some(db.to_string()),
            });
        }
        let cluster_urls = seeds
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|seed| {
                normalize(seed, password.as_deref(), 0).map_err(|got| ConfigError {
                    var: "REDIS_CLUSTER_URLS",
                    expected: "comma-separated host:port or redis:// URLs of cluster nodes".into(),
                    got: Some(got),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if cluster_urls.is_empty() {
            return Err(ConfigError {
                var: "REDIS_CLUSTER_URLS",
                expected: "at least one host:port or redis:// URL of a cluster node".into(),
                got: Some(seeds),
            });
        }
        let tls = cluster_urls[0].starts_with("rediss://");
        if cluster_urls
            .iter()
            .any(|u| u.starts_with("rediss://") != tls)
        {
            return Err(ConfigError {
                var: "REDIS_CLUSTER_URLS",
                expected: "every seed rediss:// (TLS) or none".into(),
                got: Some(seeds),
            });
        }
        return Ok(RedisConfig {
            url: cluster_urls[0].clone(),
            key_prefix,
            cluster_urls,
            tls: tls_config(r, tls)?,
        });
    }
    let raw = r
        .opt("REDIS_URL")
        .unwrap_or_else(|| "localhost:6379".into());
    let url = normalize(&raw, password.as_deref(), db).map_err(|got| ConfigError {
        var: "REDIS_URL",
        expected: "host:port or a redis:// or rediss:// URL".into(),
        got: Some(got),
    })?;
    Ok(RedisConfig {
        tls: tls_config(r, url.starts_with("rediss://"))?,
        url,
        key_prefix,
        cluster_urls: Vec::new(),
    })
}

/// `REDIS_TLS_VERIFY` and `REDIS_TLS_CA_FILE`, refused without TLS (a CA file next to a
/// plain `redis://` URL is most likely a URL missing its `s`).
fn tls_config(r: &Reader<'_>, tls: bool) -> Result<RedisTls, ConfigError> {
    let verify = match r.opt("REDIS_TLS_VERIFY").as_deref() {
        None | Some("full") => Verify::Full,
        Some("ca") => Verify::Chain,
        Some("none") => Verify::Nothing,
        Some(other) => {
            return Err(ConfigError {
                var: "REDIS_TLS_VERIFY",
                expected: "full, ca or none".into(),
                got: Some(other.to_string()),
            });
        }
    };
    let ca_file = r.opt("REDIS_TLS_CA_FILE");
    for (var, set) in [
        ("REDIS_TLS_VERIFY", r.opt("REDIS_TLS_VERIFY").is_some()),
        ("REDIS_TLS_CA_FILE", ca_file.is_some()),
    ] {
        if set && !tls {
            return Err(ConfigError {
                var,
                expected: "to be set only with rediss:// URLs (TLS)".into(),
                got: None,
            });
        }
    }
    let ca_pem = match ca_file {
        None => None,
        Some(path) => {
            let bad = |e: String| ConfigError {
                var: "REDIS_TLS_CA_FILE",
                expected: format!("a readable PEM file of CA certificates ({e})"),
                got: Some(path.clone()),
            };
            crate::tls::read_pem_certs(&path).map_err(bad)?;
            Some(std::fs::read(&path).map_err(|e| bad(e.to_string()))?)
        }
    };
    Ok(RedisTls { verify, ca_pem })
}

/// `raw` (`host:port`, `redis://…` or `rediss://…`) as a URL with `password` and `db`
/// applied where it has none; the redacted input when it is not a valid address.
fn normalize(raw: &str, password: Option<&str>, db: u32) -> Result<String, String> {
    let bad = || redact_url(raw);
    let scheme = if raw.starts_with("rediss://") {
        "rediss"
    } else {
        "redis"
    };
    let url = if let Some(rest) = raw
        .strip_prefix("redis://")
        .or_else(|| raw.strip_prefix("rediss://"))
    {
        let mut url = raw.to_string();
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(bad());
        }
        if let Some(pw) = password
            && !authority.contains('@')
        {
            url = format!("{scheme}://:{}@{}", percent_encode(pw), rest);
        }
        if db != 0 && path.trim_matches('/').is_empty() {
            url = format!("{}/{db}", url.trim_end_matches('/'));
        }
        url
    } else if raw.contains("://") {
        return Err(bad());
    } else {
        let (host, port) = raw.rsplit_once(':').unwrap_or((raw, "6379"));
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad());
        }
        let auth = password
            .map(|p| format!(":{}@", percent_encode(p)))
            .unwrap_or_default();
        format!("redis://{auth}{host}:{port}/{db}")
    };
    if redis::Client::open(url.as_str()).is_err() {
        return Err(bad());
    }
    Ok(url)
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
