//! Probes and metrics: `/health` (liveness, no dependencies), `/ready` (PostgreSQL and
//! Redis answer, and the node is not shutting down), `/metrics` (Prometheus text).

use hyper::StatusCode;
use serde_json::json;

use super::Ctx;
use super::response::{self, Resp};
use crate::error::{Code, Error, Result};

/// `GET /health`: the process is alive.
pub fn health() -> Resp {
    response::ok(json!({"status": "ok"}))
}

/// `GET /ready`: 200 when this node should receive traffic, 503 otherwise.
pub async fn ready(ctx: &Ctx) -> Result<Resp> {
    if !ctx.shutdown.is_ready() {
        let why = if ctx.shutdown.is_shutting_down() {
            "shutting down"
        } else {
            "starting"
        };
        return Err(Error::client(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::NotReady,
            format!("not ready: {why}"),
        ));
    }
    let services = &ctx.services;
    let r = services.readiness().await;
    let (pg_ok, redis_ok) = (r.postgres, r.redis);
    if pg_ok && redis_ok {
        return Ok(response::ok(
            json!({"status": "ready", "node_id": services.config().node_id}),
        ));
    }
    let failing = match (pg_ok, redis_ok) {
        (false, false) => "PostgreSQL and Redis",
        (false, true) => "PostgreSQL",
        _ => "Redis",
    };
    Err(Error::client(
        StatusCode::SERVICE_UNAVAILABLE,
        Code::NotReady,
        format!("not ready: {failing} not answering"),
    ))
}

/// `GET /metrics`: Prometheus text exposition.
pub fn metrics(ctx: &Ctx) -> Resp {
    crate::metrics::update_process_metrics();
    let (size, idle) = ctx.services.db_pool_status();
    metrics::gauge!(crate::metrics::DB_POOL_SIZE).set(size as f64);
    metrics::gauge!(crate::metrics::DB_POOL_IDLE).set(idle as f64);
    response::text(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        ctx.metrics.render(),
    )
}
