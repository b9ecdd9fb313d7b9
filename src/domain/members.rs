//! Per-node caches of who is in a conversation and of private-pair conversation ids, so a
//! send, a typing event or a receipt does not need a round of reads.
//!
//! Member lists carry the conversation's `members_version`: the send transaction reads the
//! version under its row lock and reloads a stale list, so fan-out always uses the exact
//! members. Other readers (typing, receipts) accept an entry until a membership change
//! invalidates it through the control channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::model::{ConversationId, UserId};
use crate::model::{ConversationKind, Role};
use crate::store::{self, Store};

/// Entries kept before a cache is emptied (a crude bound; misses just read PostgreSQL).
const MAX_ENTRIES: usize = 200_000;

/// The active members of one conversation at one version.
#[derive(Debug, Clone, PartialEq)]
pub struct Members {
    /// `conversations.members_version` this list was read at.
    pub version: i64,
    /// Private or group.
    pub kind: ConversationKind,
    /// Active members and their roles.
    pub list: Vec<(UserId, Role)>,
}

impl Members {
    /// True when `user` is an active member.
    pub fn contains(&self, user: UserId) -> bool {
        self.list.iter().any(|(u, _)| *u == user)
    }

    /// `user`'s role, when an active member.
    pub fn role(&self, user: UserId) -> Option<Role> {
        self.list.iter().find(|(u, _)| *u == user).map(|(_, r)| *r)
    }

    /// In a private conversation, the member who is not `user`.
    pub fn other(&self, user: UserId) -> Option<UserId> {
        self.list.iter().map(|(u, _)| *u).find(|u| *u != user)
    }
}

/// The caches.
#[derive(Default)]
pub struct MemberCache {
    lists: Mutex<HashMap<ConversationId, Arc<Members>>>,
    pairs: Mutex<HashMap<(UserId, UserId), ConversationId>>,
}

fn pair(a: UserId, b: UserId) -> (UserId, UserId) {
    if a <= b { (a, b) } else { (b, a) }
}

impl MemberCache {
    /// The cached list of `conversation`, if any.
    pub fn get(&self, conversation: ConversationId) -> Option<Arc<Members>> {
        self.lists
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&conversation)
            .cloned()
    }

    /// Stores a list.
    pub fn put(&self, conversation: ConversationId, members: Arc<Members>) {
        let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        if lists.len() >= MAX_ENTRIES {
            lists.clear();
        }
        lists.insert(conversation, members);
    }

    /// Forgets `conversation` (its membership changed).
    pub fn invalidate(&self, conversation: ConversationId) {
        self.lists
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&conversation);
    }

    /// Forgets everything (after losing the control channel).
    pub fn clear(&self) {
        self.lists.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The list of `conversation` from the cache or PostgreSQL; `None` when it does not exist.
    pub async fn load(
        &self,
        store: &Store,
        conversation: ConversationId,
    ) -> Result<Option<Arc<Members>>> {
        if let Some(m) = self.get(conversation) {
            return Ok(Some(m));
        }
        let conn = store.conn().await?;
        let Some((version, kind)) = store::conversations::version(&conn, conversation).await?
        else {
            return Ok(None);
        };
        let list = store::conversations::active_members(&conn, &[conversation])
            .await?
            .into_iter()
            .map(|(_, u, r)| (u, r))
            .collect();
        let members = Arc::new(Members {
            version,
            kind,
            list,
        });
        self.put(conversation, members.clone());
        Ok(Some(members))
    }

    /// The cached private conversation of two users.
    pub fn private_pair(&self, a: UserId, b: UserId) -> Option<ConversationId> {
        self.pairs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pair(a, b))
            .copied()
    }

    /// Remembers the private conversation of two users (it never changes).
    pub fn put_private_pair(&self, a: UserId, b: UserId, conversation: ConversationId) {
        let mut pairs = self.pairs.lock().unwrap_or_else(|e| e.into_inner());
        if pairs.len() >= MAX_ENTRIES {
            pairs.clear();
        }
        pairs.insert(pair(a, b), conversation);
    }
}
