//! WebSocket entry: the handshake checks (token, origin, capacity) happen before the
//! upgrade, then the connection runs in [`session`]. [`crate::delivery`] holds the node's
//! connected users; [`protocol`] decodes client frames.

pub mod budget;
pub mod frames;
pub mod protocol;
pub mod session;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::delivery::Hub;
use crate::error::{Code, Error};

/// Settings of the WebSocket entry.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections this node accepts.
    pub max_connections: usize,
    /// Allowed `Origin` values; empty = any.
    pub allowed_origins: Vec<String>,
    /// Per-connection options.
    pub session: session::Options,
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `101 Switching Protocols` answer to an upgrade; the HTTP layer sends it.
pub type Switching = Response<Empty<Bytes>>;

/// `GET /ws?token=…[&ack=1]`: checks the token, origin and capacity, then upgrades.
pub async fn upgrade(
    hub: &Arc<Hub>,
    limits: &Limits,
    draining: bool,
    mut req: Request<Incoming>,
) -> Result<Switching, Error> {
    let query = req.uri().query().unwrap_or("");
    let token = query_param(query, "token").unwrap_or("");
    if token.is_empty() {
        return Err(Error::unauthorized(Code::MissingToken, "missing token"));
    }
    let caller = hub.services().tokens().verify(token).map_err(|e| {
        tracing::debug!(error = %e, "WebSocket token refused");
        Error::invalid_token()
    })?;
    let ack_mode = matches!(query_param(query, "ack"), Some("1" | "true"));
    if !limits.allowed_origins.is_empty()
        && let Some(origin) = req.headers().get(hyper::header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
        if !limits.allowed_origins.iter().any(|o| o == origin) {
            return Err(Error::forbidden(
                Code::OriginNotAllowed,
                "origin not allowed",
            ));
        }
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return Err(Error::bad_request(
            Code::NotWebsocket,
            "expected a WebSocket upgrade request",
        ));
    }
    if draining {
        return Err(Error::client(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Draining,
            "node is draining; connect to another node",
        ));
    }
    if hub.connections() >= limits.max_connections {
        return Err(Error::client(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::TooManyConnections,
            "this node is at its connection limit; connect to another node",
        ));
    }
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req).map_err(|e| {
        Error::bad_request(Code::NotWebsocket, format!("WebSocket upgrade failed: {e}"))
    })?;
    let options = limits.session;
    let prepared = session::prepare(hub, caller.user_id, ack_mode, options).await;
    let hub = hub.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(ws) => session::run(ws, hub, prepared, options).await,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade did not complete");
                session::abandon(&hub, prepared).await;
            }
        }
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_params() {
        assert_eq!(super::query_param("token=abc&ack=1", "token"), Some("abc"));
        assert_eq!(super::query_param("token=abc&ack=1", "ack"), Some("1"));
        assert_eq!(super::query_param("ack&token=", "token"), Some(""));
        assert_eq!(super::query_param("", "token"), None);
    }
}
