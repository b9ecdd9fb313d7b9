//! Domain services: the rules of the product (conversations, messages, delivery, settings),
//! shared by the WebSocket and HTTP layers so a rule is the same whichever way it is used.

pub mod settings;

use std::sync::Arc;

use redis::aio::ConnectionManager;

use crate::auth::Tokens;
use crate::cluster::Keys;
use crate::config::Config;
use crate::store::Store;
use settings::SettingsCache;

/// Handles to everything the domain needs; cheap to clone.
#[derive(Clone)]
pub struct Services {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// PostgreSQL.
    pub store: Store,
    /// The multiplexed Redis command connection.
    pub redis: ConnectionManager,
    /// Redis key names.
    pub keys: Keys,
    /// Token verification and issuing.
    pub tokens: Tokens,
    /// The in-memory settings.
    pub settings: SettingsCache,
}

impl Services {
    /// Validates and stores a setting, reloads this node's cache and tells every other node
    /// to reload. Returns the stored value.
    pub async fn update_setting(&self, key: &str, value: &str) -> crate::error::Result<()> {
        settings::validate(key, value)?;
        let conn = self.store.conn().await?;
        crate::store::settings::upsert(&**conn, key, value).await?;
        self.reload_settings().await
    }

    /// Re-reads the settings here and asks every node to do the same.
    pub async fn reload_settings(&self) -> crate::error::Result<()> {
        let conn = self.store.conn().await?;
        self.settings.reload(&**conn).await?;
        drop(conn);
        let mut redis = self.redis.clone();
        let published: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(self.keys.control_channel())
            .arg("settings")
            .query_async(&mut redis)
            .await;
        if let Err(e) = published {
            // Other nodes still pick the change up by their periodic reload.
            tracing::warn!(error = %e, "could not announce settings change");
            metrics::counter!(crate::metrics::REDIS_PUBLISH_ERRORS).increment(1);
        }
        Ok(())
    }
}
