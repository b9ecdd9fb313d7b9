//! Idle connections: open many, keep them alive with heartbeats, and read each node's
//! resident memory before and after to get bytes per connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Recorder, bounded, connect};
use crate::Target;
use crate::api;

/// The outcome of one idle-connection step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionsResult {
    /// Connections asked for.
    pub target: usize,
    /// Connections open at the end.
    pub opened: usize,
    /// Connect failures.
    pub failed: usize,
    /// Connections opened per second.
    pub connects_per_second: f64,
    /// Resident memory growth of the nodes divided by the connections they hold, bytes.
    pub bytes_per_connection: f64,
    /// Per node: (url, RSS before, RSS after, connections).
    pub nodes: Vec<(String, f64, f64, f64)>,
}

/// Opens `n` idle connections spread over the nodes, holds them for `hold` with a
/// heartbeat every 15 s, then closes them.
pub async fn idle(target: &Target, n: usize, hold: Duration) -> Result<ConnectionsResult, String> {
    let mut before = Vec::new();
    for url in &target.nodes {
        before.push(api::metric(url, "process_resident_memory_bytes").await?);
    }
    let rec = Arc::new(Recorder::default());
    let t = Arc::new(target.clone());
    let started = Instant::now();
    let r = rec.clone();
    let peers = bounded("opening connections", (0..n).collect(), 256, move |i| {
        let (t, r) = (t.clone(), r.clone());
        async move { connect(&t, &r, Uuid::new_v4(), i, i).await }
    })
    .await;
    let connects_per_second = n as f64 / started.elapsed().as_secs_f64();
    let failed = peers.iter().filter(|p| p.is_err()).count();
    let peers: Vec<_> = peers.into_iter().filter_map(Result::ok).collect();
    let heartbeat = Bytes::from_static(br#"{"type":"heartbeat"}"#);
    let hold_until = Instant::now() + hold;
    while Instant::now() < hold_until {
        tokio::time::sleep(
            Duration::from_secs(15).min(hold_until.saturating_duration_since(Instant::now())),
        )
        .await;
        for p in &peers {
            p.conn.send(heartbeat.clone()).await;
        }
    }
    let mut nodes = Vec::new();
    let mut growth = 0.0;
    let mut held = 0.0;
    for (i, url) in target.nodes.iter().enumerate() {
        let after = api::metric(url, "process_resident_memory_bytes").await?;
        let conns = api::metric(url, "dinq_ws_connections").await.unwrap_or(0.0);
        growth += after - before[i];
        held += conns;
        nodes.push((url.clone(), before[i], after, conns));
    }
    let opened = peers.len();
    for p in &peers {
        p.conn.close().await;
    }
    Ok(ConnectionsResult {
        target: n,
        opened,
        failed,
        connects_per_second,
        bytes_per_connection: if held > 0.0 { growth / held } else { 0.0 },
        nodes,
    })
}
