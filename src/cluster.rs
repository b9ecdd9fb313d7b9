//! Everything that crosses nodes goes through Redis: the per-user channels, the fan-out
//! channels, presence, the node registry and the control channel. This module owns the Redis connections and the
//! key names; it knows nothing of PostgreSQL, HTTP or WebSocket frames.

pub mod bus;
pub mod conn;
mod dispatch;
pub mod envelope;
pub mod keys;
pub mod presence;
pub mod profiles;
pub mod registry;
mod sharded;
mod subscriber;
mod wishes;

use std::time::Duration;

use redis::aio::ConnectionManagerConfig;

use crate::config::RedisConfig;
use crate::error::Result;
pub use conn::Redis;
pub use keys::Keys;

/// Settings shared by every Redis connection of a node: short timeouts and a capped
/// backoff, so a Redis restart is noticed and repaired in about a second.
pub fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_number_of_retries(20)
}

/// Opens the multiplexed command connection (to one server or a cluster), retrying until
/// `timeout` has passed.
pub async fn connect(config: &RedisConfig, timeout: Duration) -> Result<Redis> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(100);
    loop {
        match tokio::time::timeout(Duration::from_secs(3), conn::open(config)).await {
            Ok(Ok(conn)) => return Ok(conn),
            Ok(Err(e)) if tokio::time::Instant::now() + delay >= deadline => {
                return Err(tls_hint(config, e).into());
            }
            Err(_) if tokio::time::Instant::now() + delay >= deadline => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "timed out connecting to Redis",
                ))
                .into());
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "Redis not reachable yet, retrying"),
            Err(_) => tracing::warn!("Redis connect timed out, retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// `e`, with a hint when a plain connection was cut during set-up: that is what a server
/// accepting only TLS does with it.
fn tls_hint(config: &RedisConfig, e: redis::RedisError) -> redis::RedisError {
    let cut = e.is_connection_dropped() && !e.is_connection_refusal();
    if config.is_tls() || !cut {
        return e;
    }
    redis::RedisError::from((
        redis::ErrorKind::Io,
        "the server closed the connection",
        format!("{e}; if it accepts only TLS, use a rediss:// URL"),
    ))
}

/// Answers when Redis is reachable (used by `/ready`).
pub async fn ping(conn: &Redis) -> Result<()> {
    let mut conn = conn.clone();
    redis::cmd("PING").query_async::<String>(&mut conn).await?;
    Ok(())
}
