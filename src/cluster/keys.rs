//! Redis key and channel names, in one place. With `REDIS_KEY_PREFIX` empty (the default)
//! keys keep the original service's names, such as `online:{user_id}`.
//!
//! On a Redis Cluster the per-user names carry the user id as a hash tag
//! (`online:{<uuid>}`, `devices:{<uuid>}`, `u:{<uuid>}`), so a user's presence keys and
//! channel live in one slot and the device script touches one shard.
//!
//! The fan-out channels (`dinq:fanout:<k>`, see [`super::bus::Bus::route_many`]) are one on
//! a single Redis and [`FANOUT_CHANNELS_CLUSTER`] on a cluster, hash-tagged by `k` so they
//! spread over the shards.

use crate::model::{ConversationId, UserId};

/// Fan-out channels on a Redis Cluster (one on a single server).
pub const FANOUT_CHANNELS_CLUSTER: usize = 16;

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

    /// How many fan-out channels there are: 1 on a single Redis, [`FANOUT_CHANNELS_CLUSTER`]
    /// on a cluster.
    pub fn fanout_count(&self) -> usize {
        if self.tagged {
            FANOUT_CHANNELS_CLUSTER
        } else {
            1
        }
    }

    /// Every fan-out channel, in index order; every node subscribes them all.
    pub fn fanout_channels(&self) -> Vec<String> {
        (0..self.fanout_count())
            .map(|k| self.fanout_channel(k))
            .collect()
    }

    /// Fan-out channel `k`: `dinq:fanout:<k>`, hash-tagged (`dinq:fanout:{<k>}`) on a
    /// cluster.
    pub fn fanout_channel(&self, k: usize) -> String {
        if self.tagged {
            format!("{}dinq:fanout:{{{k}}}", self.prefix)
        } else {
            format!("{}dinq:fanout:{k}", self.prefix)
        }
    }

    /// The fan-out channel index of `conversation` (all its fan-out envelopes use one
    /// channel, so they arrive in order).
    pub fn fanout_index(&self, conversation: ConversationId) -> usize {
        (conversation.as_u128() % self.fanout_count() as u128) as usize
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
