//! Domain services: the rules of the product (conversations, messages, presence, settings),
//! shared by the WebSocket and HTTP layers so a rule is the same whichever way it is used.
//! What reaches a connected user, and when, is the `delivery` module, which uses this one.

pub mod chat;
pub mod conversations;
pub mod events;
pub mod groups;
pub mod members;
pub mod notifications;
pub mod presence;
pub mod profiles;
pub mod relationships;
pub mod routing;
pub mod search;
pub mod search_index;
pub mod send;
pub mod settings;
pub mod writer;

use std::sync::Arc;
use std::time::Instant;

use uuid::Uuid;

use crate::auth::Tokens;
use crate::cluster::Keys;
use crate::cluster::bus::Bus;
use crate::cluster::presence::Presence;
use crate::cluster::registry::Registry;
use crate::config::Config;
use crate::error::Result;
use crate::store::Store;
use members::MemberCache;
use send::Draft;
use settings::SettingsCache;
use writer::{Job, Reply, Writer};

/// Handles to everything the domain needs; cheap to clone.
#[derive(Clone)]
pub struct Services {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// PostgreSQL.
    pub store: Store,
    /// Where message history and search read: the read replica of `DATABASE_READ_URL`, or
    /// `store` itself.
    pub reader: Store,
    /// The multiplexed Redis command connection.
    pub redis: crate::cluster::Redis,
    /// Redis key names.
    pub keys: Keys,
    /// Token verification and issuing.
    pub tokens: Tokens,
    /// The in-memory settings.
    pub settings: SettingsCache,
    /// Per-user channels and the control channel.
    pub bus: Bus,
    /// Cluster-wide presence and the device limit.
    pub presence: Presence,
    /// The node registry.
    pub registry: Registry,
    /// Member lists and private pairs.
    pub members: Arc<MemberCache>,
    /// The batching writer.
    pub writer: Writer,
}

impl Services {
    /// Sends a message: static checks, the private conversation resolved (and created on
    /// the first message), then the batching writer. `reply` gets the outcome.
    pub async fn send(&self, sender: Uuid, draft: Draft, received: Instant, reply: Reply) {
        if let Err(e) = send::validate(&draft, sender, &self.settings.get()) {
            metrics::counter!(crate::metrics::MESSAGES_REJECTED, "code" => e.code()).increment(1);
            return reply(Err(e));
        }
        let conversation_id = match (draft.conversation_id, draft.receiver_id) {
            (Some(id), _) => id,
            (None, Some(receiver)) => match self.private_conversation(sender, receiver).await {
                Ok(id) => id,
                Err(e) => return reply(Err(e)),
            },
            (None, None) => unreachable!("validate requires a target"),
        };
        self.writer
            .submit(Job {
                sender,
                conversation_id,
                draft,
                received,
                reply,
            })
            .await;
    }

    /// The private conversation of two users, created when missing. Returns its id.
    pub async fn private_conversation(&self, a: Uuid, b: Uuid) -> Result<Uuid> {
        if let Some(id) = self.members.private_pair(a, b) {
            return Ok(id);
        }
        let mut conn = self.store.conn().await?;
        let (id, _created) =
            crate::store::conversations::get_or_create_private(&mut conn, a, b).await?;
        self.members.put_private_pair(a, b, id);
        Ok(id)
    }

    /// Validates and stores a setting, reloads this node's cache and tells every other node
    /// to reload. Returns the stored value.
    pub async fn update_setting(&self, key: &str, value: &str) -> crate::error::Result<()> {
        settings::validate(key, value)?;
        let conn = self.store.conn().await?;
        crate::store::settings::upsert(&conn, key, value).await?;
        self.reload_settings().await
    }

    /// Re-reads the settings here and asks every node to do the same.
    pub async fn reload_settings(&self) -> crate::error::Result<()> {
        let conn = self.store.conn().await?;
        self.settings.reload(&conn).await?;
        drop(conn);
        // Other nodes reload on this; if Redis loses it, their periodic reload catches up.
        self.bus
            .broadcast_control(bytes::Bytes::from_static(CONTROL_SETTINGS))
            .await;
        Ok(())
    }
}

/// Control message: reload settings.
pub const CONTROL_SETTINGS: &[u8] = b"settings";
/// Control message prefix: the members of the conversation that follows changed.
pub const CONTROL_MEMBERS: &[u8] = b"members:";

impl Services {
    /// Handles a control-channel message on this node.
    pub async fn on_control(&self, message: &[u8]) {
        if message == CONTROL_SETTINGS {
            if let Err(e) = self.reload_local_settings().await {
                tracing::warn!(error = %e, "settings reload failed");
            }
        } else if let Some(id) = message.strip_prefix(CONTROL_MEMBERS) {
            match std::str::from_utf8(id)
                .ok()
                .and_then(|s| Uuid::try_parse(s).ok())
            {
                Some(conv) => self.members.invalidate(conv),
                None => tracing::debug!("malformed members control message"),
            }
        }
    }

    /// Re-reads the settings into this node's cache only.
    pub async fn reload_local_settings(&self) -> Result<()> {
        let conn = self.store.conn().await?;
        if self.settings.reload(&conn).await? {
            tracing::info!("settings reloaded");
        }
        Ok(())
    }
}
