//! Which users' channel subscriptions may need to change: the sink reports a user through
//! [`super::bus::Bus::user_changed`] when their first device arrives or their last one
//! leaves, and the subscriber (single server or sharded) takes the set and reconciles it
//! against what the sink wants now.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::model::UserId;

/// The users whose wish for a subscription may have changed, and a wake-up for the
/// subscriber.
#[derive(Default)]
pub(super) struct Wishes {
    changed: Mutex<HashSet<UserId>>,
    notify: Notify,
}

impl Wishes {
    /// `user`'s wish may have changed; wakes the subscriber.
    pub(super) fn changed(&self, user: UserId) {
        self.changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(user);
        self.notify.notify_one();
    }

    /// The users reported since the last call.
    pub(super) fn take(&self) -> Vec<UserId> {
        self.changed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect()
    }

    /// Completes when a user was reported (or had been since the last wake-up).
    pub(super) async fn notified(&self) {
        self.notify.notified().await
    }
}
