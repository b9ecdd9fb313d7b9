//! Group read status (issue 19 §2): who of a conversation's members has read a message,
//! derived from their read cursors (read = cursor at or past the message's seq), with
//! nothing written per message. The sender is left out, and so are members who joined
//! after the message. It is a form of read receipt, so it follows `enable_read_receipt`.

use super::Services;
use crate::error::{Code, Error, Result};
use crate::model::{ConversationId, MessageId, UserId};
use crate::store;
use crate::store::members::Readers;

/// Who has read a message and who has not, oldest membership first in each list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadStatus {
    /// Members whose read cursor is at or past the message.
    pub read: Vec<UserId>,
    /// The others.
    pub unread: Vec<UserId>,
}

impl ReadStatus {
    fn of(members: Vec<(UserId, bool)>) -> Self {
        let (read, unread): (Vec<_>, Vec<_>) = members.into_iter().partition(|(_, r)| *r);
        ReadStatus {
            read: read.into_iter().map(|(u, _)| u).collect(),
            unread: unread.into_iter().map(|(u, _)| u).collect(),
        }
    }
}

impl Services {
    /// `GET /conversations/:id/messages/:message_id/readers`, for an active member
    /// (`not_member` otherwise); `message_not_found` when the message is not in that
    /// conversation; `read_receipts_disabled` while read receipts are off.
    pub async fn message_readers(
        &self,
        user: UserId,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<ReadStatus> {
        let found = {
            let db = self.store.conn().await?;
            store::members::readers(&db, conversation, user, message).await?
        };
        match found {
            Readers::NotMember => Err(Error::not_member()),
            Readers::NoSuchMessage => Err(Error::not_found(
                Code::MessageNotFound,
                "message not found in this conversation",
            )),
            Readers::Found(_) if !self.settings.get().read_receipt => Err(Error::forbidden(
                Code::ReadReceiptsDisabled,
                "read receipts are turned off",
            )),
            Readers::Found(members) => Ok(ReadStatus::of(members)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_the_order() {
        let u: Vec<UserId> = (0..4).map(|_| UserId::new_v4()).collect();
        let status = ReadStatus::of(vec![
            (u[0], true),
            (u[1], false),
            (u[2], true),
            (u[3], false),
        ]);
        assert_eq!(status.read, [u[0], u[2]]);
        assert_eq!(status.unread, [u[1], u[3]]);
    }
}
