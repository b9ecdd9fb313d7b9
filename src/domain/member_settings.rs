//! A member's own settings of a conversation (issue 19 §4): pinned (first in the member's
//! conversation list) and muted (left out of the list's `total_unread`; everything is still
//! delivered, and what to ring for is the client's call). Each member sets their own; a
//! change reaches every device of that member, on any node, as
//! `conversation_settings_update`, and nobody else.

use super::Services;
use super::events;
use super::routing::Routed;
use crate::error::{Error, Result};
use crate::model::{ConversationId, UserId};
use crate::store;

pub use crate::store::members::Flags;

/// One change of a member's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `POST /conversations/:id/pin`.
    Pin,
    /// `POST /conversations/:id/unpin`.
    Unpin,
    /// `POST /conversations/:id/mute`.
    Mute,
    /// `POST /conversations/:id/unmute`.
    Unmute,
}

impl Setting {
    /// `(pinned, muted)`: the flag this change sets, the other left as it is.
    fn wanted(self) -> (Option<bool>, Option<bool>) {
        match self {
            Setting::Pin => (Some(true), None),
            Setting::Unpin => (Some(false), None),
            Setting::Mute => (None, Some(true)),
            Setting::Unmute => (None, Some(false)),
        }
    }
}

impl Services {
    /// Applies `setting` to `user`'s membership of `conversation` (an active one, else
    /// `not_member`) and returns the settings now. Setting what is already set succeeds
    /// and pushes nothing; a change is pushed to every device of `user`.
    pub async fn change_member_setting(
        &self,
        user: UserId,
        conversation: ConversationId,
        setting: Setting,
    ) -> Result<Flags> {
        let (pinned, muted) = setting.wanted();
        let outcome = {
            let db = self.store.conn().await?;
            store::members::set_flags(&db, conversation, user, pinned, muted).await?
        };
        let (flags, changed) = outcome.ok_or_else(Error::not_member)?;
        if changed {
            let frame =
                events::conversation_settings_update(conversation, flags.is_pinned, flags.is_muted);
            // The request came over HTTP: no connection of the caller to skip.
            let env = self.envelope(&Routed::Frame { frame, except: 0 });
            self.bus.route(user, env).await;
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_touches_one_flag() {
        assert_eq!(Setting::Pin.wanted(), (Some(true), None));
        assert_eq!(Setting::Unpin.wanted(), (Some(false), None));
        assert_eq!(Setting::Mute.wanted(), (None, Some(true)));
        assert_eq!(Setting::Unmute.wanted(), (None, Some(false)));
    }
}
