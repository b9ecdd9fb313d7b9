//! This node among the others: its registry heartbeat and the reaping of nodes whose
//! heartbeat stopped, the node list with liveness (admin), the node a client is offered
//! with its WebSocket token, readiness, and leaving the registry at shutdown.

use std::time::Duration;

use serde::Serialize;

use super::Services;
use crate::cluster::registry::{self, NodeInfo};
use crate::error::Result;

/// One registered node and whether it is live (heartbeat recent enough to be offered).
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The registry entry.
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Heartbeat within the stale limit.
    pub live: bool,
}

/// A short-lived WebSocket token and where to use it.
#[derive(Debug, Clone)]
pub struct WsToken {
    /// The token.
    pub token: String,
    /// The live node with the fewest connections, or this node.
    pub ws_url: String,
    /// How long the token is valid.
    pub ttl: Duration,
}

/// Whether PostgreSQL and Redis answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// PostgreSQL answered.
    pub postgres: bool,
    /// Redis answered.
    pub redis: bool,
}

/// How long a readiness check waits for each dependency.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

impl Services {
    /// Every registered node, live or not, by node id.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>> {
        let now = registry::now_ms();
        let mut nodes: Vec<NodeStatus> = self
            .registry
            .all()
            .await?
            .into_iter()
            .map(|info| NodeStatus {
                live: info.age(now) <= registry::STALE_AFTER,
                info,
            })
            .collect();
        nodes.sort_by(|a, b| a.info.node_id.cmp(&b.info.node_id));
        Ok(nodes)
    }

    /// A WebSocket token for `user` and the `ws_url` of the live node with the fewest
    /// connections (this node when the registry is empty or unavailable).
    pub async fn ws_token(&self, user: crate::model::UserId) -> WsToken {
        let ttl = self.config.ws_token_ttl;
        let token = self.tokens.issue_ws(user, ttl);
        let ws_url = match self.registry.live().await {
            Ok(nodes) if !nodes.is_empty() => nodes[0].ws_url.clone(),
            Ok(_) => self.config.ws_public_url.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "registry unavailable; offering this node");
                self.config.ws_public_url.clone()
            }
        };
        WsToken { token, ws_url, ttl }
    }

    /// Pings PostgreSQL and Redis at once, each within 2 s.
    pub async fn readiness(&self) -> Readiness {
        let (pg, redis) = tokio::join!(
            tokio::time::timeout(READY_TIMEOUT, self.store.ping()),
            tokio::time::timeout(READY_TIMEOUT, crate::cluster::ping(&self.redis)),
        );
        Readiness {
            postgres: matches!(pg, Ok(Ok(()))),
            redis: matches!(redis, Ok(Ok(()))),
        }
    }

    /// The PostgreSQL pool's size and idle connections.
    pub fn db_pool_status(&self) -> (usize, usize) {
        self.store.pool_status()
    }

    /// Writes this node's registry entry. True when the entry was missing (a first
    /// heartbeat, or another node had reaped this one).
    pub async fn registry_heartbeat(
        &self,
        connections: u64,
        started_ms: u64,
        accepting: bool,
    ) -> Result<bool> {
        let info = NodeInfo {
            node_id: self.config.node_id.clone(),
            ws_url: self.config.ws_public_url.clone(),
            connections,
            heartbeat_ms: registry::now_ms(),
            started_ms,
            version: env!("CARGO_PKG_VERSION").to_string(),
            accepting,
        };
        self.registry.heartbeat(&info).await
    }

    /// Takes this node out of the registry (shutdown).
    pub async fn leave_registry(&self) -> Result<()> {
        self.registry.remove(&self.config.node_id).await
    }

    /// Takes the users of nodes whose heartbeat stopped offline (one live node does it,
    /// under a lock per dead node).
    pub async fn reap_dead_nodes(&self) {
        let Ok(nodes) = self.registry.all().await else {
            return;
        };
        let now = registry::now_ms();
        for dead in nodes
            .iter()
            .filter(|n| n.age(now) > registry::DEAD_AFTER && n.node_id != self.config.node_id)
        {
            match self.registry.lock_reaper(&dead.node_id).await {
                Ok(true) => {}
                _ => continue,
            }
            tracing::warn!(node = %dead.node_id, "node stopped heartbeating; taking its users offline");
            match self.presence.remove_node(&dead.node_id).await {
                Ok(offline) => {
                    for user in offline {
                        if let Err(e) = self.presence_changed(user, false).await {
                            tracing::warn!(%user, error = %e, "offline announcement failed");
                        }
                    }
                    let _ = self.registry.remove(&dead.node_id).await;
                }
                Err(e) => {
                    tracing::warn!(node = %dead.node_id, error = %e, "dead node cleanup failed")
                }
            }
        }
    }
}
