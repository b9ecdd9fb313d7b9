//! Forwarding (`POST /messages/forward`): copies of readable messages sent by the caller to
//! several conversations, all or nothing.
//!
//! Everything that needs no lock is checked first, in this order: the lists (not empty, at
//! most [`MAX_SOURCES`] and [`MAX_TARGETS`], no duplicates), the sources (each exists, is
//! not recalled, and the caller is an active member of its conversation), the caller's
//! membership of every target, each copy's content by the rules of any send, and the
//! caller's send rate (one send per copy). Then the writer writes every copy in one
//! transaction on its careful path ([`super::writer::Writer::write_all`]), which decides
//! membership, blocks and the first-message limit under the row locks as for any send; a
//! refusal of any copy stores none.

use std::collections::HashSet;
use std::time::Instant;

use super::Services;
use super::send::{self, Draft};
use super::writer::Job;
use crate::error::{Code, Error, Result};
use crate::model::{ConversationId, ForwardedFrom, Message, MessageId, UserId};
use crate::store;

/// Most source messages one forward takes.
pub const MAX_SOURCES: usize = 50;
/// Most target conversations one forward takes.
pub const MAX_TARGETS: usize = 20;

/// Checks the two lists: present, within their limits, no id twice.
pub fn check_lists(sources: &[MessageId], targets: &[ConversationId]) -> Result<()> {
    if sources.is_empty() {
        return Err(Error::bad_request(
            Code::MessageIdsRequired,
            "message_ids must name at least one message",
        ));
    }
    if targets.is_empty() {
        return Err(Error::bad_request(
            Code::ConversationIdsRequired,
            "conversation_ids must name at least one conversation",
        ));
    }
    if sources.len() > MAX_SOURCES {
        return Err(Error::bad_request(
            Code::TooManyMessages,
            format!("at most {MAX_SOURCES} messages can be forwarded at once"),
        ));
    }
    if targets.len() > MAX_TARGETS {
        return Err(Error::bad_request(
            Code::TooManyConversations,
            format!("at most {MAX_TARGETS} conversations can be forwarded to at once"),
        ));
    }
    let mut seen = HashSet::new();
    if let Some(id) = sources.iter().find(|id| !seen.insert(**id)) {
        return Err(Error::bad_request(
            Code::DuplicateMessageId,
            format!("message_ids names {id} twice"),
        ));
    }
    let mut seen = HashSet::new();
    if let Some(id) = targets.iter().find(|id| !seen.insert(**id)) {
        return Err(Error::bad_request(
            Code::DuplicateConversationId,
            format!("conversation_ids names {id} twice"),
        ));
    }
    Ok(())
}

impl Services {
    /// Forwards `sources` (in this order) to each of `targets` for `sender`: one new message
    /// per source and target, each with the source's type, content and metadata and
    /// `forwarded_from` naming the source (or, for a source that is itself a copy, the
    /// message it was forwarded from). `allow(n)` is asked once every check has passed, with the number
    /// of messages about to be sent (the caller's send rate); its refusal is the answer.
    /// Returns the new messages, target by target, each target's in source order.
    pub async fn forward(
        &self,
        sender: UserId,
        sources: &[MessageId],
        targets: &[ConversationId],
        received: Instant,
        allow: impl FnOnce(usize) -> Result<()>,
    ) -> Result<Vec<Message>> {
        check_lists(sources, targets)?;
        let (found, member_of) = {
            let db = self.store.conn().await?;
            let found = store::messages::by_ids(&db, sources).await?;
            let mut convs: Vec<ConversationId> = found.iter().map(|m| m.conversation_id).collect();
            convs.extend_from_slice(targets);
            convs.sort_unstable();
            convs.dedup();
            let member_of: HashSet<ConversationId> = store::members::active_in(&db, sender, &convs)
                .await?
                .into_iter()
                .collect();
            (found, member_of)
        };
        let mut originals = Vec::with_capacity(sources.len());
        for id in sources {
            let Some(m) = found.iter().find(|m| m.id == *id) else {
                return Err(Error::not_found(
                    Code::MessageNotFound,
                    format!("message {id} not found"),
                ));
            };
            if !member_of.contains(&m.conversation_id) {
                return Err(Error::forbidden(
                    Code::NotMember,
                    format!("you are not a member of the conversation of message {id}"),
                ));
            }
            if m.is_recalled {
                return Err(Error::bad_request(
                    Code::MessageRecalled,
                    format!("message {id} was recalled and cannot be forwarded"),
                ));
            }
            originals.push(m);
        }
        if let Some(target) = targets.iter().find(|c| !member_of.contains(c)) {
            return Err(Error::forbidden(
                Code::NotMember,
                format!("you are not a member of conversation {target}"),
            ));
        }
        let settings = self.settings.get();
        let mut jobs = Vec::with_capacity(targets.len() * originals.len());
        for target in targets {
            for m in &originals {
                let draft = Draft {
                    conversation_id: Some(*target),
                    receiver_id: None,
                    message_type: m.message_type.clone(),
                    content: m.content.clone(),
                    metadata: m.metadata.clone(),
                    reply_to_message_id: None,
                    client_msg_id: None,
                    // A copy of a copy names the original, as Telegram does.
                    forwarded_from: Some(m.forwarded_from.unwrap_or(ForwardedFrom {
                        message_id: m.id,
                        sender_id: m.sender_id,
                        created_at: m.created_at,
                    })),
                };
                send::validate(&draft, sender, &settings)?;
                jobs.push(Job {
                    sender,
                    conversation_id: *target,
                    draft,
                    received,
                    reply: Box::new(|_| {}),
                });
            }
        }
        allow(jobs.len())?;
        self.writer.write_all(jobs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(sources: usize, targets: usize) -> Option<&'static str> {
        let s: Vec<MessageId> = (0..sources).map(|_| MessageId::new_v4()).collect();
        let t: Vec<ConversationId> = (0..targets).map(|_| ConversationId::new_v4()).collect();
        check_lists(&s, &t).err().map(|e| e.code())
    }

    #[test]
    fn lists_are_bounded_and_not_empty() {
        assert_eq!(code(1, 1), None);
        assert_eq!(code(MAX_SOURCES, MAX_TARGETS), None);
        assert_eq!(code(0, 1), Some("message_ids_required"));
        assert_eq!(code(1, 0), Some("conversation_ids_required"));
        assert_eq!(code(MAX_SOURCES + 1, 1), Some("too_many_messages"));
        assert_eq!(code(1, MAX_TARGETS + 1), Some("too_many_conversations"));
    }

    #[test]
    fn an_id_twice_is_refused() {
        let (m, c) = (MessageId::new_v4(), ConversationId::new_v4());
        let other = ConversationId::new_v4();
        let e = check_lists(&[m, m], &[c]).unwrap_err();
        assert_eq!(e.code(), "duplicate_message_id");
        assert!(e.public_message().contains(&m.to_string()));
        let e = check_lists(&[m], &[c, other, c]).unwrap_err();
        assert_eq!(e.code(), "duplicate_conversation_id");
    }
}
