//! Editing a message's text (issue 19 §5), shared by the WebSocket `edit` frame and
//! `POST /messages/:id/edit`: only the sender, still an active member, only a text message
//! not recalled, within the `edit_window_seconds` setting, and the new text is checked
//! like a text message's. The row is rewritten in place with `edited_at`, its search row in
//! the same transaction; then every active member, on any node, gets `message_edited`
//! (the editing device too: it is the editor's confirmation over WebSocket).

use super::Services;
use super::events;
use super::routing::Routed;
use super::send::{self, Draft};
use crate::error::{Code, Error, Result};
use crate::model::{ConversationId, Message, MessageId, MessageType, UserId};
use crate::store;
use crate::store::messages::Edit;

/// Checks `content` as the text of a text message (present, not empty, no NUL, at most
/// [`send::MAX_TEXT_CHARS`] characters), with the errors a send of it would get.
pub fn validate_content(content: Option<&str>, settings: &super::settings::Snapshot) -> Result<()> {
    let draft = Draft {
        // A send needs a target; an edit has its message's.
        conversation_id: Some(ConversationId::nil()),
        message_type: MessageType::Text,
        content: content.map(str::to_owned),
        ..Draft::default()
    };
    send::validate(&draft, UserId::nil(), settings)
}

impl Services {
    /// Replaces the text of `message` by `content` for `user` and tells every member
    /// (`message_edited`). Returns the message as stored.
    pub async fn edit(
        &self,
        user: UserId,
        message: MessageId,
        content: Option<&str>,
    ) -> Result<Message> {
        let settings = self.settings.get();
        validate_content(content, &settings)?;
        let content = content.unwrap_or_default();
        let window = settings.edit_window_seconds as i64;
        let mut db = self.store.conn().await?;
        let tx = db.transaction().await?;
        let edited = match store::messages::edit(&tx, message, user, content, window).await? {
            Edit::Done(m) => *m,
            Edit::NotFound => {
                return Err(Error::not_found(Code::MessageNotFound, "Message not found"));
            }
            Edit::NotSender => {
                return Err(Error::forbidden(
                    Code::NotSender,
                    "you can only edit your own messages",
                ));
            }
            Edit::NotMember => return Err(Error::not_member()),
            Edit::NotText => {
                return Err(Error::bad_request(
                    Code::NotTextMessage,
                    "only text messages can be edited",
                ));
            }
            Edit::Recalled => {
                return Err(Error::bad_request(
                    Code::MessageRecalled,
                    "a recalled message cannot be edited",
                ));
            }
            Edit::TooLate(elapsed) => {
                return Err(Error::bad_request(
                    Code::EditWindowPassed,
                    format!(
                        "can only edit messages within {window} seconds (elapsed: {elapsed} seconds)"
                    ),
                ));
            }
        };
        store::search::replace_text(
            &tx,
            edited.id,
            edited.conversation_id,
            edited.created_at,
            content,
        )
        .await?;
        let members = store::conversations::active_members(&tx, &[edited.conversation_id]).await?;
        tx.commit().await?;
        let env = self.envelope(&Routed::Frame {
            frame: events::message_edited(&edited),
            except: 0,
        });
        let users: Vec<UserId> = members.iter().map(|(_, u, _)| *u).collect();
        self.route_all(&users, &env, edited.conversation_id).await;
        Ok(edited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> super::super::settings::Snapshot {
        let env: std::collections::HashMap<String, String> = [
            ("DATABASE_URL", "postgres://h/x"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = crate::config::Config::from_env(&env).unwrap();
        super::super::settings::Snapshot::from_rows(Default::default(), &config)
    }

    #[test]
    fn content_is_checked_like_a_text_message() {
        let s = settings();
        let code = |c: Option<&str>| validate_content(c, &s).err().map(|e| e.code());
        assert_eq!(code(Some("fine")), None);
        assert_eq!(code(None), Some("content_required"));
        assert_eq!(code(Some("")), Some("content_required"));
        assert_eq!(code(Some("a\0b")), Some("invalid_content"));
        let longest = "字".repeat(send::MAX_TEXT_CHARS);
        assert_eq!(code(Some(&longest)), None);
        let over = format!("{longest}x");
        assert_eq!(code(Some(&over)), Some("content_too_long"));
    }
}
