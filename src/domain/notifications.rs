//! Notifications (PROTOCOL.md §3.5, §3.9, §5.16; DECISIONS.md "notifications"): a user's
//! list, marking read, deleting, the templated batch send, and the live events.
//!
//! Every change of a user's live unread count (read, read-all, deleting an unread one, new
//! notifications) is followed by `notification_update` {unread_count, latest_notif_time}
//! to every device of the user on every node. A batch send from a template with
//! `enable_websocket` pushes each user its `notification` first. Templates themselves are
//! in [`templates`].

pub mod templates;

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::Services;
use super::events::frame;
use super::routing::Routed;
use crate::error::{Code, Error, Result};
use crate::model::Timestamp;
use crate::model::UserId;
use crate::store;
use crate::store::notifications::{MarkRead, NewNotification, Notification, Summary};

/// Most users one batch send may address.
pub const MAX_BATCH_USERS: usize = 10_000;
/// Longest notification title (`notifications.title` is `varchar(200)`).
const MAX_TITLE_CHARS: usize = 200;

/// The wire shape of a Notification (PROTOCOL.md §3.1), in HTTP answers and `notification`
/// events alike.
#[derive(Debug, Serialize)]
pub struct NotificationObject<'a> {
    /// Row id.
    pub id: Uuid,
    /// Owner.
    pub user_id: UserId,
    /// Type.
    pub notification_type: &'a str,
    /// Title.
    pub title: &'a str,
    /// Content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<&'a str>,
    /// Metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<&'a Value>,
    /// Read.
    pub is_read: bool,
    /// When read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Timestamp>,
    /// 0 normal, 1 important, 2 urgent.
    pub priority: i32,
    /// Creation time.
    pub created_at: Timestamp,
    /// Expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

impl<'a> From<&'a Notification> for NotificationObject<'a> {
    fn from(n: &'a Notification) -> Self {
        NotificationObject {
            id: n.id,
            user_id: n.user_id,
            notification_type: &n.kind,
            title: &n.title,
            content: n.content.as_deref(),
            metadata: n.metadata.as_ref().filter(|m| !m.is_null()),
            is_read: n.is_read,
            read_at: n.read_at,
            priority: n.priority,
            created_at: n.created_at,
            expires_at: n.expires_at,
        }
    }
}

/// The `{unread_count, latest_notif_time}` of `notification_update` and of the list answer.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SummaryObject {
    /// Live unread notifications.
    pub unread_count: i64,
    /// Newest live notification time, or null.
    pub latest_notif_time: Option<Timestamp>,
}

impl From<Summary> for SummaryObject {
    fn from(s: Summary) -> Self {
        SummaryObject {
            unread_count: s.unread_count,
            latest_notif_time: s.latest,
        }
    }
}

/// A `notification` event.
pub fn notification_frame(n: &Notification) -> Bytes {
    frame("notification", NotificationObject::from(n))
}

/// A `notification_update` event.
pub fn notification_update_frame(s: Summary) -> Bytes {
    frame("notification_update", SummaryObject::from(s))
}

fn not_found() -> Error {
    Error::not_found(Code::NotificationNotFound, "notification not found")
}

const NO_NOTIFICATIONS: Summary = Summary {
    unread_count: 0,
    latest: None,
};

/// A batch send as requested (PROTOCOL.md §3.9), checked by [`Services::batch_send`].
#[derive(Debug, Default)]
pub struct BatchSend {
    /// Recipients, as given.
    pub user_ids: Option<Vec<String>>,
    /// The template's type.
    pub template_type: Option<String>,
    /// Values for `{{name}}` placeholders.
    pub template_vars: Option<HashMap<String, String>>,
    /// Metadata stored on every notification.
    pub metadata: Option<serde_json::Map<String, Value>>,
}

/// What a batch send did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Notifications stored.
    pub success_count: usize,
    /// Distinct users addressed.
    pub total_count: usize,
}

/// The distinct recipients of a batch send, in the order given.
pub fn batch_recipients(user_ids: Option<&[String]>) -> Result<Vec<UserId>> {
    let ids = user_ids.unwrap_or_default();
    if ids.len() > MAX_BATCH_USERS {
        return Err(Error::bad_request(
            Code::TooManyUsers,
            format!("at most {MAX_BATCH_USERS} user ids per call"),
        ));
    }
    let mut seen = HashSet::with_capacity(ids.len());
    let mut users = Vec::with_capacity(ids.len());
    for raw in ids {
        let id = raw
            .parse::<UserId>()
            .ok()
            .filter(|id| !id.is_nil())
            .ok_or_else(|| {
                let shown: String = raw.chars().take(64).collect();
                Error::bad_request(Code::InvalidUserId, format!("invalid user id: {shown}"))
            })?;
        if seen.insert(id) {
            users.push(id);
        }
    }
    if users.is_empty() {
        return Err(Error::bad_request(
            Code::UserListRequired,
            "sending to all users requires user list",
        ));
    }
    Ok(users)
}

/// Replaces every `{{name}}` whose name is in `vars` by its value, in one pass (a value is
/// never rendered again); unknown placeholders stay as they are.
pub fn render(template: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after
            .find("}}")
            .and_then(|end| Some((end, vars.get(&after[..end])?)))
        {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl Services {
    /// A page of `user`'s live notifications and their summary.
    pub async fn notifications(
        &self,
        user: UserId,
        unread_only: bool,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Notification>, Summary)> {
        let db = self.store.conn().await?;
        tokio::try_join!(
            store::notifications::list(&db, user, unread_only, limit, offset),
            store::notifications::summary(&db, user),
        )
    }

    /// Notification `id` of `user`, marked read when it was not (the returned object shows
    /// the change). 404 when it is not theirs.
    pub async fn open_notification(&self, user: UserId, id: Uuid) -> Result<Notification> {
        let outcome = {
            let db = self.store.conn().await?;
            store::notifications::mark_read(&db, user, id).await?
        };
        match outcome {
            MarkRead::NotFound => Err(not_found()),
            MarkRead::AlreadyRead(n) => Ok(n),
            MarkRead::Marked {
                notification,
                counted,
            } => {
                if counted {
                    self.push_notification_updates(&[user]).await;
                }
                Ok(notification)
            }
        }
    }

    /// Marks every unread notification of `user` read.
    pub async fn read_all_notifications(&self, user: UserId) -> Result<()> {
        let dropped = {
            let db = self.store.conn().await?;
            store::notifications::mark_all_read(&db, user).await?
        };
        if dropped > 0 {
            self.push_notification_updates(&[user]).await;
        }
        Ok(())
    }

    /// Deletes notification `id` of `user`. 404 when it is not theirs.
    pub async fn delete_notification(&self, user: UserId, id: Uuid) -> Result<()> {
        let deleted = {
            let db = self.store.conn().await?;
            store::notifications::delete(&db, user, id).await?
        };
        match deleted {
            None => Err(not_found()),
            Some(was_unread) => {
                if was_unread {
                    self.push_notification_updates(&[user]).await;
                }
                Ok(())
            }
        }
    }

    /// The `notification` event of `user`'s newest live unread notification, if any (sent
    /// on connect, DECISIONS.md "notifications").
    pub async fn latest_unread_frame(&self, user: UserId) -> Result<Option<Bytes>> {
        let db = self.store.conn().await?;
        Ok(store::notifications::latest_unread(&db, user)
            .await?
            .as_ref()
            .map(notification_frame))
    }

    /// Sends each of `users` their current `notification_update`. The change it reports is
    /// committed already, so a failure here is logged, not returned.
    async fn push_notification_updates(&self, users: &[UserId]) {
        match self.notification_summaries(users).await {
            Ok(summaries) => {
                for user in users {
                    let s = summaries.get(user).copied().unwrap_or(NO_NOTIFICATIONS);
                    self.route_frame(*user, notification_update_frame(s)).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "notification_update not sent"),
        }
    }

    async fn notification_summaries(&self, users: &[UserId]) -> Result<HashMap<UserId, Summary>> {
        let db = self.store.conn().await?;
        Ok(store::notifications::summaries(&db, users)
            .await?
            .into_iter()
            .collect())
    }

    /// Routes `frame` to every device of `user` on every node.
    async fn route_frame(&self, user: UserId, frame: Bytes) {
        let env = self.envelope(&Routed::Frame { frame, except: 0 });
        self.bus.route(user, env).await;
    }

    /// Stores a notification from the active template of the requested type for every
    /// distinct user in one statement, then pushes each user `notification` (when the
    /// template has `enable_websocket`) and `notification_update`.
    pub async fn batch_send(&self, req: BatchSend) -> Result<BatchOutcome> {
        let kind = req
            .template_type
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::invalid_body("invalid request body: template_type is required")
            })?;
        let vars = req.template_vars.as_ref().ok_or_else(|| {
            Error::invalid_body("invalid request body: template_vars is required")
        })?;
        let users = batch_recipients(req.user_ids.as_deref())?;
        let metadata = req.metadata.map(Value::Object);
        let db = self.store.conn().await?;
        let template = store::templates::active_by_type(&db, kind)
            .await?
            .ok_or_else(Error::template_not_found)?;
        let title = render(&template.title, vars);
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(Error::bad_request(
                Code::TitleTooLong,
                format!("rendered title is longer than {MAX_TITLE_CHARS} characters"),
            ));
        }
        let content = template
            .content_template
            .as_deref()
            .map(|c| render(c, vars));
        let stored = store::notifications::insert_for_users(
            &db,
            &users,
            &NewNotification {
                kind: &template.kind,
                title: &title,
                content: content.as_deref(),
                metadata: metadata.as_ref(),
                priority: template.priority,
            },
        )
        .await?;
        let summaries = store::notifications::summaries(&db, &users).await;
        drop(db);
        let summaries: HashMap<UserId, Summary> = match summaries {
            Ok(s) => s.into_iter().collect(),
            Err(e) => {
                tracing::warn!(error = %e, "notification_update not sent after a batch send");
                HashMap::new()
            }
        };
        for n in &stored {
            if template.enable_websocket {
                self.route_frame(n.user_id, notification_frame(n)).await;
            }
            if let Some(s) = summaries.get(&n.user_id) {
                self.route_frame(n.user_id, notification_update_frame(*s))
                    .await;
            }
        }
        Ok(BatchOutcome {
            success_count: stored.len(),
            total_count: users.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rendering() {
        let v = vars(&[("name", "Ann"), ("card", "{{name}}"), ("e", "")]);
        assert_eq!(render("Hi {{name}}!", &v), "Hi Ann!");
        assert_eq!(render("{{name}}{{name}}", &v), "AnnAnn");
        assert_eq!(render("{{missing}} {{name}}", &v), "{{missing}} Ann");
        assert_eq!(
            render("card {{card}}", &v),
            "card {{name}}",
            "values are not re-rendered"
        );
        assert_eq!(render("[{{e}}]", &v), "[]");
        assert_eq!(render("open {{name", &v), "open {{name");
        assert_eq!(render("{{ name }}", &v), "{{ name }}");
        assert_eq!(render("{{x{{name}}}}", &v), "{{xAnn}}");
        assert_eq!(render("名字：{{name}}。", &v), "名字：Ann。");
        assert_eq!(render("", &v), "");
    }

    #[test]
    fn recipients() {
        let a = Uuid::new_v4().to_string();
        let b = Uuid::new_v4().to_string();
        let ids = vec![a.clone(), b.clone(), a.clone()];
        let users = batch_recipients(Some(&ids)).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].to_string(), a);
        assert_eq!(
            batch_recipients(None).unwrap_err().to_string(),
            "sending to all users requires user list"
        );
        assert_eq!(
            batch_recipients(Some(&[])).unwrap_err().code(),
            "user_list_required"
        );
        let bad = vec![a.clone(), "nope".into()];
        assert_eq!(
            batch_recipients(Some(&bad)).unwrap_err().to_string(),
            "invalid user id: nope"
        );
        let nil = vec![Uuid::nil().to_string()];
        assert_eq!(
            batch_recipients(Some(&nil)).unwrap_err().code(),
            "invalid_user_id"
        );
        let many = vec![a; MAX_BATCH_USERS + 1];
        assert_eq!(
            batch_recipients(Some(&many)).unwrap_err().code(),
            "too_many_users"
        );
    }

    #[test]
    fn shapes_omit_nulls() {
        let n = Notification {
            id: Uuid::nil(),
            user_id: UserId::nil(),
            kind: "system".into(),
            title: "t".into(),
            content: None,
            metadata: Some(Value::Null),
            is_read: false,
            read_at: None,
            priority: 1,
            created_at: Timestamp(0),
            expires_at: None,
        };
        let v: Value = serde_json::from_slice(&notification_frame(&n)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "notification", "data": {
                "id": Uuid::nil(), "user_id": Uuid::nil(), "notification_type": "system",
                "title": "t", "is_read": false, "priority": 1,
                "created_at": "1970-01-01T00:00:00Z"}})
        );
        let v: Value =
            serde_json::from_slice(&notification_update_frame(NO_NOTIFICATIONS)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "notification_update",
                "data": {"unread_count": 0, "latest_notif_time": null}})
        );
    }
}
