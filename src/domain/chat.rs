//! Conversation actions other than sending, shared by WebSocket and HTTP: typing, read
//! cursors and receipts, recall, and the presence changes pushed to private partners.

use std::time::Instant;

use bytes::Bytes;

use super::Services;
use super::events;
use super::routing::Routed;
use crate::error::{Code, Error, Result};
use crate::model::{ConversationId, Message, MessageId, MessageType, UserId};
use crate::store;
use crate::store::messages::Recall;

impl Services {
    /// Encodes `routed` into a bus envelope.
    pub fn envelope(&self, routed: &Routed) -> Bytes {
        let mut env = self.bus.envelope(64);
        routed.encode_into(&mut env);
        env.freeze()
    }

    /// Routes one envelope to each of `users`, members of `conversation` (one fan-out
    /// publish for many of them, see [`crate::cluster::bus::Bus::route_many`]).
    pub async fn route_all(
        &self,
        users: &[UserId],
        envelope: &Bytes,
        conversation: ConversationId,
    ) {
        self.bus
            .route_many(users, envelope.clone(), conversation)
            .await;
    }

    /// `typing`: to the other members and the typist's other devices. Ignored when the
    /// setting is off; refused for non-members; dropped silently when `throttle` (asked
    /// only for a member's typing that would be published) says so.
    pub async fn typing(
        &self,
        user: UserId,
        conversation: ConversationId,
        conn: u64,
        throttle: impl FnOnce() -> bool,
    ) -> Result<()> {
        if !self.settings.get().typing {
            return Ok(());
        }
        let members = self
            .members
            .load(&self.store, conversation)
            .await?
            .filter(|m| m.contains(user))
            .ok_or_else(Error::not_member)?;
        if !throttle() {
            return Ok(());
        }
        let env = self.envelope(&Routed::Frame {
            frame: events::typing(conversation, user),
            except: conn,
        });
        let users: Vec<UserId> = members.list.iter().map(|(u, _)| *u).collect();
        self.route_all(&users, &env, conversation).await;
        Ok(())
    }

    /// `read`: moves the reader's cursor to `message`; when it moved, every device of the
    /// reader learns the new unread count and (setting on) the other members and the
    /// reader's other devices, on any node, get the same `read` event (not the reading
    /// device `conn` itself).
    pub async fn read(
        &self,
        user: UserId,
        conversation: ConversationId,
        message: MessageId,
        conn: u64,
    ) -> Result<()> {
        let outcome = {
            let db = self.store.conn().await?;
            store::members::mark_read(&db, conversation, user, message).await?
        };
        match outcome {
            store::members::Read::NotMember => Err(Error::not_member()),
            store::members::Read::NoSuchMessage => Err(Error::not_found(
                Code::MessageNotFound,
                "message not found in this conversation",
            )),
            store::members::Read::Unchanged => Ok(()),
            store::members::Read::Moved { read_seq, last_seq } => {
                let cursor = self.envelope(&Routed::ReadCursor {
                    conversation_id: conversation,
                    read_seq,
                    last_seq,
                });
                self.bus.route(user, cursor).await;
                if self.settings.get().read_receipt
                    && let Some(members) = self.members.load(&self.store, conversation).await?
                {
                    let receipt = self.envelope(&Routed::Frame {
                        frame: events::read(conversation, message, user),
                        except: conn,
                    });
                    // The reader too: its other devices mirror the receipt; the reading
                    // device is skipped by `except` on this node.
                    let everyone: Vec<UserId> = std::iter::once(user)
                        .chain(members.list.iter().map(|(u, _)| *u).filter(|u| *u != user))
                        .collect();
                    self.route_all(&everyone, &receipt, conversation).await;
                }
                Ok(())
            }
        }
    }

    /// Recalls `message` for `user` (its sender, still a member, within the window) and
    /// tells every member: `recalled`, then `conversation_update`.
    pub async fn recall(&self, user: UserId, message: MessageId) -> Result<Message> {
        let window = self.settings.get().recall_window_seconds as i64;
        let mut db = self.store.conn().await?;
        let tx = db.transaction().await?;
        let outcome = store::messages::recall(&tx, message, user, window).await?;
        let recalled = match outcome {
            Recall::NotFound => {
                return Err(Error::not_found(Code::MessageNotFound, "Message not found"));
            }
            Recall::NotSender => {
                return Err(Error::forbidden(
                    Code::NotSender,
                    "you can only recall your own messages",
                ));
            }
            Recall::AlreadyRecalled => {
                return Err(Error::bad_request(
                    Code::AlreadyRecalled,
                    "message already recalled",
                ));
            }
            Recall::TooLate(elapsed) => {
                return Err(Error::bad_request(
                    Code::RecallWindowPassed,
                    format!(
                        "can only recall messages within {} (elapsed: {elapsed} seconds)",
                        describe_window(window)
                    ),
                ));
            }
            Recall::Done(m) => *m,
        };
        let members =
            store::conversations::active_members(&tx, &[recalled.conversation_id]).await?;
        if !members.iter().any(|(_, u, _)| *u == user) {
            return Err(Error::not_member());
        }
        let last = tx
            .query_one(
                "SELECT c.last_seq, c.last_message_at, lm.message_type, lm.content, COALESCE(lm.is_recalled, FALSE)
                 FROM conversations c
                 LEFT JOIN messages lm ON lm.id = c.last_message_id AND lm.bucket = msg_bucket(c.id)
                 WHERE c.id = $1",
                &[&recalled.conversation_id],
            )
            .await?;
        tx.commit().await?;
        let last_type: Option<MessageType> = last.get(2);
        let preview = last_type.as_ref().and_then(|t| {
            events::preview(t, last.get::<_, Option<String>>(3).as_deref(), last.get(4))
        });
        let env = self.envelope(&Routed::Recall {
            conversation_id: recalled.conversation_id,
            message_id: recalled.id,
            last_seq: last.get(0),
            last_message_time: last.get(1),
            preview,
        });
        let users: Vec<UserId> = members.iter().map(|(_, u, _)| *u).collect();
        self.route_all(&users, &env, recalled.conversation_id).await;
        Ok(recalled)
    }

    /// Tells `user`'s private partners that they came online or went offline. Each partner's
    /// node pushes it only once that private conversation has reached the partner (see
    /// [`Routed::Presence`]), so a new conversation's first message comes first.
    pub async fn presence_changed(&self, user: UserId, online: bool) -> Result<()> {
        if !self.settings.get().online_status {
            return Ok(());
        }
        let started = Instant::now();
        let partners = {
            let db = self.store.conn().await?;
            store::members::private_partners(&db, user).await?
        };
        let frame = events::online_status_update(user, online);
        for (partner, conversation_id) in partners {
            let env = self.envelope(&Routed::Presence {
                conversation_id,
                frame: frame.clone(),
            });
            self.bus.route(partner, env).await;
        }
        tracing::trace!(%user, online, took = ?started.elapsed(), "presence change announced");
        Ok(())
    }
}

/// "2 minutes" for 120, "1 minute" for 60, "90 seconds" for 90.
fn describe_window(seconds: i64) -> String {
    match seconds {
        1 => "1 second".into(),
        60 => "1 minute".into(),
        s if s > 0 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn windows() {
        assert_eq!(super::describe_window(120), "2 minutes");
        assert_eq!(super::describe_window(60), "1 minute");
        assert_eq!(super::describe_window(90), "90 seconds");
        assert_eq!(super::describe_window(1), "1 second");
    }
}
