//! Devices coming and going, as the socket layer sees them: the cluster-wide device limit
//! and the online status kept in Redis (`cluster::presence`), its periodic refresh, and
//! logout (every device of a user closed, on every node). Telling private partners that a
//! user came online or went offline is [`Services::presence_changed`].

use super::Services;
use super::routing::Routed;
use crate::cluster::presence::Added;
use crate::error::Result;
use crate::model::UserId;

/// How registering a device went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// Registered; `first_anywhere` when the user had no other device in the cluster (the
    /// user just came online).
    Accepted {
        /// No other device of the user anywhere.
        first_anywhere: bool,
    },
    /// The user already has the most devices allowed; this one is refused.
    TooManyDevices,
}

impl Services {
    /// Registers connection `conn` of `user` (and the online status, when the setting is
    /// on); refuses a device over the cluster-wide limit.
    pub async fn register_device(&self, user: UserId, conn: u64) -> Result<Registered> {
        let online_enabled = self.settings.get().online_status;
        Ok(
            match self.presence.add_device(user, conn, online_enabled).await? {
                Added::Yes { first } => Registered::Accepted {
                    first_anywhere: first,
                },
                Added::TooMany => Registered::TooManyDevices,
            },
        )
    }

    /// Unregisters connection `conn` of `user`. True when it was the user's last device
    /// anywhere (the user went offline).
    pub async fn unregister_device(&self, user: UserId, conn: u64) -> Result<bool> {
        self.presence.remove_device(user, conn).await
    }

    /// A client's `heartbeat`: refreshes the user's online status in the background (when
    /// the setting is on).
    pub fn heartbeat(&self, user: UserId) {
        if self.settings.get().online_status {
            let presence = self.presence.clone();
            tokio::spawn(async move {
                let _ = presence.refresh_online(&[user]).await;
            });
        }
    }

    /// Refreshes the online status of `users` (this node's users), in chunks, when the
    /// setting is on; stops at the first failure (logged).
    pub async fn refresh_presence(&self, users: &[UserId]) {
        if !self.settings.get().online_status {
            return;
        }
        for chunk in users.chunks(1000) {
            if let Err(e) = self.presence.refresh_online(chunk).await {
                tracing::warn!(error = %e, "presence refresh failed");
                return;
            }
        }
    }

    /// Logout: closes every connection of `user` on every node.
    pub async fn logout(&self, user: UserId) {
        let env = self.envelope(&Routed::Logout);
        self.bus.route(user, env).await;
    }
}
