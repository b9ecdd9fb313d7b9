//! Profile enrichment from the external "agent" service (PROTOCOL.md §5.20, DECISIONS.md
//! "profile service"): profiles are read from their Redis cache first
//! (`cluster::profiles`), the rest asked of the agent in one batch call ([`agent`]) and
//! cached. `AGENT_URL` unset means no enrichment; any failure means no enrichment for the
//! users not cached. Nothing on the send path waits for this.

pub mod agent;

use std::collections::HashMap;
use std::sync::Arc;

use super::Services;
use crate::cluster::profiles::Cached;
use crate::model::Profile;
use crate::model::UserId;

/// Known profiles by user.
pub type Profiles = HashMap<UserId, Arc<Profile>>;

impl Services {
    /// The profiles of `users` that are known: from the Redis cache, then from the agent.
    /// Empty when `AGENT_URL` is unset; never an error.
    pub async fn profiles(&self, users: &[UserId]) -> Profiles {
        let mut found = Profiles::new();
        let Some(base) = self.config.agent_url.as_deref() else {
            return found;
        };
        let mut unique = users.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if unique.is_empty() {
            return found;
        }
        let cached = self.profile_cache.get(&unique).await;
        let mut missing = Vec::new();
        for (user, value) in unique.iter().zip(cached) {
            match value {
                Cached::Unknown => {}
                Cached::Known(p) => {
                    found.insert(*user, Arc::new(p));
                }
                Cached::Absent => missing.push(*user),
            }
        }
        if missing.is_empty() {
            return found;
        }
        let Some(fetched) = agent::call(base, &missing).await else {
            return found;
        };
        let answers: Vec<_> = missing.iter().map(|u| (*u, fetched.get(u))).collect();
        self.profile_cache.put(&answers).await;
        found.extend(fetched.into_iter().map(|(u, p)| (u, Arc::new(p))));
        found
    }
}
