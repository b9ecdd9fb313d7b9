//! Redis key and channel names, in one place. With `REDIS_KEY_PREFIX` empty (the default)
//! keys keep the original service's names, such as `online:{user_id}`.
//!
//! On a Redis Cluster the per-user names carry the user id as a hash tag
//! (`online:{<uuid>}`, `devices:{<uuid>}`, `u:{<uuid>}`), so a user's presence keys and
//! channel live in one slot and the device script touches one shard.

use crate::model::UserId;

/// Builds every key and channel name with the configured prefix.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    prefix: String,
    /// Hash-tag per-user names (Redis Cluster).
    tagged: bool,
}

impl Keys {
    /// Names with `prefix` in front.
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
            tagged: false,
        }
    }

    /// Names for a Redis Cluster: per-user names hash-tagged by user id.
    pub fn for_cluster(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
            tagged: true,
        }
    }

    /// True when per-user names carry hash tags.
    pub fn tagged(&self) -> bool {
        self.tagged
    }

    fn per_user(&self, kind: &str, user: UserId) -> String {
        if self.tagged {
            format!("{}{kind}:{{{user}}}", self.prefix)
        } else {
            format!("{}{kind}:{user}", self.prefix)
        }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `online:{user}`: "1" with a 30 s TTL while the user has a live device (original name).
    pub fn online(&self, user: UserId) -> String {
        self.per_user("online", user)
    }

    /// `devices:{user}`: hash of connection id → node id, for the cluster-wide device limit.
    pub fn devices(&self, user: UserId) -> String {
        self.per_user("devices", user)
    }

    /// `u:{user}`: the user's Pub/Sub channel.
    pub fn user_channel(&self, user: UserId) -> String {
        self.per_user("u", user)
    }

    /// [`Keys::user_channel`] written into `buf` (cleared first), so the publisher does not
    /// allocate a name per publish.
    pub fn user_channel_into(&self, buf: &mut Vec<u8>, user: UserId) {
        buf.clear();
        buf.extend_from_slice(self.prefix.as_bytes());
        buf.extend_from_slice(if self.tagged { b"u:{" } else { b"u:" });
        let mut tmp = [0u8; 36];
        buf.extend_from_slice(
            user.as_uuid()
                .hyphenated()
                .encode_lower(&mut tmp)
                .as_bytes(),
        );
        if self.tagged {
            buf.push(b'}');
        }
    }

    /// The control channel (settings reloads, cache invalidations).
    pub fn control_channel(&self) -> String {
        format!("{}dinq:control", self.prefix)
    }

    /// The node registry hash: node id → JSON status.
    pub fn registry(&self) -> String {
        format!("{}dinq:nodes", self.prefix)
    }

    /// Set of users with devices on `node`, so a dead node's users can be taken offline.
    pub fn node_users(&self, node: &str) -> String {
        format!("{}dinq:node-users:{node}", self.prefix)
    }

    /// Lock taken by the node that cleans up after a dead node.
    pub fn reaper_lock(&self, node: &str) -> String {
        format!("{}dinq:reaper:{node}", self.prefix)
    }

    /// Cached profile of a user from the agent service.
    pub fn profile(&self, user: UserId) -> String {
        format!("{}dinq:profile:{user}", self.prefix)
    }
}
