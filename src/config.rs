//! Configuration: read once from the environment (and an optional `.env` file), validated
//! before anything binds a port.
//!
//! Variable names are the original service's (`PORT`, `DATABASE_URL`, `REDIS_URL`, …) plus
//! new ones in the same plain style. Parsing goes through the [`Env`] trait so tests pass a
//! map instead of mutating the process environment. A bad value is a [`ConfigError`] that
//! names the variable and says what is expected; `main` turns it into exit code 64.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use uuid::Uuid;

mod env;
mod reader;
mod redis_url;
mod secrets;

pub use env::{Env, ProcessEnv, parse_dotenv};
use reader::Reader;

pub use redis_url::RedisConfig;
use redis_url::redis_config;
use secrets::STRONG_SECRET;
pub use secrets::{MIN_SECRET_BYTES, check_jwt_secret};

/// A configuration value that is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable at fault.
    pub var: &'static str,
    /// What a valid value looks like.
    pub expected: String,
    /// The value that was given, when one was (never printed for secrets).
    pub got: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.got {
            Some(got) => write!(f, "{}: expected {}, got {:?}", self.var, self.expected, got),
            None => write!(f, "{}: expected {}", self.var, self.expected),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Plain,
    /// One JSON object per line, for Kubernetes log collectors.
    Json,
}

/// The whole configuration of a node.
#[derive(Clone)]
pub struct Config {
    /// Address to bind (`BIND_ADDRESS`, default `0.0.0.0`).
    pub bind_address: IpAddr,
    /// HTTP and WebSocket port (`PORT`, default 8083).
    pub port: u16,
    /// A separate port for `/metrics` (`METRICS_PORT`, optional); the public port stops
    /// serving `/metrics` when it is set.
    pub metrics_port: Option<u16>,
    /// PostgreSQL connection string (`DATABASE_URL`, required).
    pub database_url: String,
    /// PostgreSQL pool size (`DB_POOL_SIZE`, default 32).
    pub db_pool_size: usize,
    /// `statement_timeout` of every PostgreSQL session (`DB_STATEMENT_TIMEOUT_MS`, default
    /// 30000; 0 = none). Migrations run without one.
    pub db_statement_timeout: Duration,
    /// A read replica for message history and search (`DATABASE_READ_URL`, optional;
    /// without it those reads go to `database_url`).
    pub database_read_url: Option<String>,
    /// Redis location (`REDIS_URL`, `REDIS_PASSWORD`, `REDIS_DB`, `REDIS_KEY_PREFIX`).
    pub redis: RedisConfig,
    /// HMAC key for every token (`JWT_SECRET`, required, at least 32 bytes, not a shipped
    /// placeholder).
    pub jwt_secret: String,
    /// The key before a rotation (`JWT_SECRET_PREVIOUS`, optional): verifies, never signs.
    pub jwt_secret_previous: Option<String>,
    /// Default for the `max_video_size_mb` setting when it is first seeded
    /// (`MAX_VIDEO_SIZE_MB`, default 50).
    pub max_video_size_mb: u64,
    /// Lifetime of tokens issued by `POST /api/v1/ws-token` (`WS_TOKEN_TTL`, default 300 s).
    pub ws_token_ttl: Duration,
    /// Profile service base URL (`AGENT_URL`); enrichment is off when unset.
    pub agent_url: Option<String>,
    /// This node's id in the registry and in cluster envelopes (`NODE_ID`).
    pub node_id: String,
    /// The `ws_url` this node advertises (`WS_PUBLIC_URL`).
    pub ws_public_url: String,
    /// Users who may call admin routes even without the `role: admin` claim.
    pub admin_user_ids: HashSet<Uuid>,
    /// Allowed WebSocket `Origin` values (`ALLOWED_ORIGINS`, comma separated); empty = any.
    pub allowed_origins: Vec<String>,
    /// `LOG_FORMAT`: `plain` (default) or `json`.
    pub log_format: LogFormat,
    /// `LOG_LEVEL`: a tracing filter, default `info`.
    pub log_level: String,
    /// Time allowed for a graceful drain (`SHUTDOWN_GRACE_SECONDS`, default 25).
    pub shutdown_grace: Duration,
    /// How long start-up keeps retrying PostgreSQL and Redis (`STARTUP_TIMEOUT_SECONDS`, 30).
    pub startup_timeout: Duration,
    /// Per-node WebSocket connection cap (`MAX_CONNECTIONS`, default 100000).
    pub max_connections: usize,
    /// Outbound frames queued per connection before it is closed with 1013
    /// (`WS_QUEUE_SIZE`, default 1024).
    pub ws_queue_size: usize,
    /// Server ping interval (`WS_PING_SECONDS`, default 20).
    pub ws_ping: Duration,
    /// A connection silent this long is closed (`WS_IDLE_TIMEOUT_SECONDS`, default 60).
    pub ws_idle_timeout: Duration,
    /// HTTP requests one user may make a second on this node (`HTTP_RATE_PER_SECOND`,
    /// default 50; 0 = no limit).
    pub http_rate_per_second: u32,
    /// Such requests at once (`HTTP_RATE_BURST`, default 100).
    pub http_rate_burst: u32,
    /// Frames other than `message` a connection may send a second (`WS_FRAME_RATE`,
    /// default 50; 0 = no budget).
    pub ws_frame_rate: u32,
    /// Such frames at once (`WS_FRAME_BURST`, default 200).
    pub ws_frame_burst: u32,
    /// `typing` is published at most once per this per user and conversation
    /// (`WS_TYPING_INTERVAL_MS`, default 2000; 0 = every one).
    pub ws_typing_interval: Duration,
    /// Parallel writer transactions (`WRITER_SHARDS`, default 1; more help when PostgreSQL has
    /// cores to spare, fewer make bigger batches).
    pub writer_shards: usize,
    /// Recipients from which one event for many users (a group message, typing, a receipt)
    /// is published once on a fan-out channel instead of once per user
    /// (`GROUP_FANOUT_MIN_MEMBERS`, default 100; 0: never).
    pub group_fanout_min_members: usize,
    /// Admission control: refuse a send (`overloaded`) when its writer queue would take longer
    /// than this to drain (`SEND_QUEUE_TARGET_MS`, default 1000).
    pub send_queue_target: Duration,
    /// Admission control: refuse a queued send that waited longer than this
    /// (`SEND_DEADLINE_MS`, default 4000).
    pub send_deadline: Duration,
    /// Work beyond `send_queue_target` a calm writer shard accepts from a burst
    /// (`SEND_BURST_MS`, default 2000; 0 = none).
    pub send_burst: Duration,
    /// Admission control: refuse sends while the node's timers fire later than this
    /// (`SEND_LAG_LIMIT_MS`, default 500).
    pub send_lag_limit: Duration,
    /// Kernel send buffer per client socket (`SOCKET_SEND_BUFFER_BYTES`); unset leaves the
    /// kernel's autotuning. Small values bound kernel memory per slow client and make a
    /// stalled client hit its queue limit (1013) sooner.
    pub socket_send_buffer: Option<usize>,
    /// Serve the web client at `/` and the token route `POST /api/dev/token` (`DEV_UI`,
    /// default off). For trying the server only: the token route signs any user, admins too,
    /// so it is refused unless `BIND_ADDRESS` is a loopback address or `DEV_UI_PUBLIC=1`.
    pub dev_ui: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind_address", &self.bind_address)
            .field("port", &self.port)
            .field("metrics_port", &self.metrics_port)
            .field("database_url", &redact_url(&self.database_url))
            .field("db_pool_size", &self.db_pool_size)
            .field("db_statement_timeout", &self.db_statement_timeout)
            .field(
                "database_read_url",
                &self.database_read_url.as_deref().map(redact_url),
            )
            .field("redis", &self.redis)
            .field("jwt_secret", &"<redacted>")
            .field(
                "jwt_secret_previous",
                &self.jwt_secret_previous.as_ref().map(|_| "<redacted>"),
            )
            .field("max_video_size_mb", &self.max_video_size_mb)
            .field("ws_token_ttl", &self.ws_token_ttl)
            .field("agent_url", &self.agent_url)
            .field("node_id", &self.node_id)
            .field("ws_public_url", &self.ws_public_url)
            .field("admin_user_ids", &self.admin_user_ids.len())
            .field("allowed_origins", &self.allowed_origins)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("startup_timeout", &self.startup_timeout)
            .field("max_connections", &self.max_connections)
            .field("ws_queue_size", &self.ws_queue_size)
            .field("ws_ping", &self.ws_ping)
            .field("ws_idle_timeout", &self.ws_idle_timeout)
            .field("http_rate_per_second", &self.http_rate_per_second)
            .field("http_rate_burst", &self.http_rate_burst)
            .field("ws_frame_rate", &self.ws_frame_rate)
            .field("ws_frame_burst", &self.ws_frame_burst)
            .field("ws_typing_interval", &self.ws_typing_interval)
            .field("writer_shards", &self.writer_shards)
            .field("group_fanout_min_members", &self.group_fanout_min_members)
            .field("send_queue_target", &self.send_queue_target)
            .field("send_deadline", &self.send_deadline)
            .field("send_burst", &self.send_burst)
            .field("send_lag_limit", &self.send_lag_limit)
            .field("socket_send_buffer", &self.socket_send_buffer)
            .field("dev_ui", &self.dev_ui)
            .finish()
    }
}

/// A PostgreSQL URL must parse, name a host, and have usable TLS settings (`sslmode`, a
/// readable `sslrootcert`; see `tls::postgres`).
fn check_postgres_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
    let example = "a PostgreSQL URL with a host, such as postgres://user:pass@host:5432/dinq";
    let bad = |expected: String| ConfigError {
        var,
        expected,
        got: Some(redact_url(url)),
    };
    let (pg, tls) =
        crate::tls::postgres::parse(url).map_err(|e| bad(format!("{example} ({e})")))?;
    if pg.get_hosts().is_empty() {
        return Err(bad(example.into()));
    }
    tls.connector()
        .map_err(|e| bad(format!("usable TLS settings: {e}")))?;
    Ok(())
}

/// Replaces the password part of a URL (`scheme://user:secret@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Config {
    /// Reads and validates the whole configuration.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let r = Reader { env };
        let port: u16 = r.number("PORT", 8083, 1, 65535)?;
        let metrics_port = match r.opt("METRICS_PORT") {
            None => None,
            Some(_) => match r.number("METRICS_PORT", 0u16, 1, 65535)? {
                p if p == port => {
                    return Err(ConfigError {
                        var: "METRICS_PORT",
                        expected: "a port other than PORT".into(),
                        got: Some(p.to_string()),
                    });
                }
                p => Some(p),
            },
        };
        let bind_address = match r.opt("BIND_ADDRESS") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(raw) => raw.parse().map_err(|_| ConfigError {
                var: "BIND_ADDRESS",
                expected: "an IP address such as 0.0.0.0 or 127.0.0.1".into(),
                got: Some(raw),
            })?,
        };
        let database_url = r.required(
            "DATABASE_URL",
            "a PostgreSQL URL such as postgres://user:pass@host:5432/dinq",
        )?;
        check_postgres_url("DATABASE_URL", &database_url)?;
        let database_read_url = r.opt("DATABASE_READ_URL");
        if let Some(url) = &database_read_url {
            check_postgres_url("DATABASE_READ_URL", url)?;
        }
        let jwt_secret = r
            .env
            .get("JWT_SECRET")
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ConfigError {
                var: "JWT_SECRET",
                expected: format!(
                    "a non-empty secret (the HMAC key shared with the Gateway), {STRONG_SECRET}"
                ),
                got: None,
            })?;
        check_jwt_secret("JWT_SECRET", &jwt_secret)?;
        let jwt_secret_previous = r.env.get("JWT_SECRET_PREVIOUS").filter(|s| !s.is_empty());
        if let Some(previous) = &jwt_secret_previous {
            check_jwt_secret("JWT_SECRET_PREVIOUS", previous)?;
        }
        let redis = redis_config(&r)?;
        let node_id = match r.opt("NODE_ID") {
            Some(id) => {
                if id.len() > 64
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(ConfigError {
                        var: "NODE_ID",
                        expected: "up to 64 characters of letters, digits, '-', '_' or '.'".into(),
                        got: Some(id),
                    });
                }
                id
            }
            None => default_node_id(r.opt("HOSTNAME")),
        };
        let ws_public_url = match r.opt("WS_PUBLIC_URL") {
            Some(url) if url.starts_with("ws://") || url.starts_with("wss://") => url,
            Some(url) => {
                return Err(ConfigError {
                    var: "WS_PUBLIC_URL",
                    expected: "a ws:// or wss:// URL such as wss://chat.example.com/ws".into(),
                    got: Some(url),
                });
            }
            None => format!("ws://localhost:{port}/ws"),
        };
        let mut admin_user_ids = HashSet::new();
        for raw in r.opt("ADMIN_USER_IDS").unwrap_or_default().split(',') {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            match Uuid::parse_str(raw) {
                Ok(id) if !id.is_nil() => {
                    admin_user_ids.insert(id);
                }
                _ => {
                    return Err(ConfigError {
                        var: "ADMIN_USER_IDS",
                        expected: "a comma-separated list of user UUIDs".into(),
                        got: Some(raw.to_string()),
                    });
                }
            }
        }
        let allowed_origins = r
            .opt("ALLOWED_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        let log_format = match r.opt("LOG_FORMAT").as_deref() {
            None | Some("plain") => LogFormat::Plain,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError {
                    var: "LOG_FORMAT",
                    expected: "plain or json".into(),
                    got: Some(other.to_string()),
                });
            }
        };
        let log_level = r.opt("LOG_LEVEL").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(ConfigError {
                var: "LOG_LEVEL",
                expected: "a tracing filter such as info or dinq_message=debug,info".into(),
                got: Some(log_level),
            });
        }
        let agent_url = match r.opt("AGENT_URL") {
            Some(url) if url.starts_with("http://") => Some(url.trim_end_matches('/').to_string()),
            Some(url) => {
                return Err(ConfigError {
                    var: "AGENT_URL",
                    expected: "an http:// URL of the profile service".into(),
                    got: Some(url),
                });
            }
            None => None,
        };
        Ok(Config {
            bind_address,
            port,
            metrics_port,
            database_url,
            database_read_url,
            db_pool_size: r.number("DB_POOL_SIZE", 32, 2, 1000)?,
            db_statement_timeout: Duration::from_millis(r.number(
                "DB_STATEMENT_TIMEOUT_MS",
                30_000,
                0,
                86_400_000,
            )?),
            redis,
            jwt_secret,
            jwt_secret_previous,
            max_video_size_mb: r.number("MAX_VIDEO_SIZE_MB", 50, 1, 100_000)?,
            ws_token_ttl: Duration::from_secs(r.number("WS_TOKEN_TTL", 300, 10, 86_400)?),
            agent_url,
            node_id,
            ws_public_url,
            admin_user_ids,
            allowed_origins,
            log_format,
            log_level,
            shutdown_grace: Duration::from_secs(r.number("SHUTDOWN_GRACE_SECONDS", 25, 1, 3600)?),
            startup_timeout: Duration::from_secs(r.number(
                "STARTUP_TIMEOUT_SECONDS",
                30,
                1,
                3600,
            )?),
            max_connections: r.number("MAX_CONNECTIONS", 100_000, 1, 10_000_000)?,
            ws_queue_size: r.number("WS_QUEUE_SIZE", 1024, 1, 1_000_000)?,
            ws_ping: Duration::from_secs(r.number("WS_PING_SECONDS", 20, 1, 3600)?),
            ws_idle_timeout: Duration::from_secs(r.number(
                "WS_IDLE_TIMEOUT_SECONDS",
                60,
                2,
                86_400,
            )?),
            http_rate_per_second: r.number("HTTP_RATE_PER_SECOND", 50, 0, 1_000_000)?,
            http_rate_burst: r.number("HTTP_RATE_BURST", 100, 1, 1_000_000)?,
            ws_frame_rate: r.number("WS_FRAME_RATE", 50, 0, 1_000_000)?,
            ws_frame_burst: r.number("WS_FRAME_BURST", 200, 1, 1_000_000)?,
            ws_typing_interval: Duration::from_millis(r.number(
                "WS_TYPING_INTERVAL_MS",
                2000,
                0,
                60_000,
            )?),
            writer_shards: r.number("WRITER_SHARDS", 1, 1, 64)?,
            group_fanout_min_members: r.number("GROUP_FANOUT_MIN_MEMBERS", 100, 0, 10_000_000)?,
            send_queue_target: Duration::from_millis(r.number(
                "SEND_QUEUE_TARGET_MS",
                1000,
                1,
                60_000,
            )?),
            send_burst: Duration::from_millis(r.number("SEND_BURST_MS", 2000, 0, 600_000)?),
            send_deadline: Duration::from_millis(r.number("SEND_DEADLINE_MS", 4000, 1, 600_000)?),
            send_lag_limit: Duration::from_millis(r.number(
                "SEND_LAG_LIMIT_MS",
                500,
                1,
                600_000,
            )?),
            socket_send_buffer: match r.opt("SOCKET_SEND_BUFFER_BYTES") {
                None => None,
                Some(_) => Some(r.number("SOCKET_SEND_BUFFER_BYTES", 0, 4096, 64 << 20)?),
            },
            dev_ui: dev_ui(&r, bind_address)?,
        })
    }
}

/// `DEV_UI`, refused on a non-loopback `bind_address` unless `DEV_UI_PUBLIC` says so.
fn dev_ui(r: &Reader<'_>, bind_address: IpAddr) -> Result<bool, ConfigError> {
    let on = r.boolean("DEV_UI", false)?;
    let public = r.boolean("DEV_UI_PUBLIC", false)?;
    if on && !bind_address.is_loopback() && !public {
        return Err(ConfigError {
            var: "DEV_UI",
            expected: format!(
                "BIND_ADDRESS a loopback address (127.0.0.1 or ::1) with DEV_UI=1 (its token route \
                 signs tokens for anyone, admins too), or DEV_UI_PUBLIC=1 if exposing it on \
                 {bind_address} is intended"
            ),
            got: Some("1".into()),
        });
    }
    Ok(on)
}

fn default_node_id(hostname: Option<String>) -> String {
    let suffix = Uuid::new_v4().simple().to_string();
    match hostname {
        Some(h) if h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
            format!("{h}-{}", &suffix[..6])
        }
        _ => format!("node-{}", &suffix[..8]),
    }
}

#[cfg(test)]
mod tests;
