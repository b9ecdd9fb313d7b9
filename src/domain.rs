//! Domain services: the rules of the product (conversations, messages, presence, settings),
//! shared by the WebSocket and HTTP layers so a rule is the same whichever way it is used.
//! What reaches a connected user, and when, is the `delivery` module, which uses this one.

pub mod chat;
pub mod conversations;
pub mod edit;
pub mod events;
pub mod export;
pub mod forward;
pub mod groups;
pub mod member_settings;
pub mod members;
pub mod node;
pub mod notifications;
pub mod presence;
pub mod profiles;
pub mod read_status;
pub mod relationships;
pub mod routing;
pub mod search;
pub mod search_index;
pub mod send;
pub mod settings;
pub mod writer;

use std::sync::Arc;
use std::time::Instant;

use crate::auth::Tokens;
use crate::cluster::bus::Bus;
use crate::cluster::presence::Presence;
use crate::cluster::profiles::ProfileCache;
use crate::cluster::registry::Registry;
use crate::cluster::{Keys, Redis};
use crate::config::Config;
use crate::error::Result;
use crate::model::{ConversationId, UserId};
use crate::store::Store;
use members::MemberCache;
use send::Draft;
use settings::{SettingsCache, Snapshot};
use writer::{Job, Reply, Writer};

/// The domain's services, shared by HTTP, WebSocket and delivery; cheap to clone. Callers
/// use its methods; what it is built from stays inside (see [`Parts`]).
#[derive(Clone)]
pub struct Services {
    config: Arc<Config>,
    store: Store,
    /// Where message history and search read: the read replica of `DATABASE_READ_URL`, or
    /// `store` itself.
    reader: Store,
    /// The multiplexed Redis command connection (pinged by [`Services::readiness`]).
    redis: Redis,
    tokens: Tokens,
    settings: SettingsCache,
    bus: Bus,
    presence: Presence,
    registry: Registry,
    profile_cache: ProfileCache,
    members: Arc<MemberCache>,
    writer: Writer,
}

/// What [`Services`] is built from; the composition root (`app.rs`) fills it in.
pub struct Parts {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// PostgreSQL.
    pub store: Store,
    /// Where history and search read (a read replica, or `store`).
    pub reader: Store,
    /// The multiplexed Redis command connection.
    pub redis: Redis,
    /// Redis key names.
    pub keys: Keys,
    /// Token verification and issuing.
    pub tokens: Tokens,
    /// The in-memory settings.
    pub settings: SettingsCache,
    /// Per-user channels and the control channel.
    pub bus: Bus,
    /// Member lists and private pairs.
    pub members: Arc<MemberCache>,
    /// The batching writer.
    pub writer: Writer,
}

impl Services {
    /// The services of this node, from their parts.
    pub fn new(p: Parts) -> Services {
        Services {
            presence: Presence::new(p.redis.clone(), p.keys.clone(), &p.config.node_id),
            registry: Registry::new(p.redis.clone(), p.keys.clone()),
            profile_cache: ProfileCache::new(p.redis.clone(), p.keys),
            config: p.config,
            store: p.store,
            reader: p.reader,
            redis: p.redis,
            tokens: p.tokens,
            settings: p.settings,
            bus: p.bus,
            members: p.members,
            writer: p.writer,
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Token verification and issuing.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Snapshot> {
        self.settings.get()
    }

    /// The control channel may have lost messages (the subscription was down): forget the
    /// cached member lists, whose invalidations travel there. Settings catch up by their
    /// periodic reload.
    pub fn control_interrupted(&self) {
        self.members.clear();
    }
}

impl Services {
    /// Sends a message: static checks, the private conversation resolved (and created on
    /// the first message), then the batching writer. `reply` gets the outcome.
    pub async fn send(&self, sender: UserId, draft: Draft, received: Instant, reply: Reply) {
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
        self.writer.submit(Job {
            sender,
            conversation_id,
            draft,
            received,
            reply,
        });
    }

    /// The private conversation of two users, created when missing. Returns its id.
    pub async fn private_conversation(&self, a: UserId, b: UserId) -> Result<ConversationId> {
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
                .and_then(|s| s.parse::<ConversationId>().ok())
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
