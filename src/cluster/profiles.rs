//! The Redis cache of user profiles from the external profile service: one key per user
//! (`dinq:profile:{user}`) holding the profile's JSON, or `null` for a user the service
//! does not know. Known profiles live ten minutes, unknown users one minute. A cache that
//! cannot be read or written is treated as empty; it is never an error.

use crate::model::UserId;

use super::{Keys, Redis};
use crate::model::Profile;

/// How long a profile stays cached.
pub const CACHE_TTL_SECONDS: u64 = 600;
/// How long "the service does not know this user" stays cached.
pub const MISS_TTL_SECONDS: u64 = 60;
/// The cached value for a user the service does not know.
const MISS: &str = "null";

/// What the cache holds for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// Nothing usable: ask the service.
    Absent,
    /// The service does not know this user.
    Unknown,
    /// The profile.
    Known(Profile),
}

/// The profile cache; cheap to clone.
#[derive(Clone)]
pub struct ProfileCache {
    redis: Redis,
    keys: Keys,
}

impl ProfileCache {
    /// The cache in this Redis.
    pub fn new(redis: Redis, keys: Keys) -> Self {
        ProfileCache { redis, keys }
    }

    /// What is cached for each of `users`, in order (one `MGET`).
    pub async fn get(&self, users: &[UserId]) -> Vec<Cached> {
        let keys: Vec<String> = users.iter().map(|u| self.keys.profile(*u)).collect();
        let mut redis = self.redis.clone();
        let values: Vec<Option<String>> =
            match redis::cmd("MGET").arg(&keys).query_async(&mut redis).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "profile cache unavailable");
                    vec![None; users.len()]
                }
            };
        values
            .into_iter()
            .map(|value| match value.as_deref() {
                Some(MISS) => Cached::Unknown,
                Some(json) => match serde_json::from_str::<Profile>(json) {
                    Ok(p) => Cached::Known(p),
                    Err(_) => Cached::Absent,
                },
                None => Cached::Absent,
            })
            .collect()
    }

    /// Stores what the service answered for each user: its profile, or `None` when it
    /// does not know the user (one pipeline).
    pub async fn put(&self, answers: &[(UserId, Option<&Profile>)]) {
        let cmds = answers
            .iter()
            .map(|(user, profile)| {
                let (value, ttl) = match profile {
                    Some(p) => (
                        serde_json::to_string(p).unwrap_or_else(|_| MISS.into()),
                        CACHE_TTL_SECONDS,
                    ),
                    None => (MISS.to_string(), MISS_TTL_SECONDS),
                };
                let mut cmd = redis::cmd("SET");
                cmd.arg(self.keys.profile(*user))
                    .arg(value)
                    .arg("EX")
                    .arg(ttl);
                cmd
            })
            .collect();
        if let Err(e) = self.redis.run_all(cmds).await {
            tracing::debug!(error = %e, "profile cache write failed");
        }
    }
}
