//! The node registry: every node writes its id, public `ws_url` and connection count into
//! one Redis hash every few seconds. A Gateway (or `POST /api/v1/ws-token`) picks the live
//! node with the fewest connections; a node whose heartbeat stops is dead, and one live node
//! (under a lock) takes its users offline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Keys, Redis};
use crate::error::Result;

/// How often a node writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A node whose heartbeat is older than this is not offered to clients.
pub const STALE_AFTER: Duration = Duration::from_secs(15);
/// A node whose heartbeat is older than this is dead: its devices are removed.
pub const DEAD_AFTER: Duration = Duration::from_secs(20);

/// One node's entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    /// `NODE_ID`.
    pub node_id: String,
    /// `WS_PUBLIC_URL`.
    pub ws_url: String,
    /// Open WebSocket connections.
    pub connections: u64,
    /// Last heartbeat, Unix milliseconds.
    pub heartbeat_ms: u64,
    /// Start time, Unix milliseconds.
    pub started_ms: u64,
    /// Server version.
    pub version: String,
    /// False while draining.
    #[serde(default = "yes")]
    pub accepting: bool,
}

fn yes() -> bool {
    true
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl NodeInfo {
    /// Age of the heartbeat.
    pub fn age(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.heartbeat_ms))
    }
}

/// Registry operations; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    redis: Redis,
    keys: Keys,
}

impl Registry {
    /// The registry in this Redis.
    pub fn new(redis: Redis, keys: Keys) -> Self {
        Registry { redis, keys }
    }

    /// Writes (or refreshes) `info`. Returns true when the entry was missing (a first
    /// heartbeat, or another node had reaped this one).
    pub async fn heartbeat(&self, info: &NodeInfo) -> Result<bool> {
        let json = serde_json::to_string(info)
            .map_err(|e| crate::error::Error::internal(e.to_string()))?;
        let mut redis = self.redis.clone();
        let created: i64 = redis::cmd("HSET")
            .arg(self.keys.registry())
            .arg(&info.node_id)
            .arg(json)
            .query_async(&mut redis)
            .await?;
        Ok(created == 1)
    }

    /// Removes `node_id` from the registry.
    pub async fn remove(&self, node_id: &str) -> Result<()> {
        let mut redis = self.redis.clone();
        redis::cmd("HDEL")
            .arg(self.keys.registry())
            .arg(node_id)
            .query_async::<()>(&mut redis)
            .await?;
        Ok(())
    }

    /// Every registered node, live or not.
    pub async fn all(&self) -> Result<Vec<NodeInfo>> {
        let mut redis = self.redis.clone();
        let values: Vec<String> = redis::cmd("HVALS")
            .arg(self.keys.registry())
            .query_async(&mut redis)
            .await?;
        Ok(values
            .iter()
            .filter_map(|v| serde_json::from_str(v).ok())
            .collect())
    }

    /// Live, accepting nodes, fewest connections first.
    pub async fn live(&self) -> Result<Vec<NodeInfo>> {
        let now = now_ms();
        let mut nodes: Vec<NodeInfo> = self
            .all()
            .await?
            .into_iter()
            .filter(|n| n.accepting && n.age(now) <= STALE_AFTER)
            .collect();
        nodes.sort_by_key(|n| (n.connections, n.node_id.clone()));
        Ok(nodes)
    }

    /// Takes the cleanup lock for a dead node; true when this node should clean up.
    pub async fn lock_reaper(&self, dead: &str) -> Result<bool> {
        let mut redis = self.redis.clone();
        let got: Option<String> = redis::cmd("SET")
            .arg(self.keys.reaper_lock(dead))
            .arg("1")
            .arg("NX")
            .arg("EX")
            .arg(60)
            .query_async(&mut redis)
            .await?;
        Ok(got.is_some())
    }
}
