//! Cluster-wide presence and the device limit, in Redis.
//!
//! `devices:{user}` is a hash of connection key → node id over every node; adding a device
//! is a Lua script that refuses the 19th atomically. `online:{user}` (the original's key)
//! is `"1"` with a 30 s TTL while the user has a device anywhere; nodes refresh it for their
//! users on pings and heartbeats. `dinq:node-users:{node}` lets a live node clean up after a
//! dead one (see `registry`).
//!
//! The scripts touch only the user's two keys, which share a hash slot on a Redis Cluster;
//! the node's set is updated by separate commands, ordered so that a device added while
//! another leaves always ends up in the set (see [`Presence::remove_device`]).

use redis::Script;

use super::{Keys, Redis};
use crate::error::Result;
use crate::model::UserId;

/// Devices one user may have connected over the whole cluster.
pub const MAX_DEVICES: usize = 18;
/// TTL of `online:{user}` in seconds.
pub const ONLINE_TTL_SECONDS: u64 = 30;

/// Presence operations; cheap to clone.
#[derive(Clone)]
pub struct Presence {
    redis: Redis,
    keys: Keys,
    node_id: String,
    add: Script,
    remove: Script,
}

/// The result of registering a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Registered; `first` when the user had no other device anywhere.
    Yes {
        /// The user just came online.
        first: bool,
    },
    /// The user already has [`MAX_DEVICES`] devices.
    TooMany,
}

impl Presence {
    /// Presence for this node.
    pub fn new(redis: Redis, keys: Keys, node_id: &str) -> Self {
        Presence {
            redis,
            keys,
            node_id: node_id.to_string(),
            // KEYS: devices, online. ARGV: field, node, limit, online?, ttl.
            add: Script::new(
                r#"
                local n = redis.call('HLEN', KEYS[1])
                if n >= tonumber(ARGV[3]) then return -1 end
                redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
                if ARGV[4] == '1' then redis.call('SET', KEYS[2], '1', 'EX', ARGV[5]) end
                return n
                "#,
            ),
            // KEYS: devices, online. ARGV: field, node. Returns {devices left, left here}.
            remove: Script::new(
                r#"
                redis.call('HDEL', KEYS[1], ARGV[1])
                local left = 0
                local here = 0
                for _, node in ipairs(redis.call('HVALS', KEYS[1])) do
                    left = left + 1
                    if node == ARGV[2] then here = here + 1 end
                end
                if left == 0 then redis.call('DEL', KEYS[2]) end
                return {left, here}
                "#,
            ),
        }
    }

    fn field(&self, conn_id: u64) -> String {
        format!("{}/{conn_id}", self.node_id)
    }

    /// Registers a device of `user`; refuses the 19th across the cluster.
    pub async fn add_device(
        &self,
        user: UserId,
        conn_id: u64,
        online_enabled: bool,
    ) -> Result<Added> {
        let mut redis = self.redis.clone();
        let before: i64 = self
            .add
            .key(self.keys.devices(user))
            .key(self.keys.online(user))
            .arg(self.field(conn_id))
            .arg(&self.node_id)
            .arg(MAX_DEVICES)
            .arg(if online_enabled { "1" } else { "0" })
            .arg(ONLINE_TTL_SECONDS)
            .invoke_async(&mut redis)
            .await?;
        if before < 0 {
            return Ok(Added::TooMany);
        }
        // After the device is in the hash (see `remove_device` for why this order).
        self.mark_here(user).await?;
        Ok(Added::Yes { first: before == 0 })
    }

    /// Unregisters a device. Returns true when it was the user's last device anywhere.
    pub async fn remove_device(&self, user: UserId, conn_id: u64) -> Result<bool> {
        let mut redis = self.redis.clone();
        let (left, here): (i64, i64) = self
            .remove
            .key(self.keys.devices(user))
            .key(self.keys.online(user))
            .arg(self.field(conn_id))
            .arg(&self.node_id)
            .invoke_async(&mut redis)
            .await?;
        if here == 0 {
            // Take the user out of this node's set, then look again: a device added here
            // meanwhile is either seen now (and put back) or adds itself after this SREM.
            redis::cmd("SREM")
                .arg(self.keys.node_users(&self.node_id))
                .arg(user.to_string())
                .query_async::<()>(&mut redis)
                .await?;
            let nodes: Vec<String> = redis::cmd("HVALS")
                .arg(self.keys.devices(user))
                .query_async(&mut redis)
                .await?;
            if nodes.contains(&self.node_id) {
                self.mark_here(user).await?;
            }
        }
        Ok(left == 0)
    }

    /// Puts `user` into this node's set of users with devices.
    async fn mark_here(&self, user: UserId) -> Result<()> {
        redis::cmd("SADD")
            .arg(self.keys.node_users(&self.node_id))
            .arg(user.to_string())
            .query_async::<()>(&mut self.redis.clone())
            .await?;
        Ok(())
    }

    /// Refreshes `online:{user}` for each of `users` (pipelined).
    pub async fn refresh_online(&self, users: &[UserId]) -> Result<()> {
        if users.is_empty() {
            return Ok(());
        }
        let cmds = users
            .iter()
            .map(|user| {
                let mut cmd = redis::cmd("SET");
                cmd.arg(self.keys.online(*user))
                    .arg("1")
                    .arg("EX")
                    .arg(ONLINE_TTL_SECONDS);
                cmd
            })
            .collect();
        self.redis.run_all(cmds).await?;
        Ok(())
    }

    /// Which of `users` are online (their `online:` key is `"1"`).
    pub async fn online(&self, users: &[UserId]) -> Result<Vec<bool>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = users.iter().map(|u| self.keys.online(*u)).collect();
        let mut redis = self.redis.clone();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut redis)
            .await?;
        Ok(values
            .into_iter()
            .map(|v| v.as_deref() == Some("1"))
            .collect())
    }

    /// Number of devices `user` has over the cluster.
    pub async fn device_count(&self, user: UserId) -> Result<usize> {
        let mut redis = self.redis.clone();
        Ok(redis::cmd("HLEN")
            .arg(self.keys.devices(user))
            .query_async::<usize>(&mut redis)
            .await?)
    }

    /// Removes every device `node` registered (after it died). Returns the users who are
    /// now offline everywhere.
    pub async fn remove_node(&self, node: &str) -> Result<Vec<UserId>> {
        let mut redis = self.redis.clone();
        let users: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.node_users(node))
            .query_async(&mut redis)
            .await?;
        let prefix = format!("{node}/");
        let mut offline = Vec::new();
        for user in users.iter().filter_map(|u| u.parse::<UserId>().ok()) {
            let key = self.keys.devices(user);
            let fields: Vec<String> = redis::cmd("HKEYS")
                .arg(&key)
                .query_async(&mut redis)
                .await?;
            let dead: Vec<&String> = fields.iter().filter(|f| f.starts_with(&prefix)).collect();
            if !dead.is_empty() {
                redis::cmd("HDEL")
                    .arg(&key)
                    .arg(&dead)
                    .query_async::<()>(&mut redis)
                    .await?;
            }
            if fields.len() == dead.len() {
                redis::cmd("DEL")
                    .arg(self.keys.online(user))
                    .query_async::<()>(&mut redis)
                    .await?;
                offline.push(user);
            }
        }
        redis::cmd("DEL")
            .arg(self.keys.node_users(node))
            .query_async::<()>(&mut redis)
            .await?;
        Ok(offline)
    }
}
