//! `notifications` rows: a user's list and unread summary, marking read, deleting, and the
//! one-statement insert of a batch send.
//!
//! A row counts as unread while `is_read` is not true (an old row may hold NULL) and as
//! live while `expires_at` is NULL or in the future; unread counts only cover live rows.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{Timestamp, UserId};

/// A stored notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Row id.
    pub id: Uuid,
    /// Its owner.
    pub user_id: UserId,
    /// `notification_type` (a template type, `system`, …).
    pub kind: String,
    /// Title.
    pub title: String,
    /// Text, if any.
    pub content: Option<String>,
    /// Free JSON, if any.
    pub metadata: Option<Value>,
    /// Read by its owner.
    pub is_read: bool,
    /// When it was read.
    pub read_at: Option<Timestamp>,
    /// 0 normal, 1 important, 2 urgent.
    pub priority: i32,
    /// Creation time.
    pub created_at: Timestamp,
    /// After this it is no longer listed or counted.
    pub expires_at: Option<Timestamp>,
}

/// A user's unread count and newest notification time, over live rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Live unread notifications.
    pub unread_count: i64,
    /// `created_at` of the newest live notification, read or not.
    pub latest: Option<Timestamp>,
}

/// The selected columns, in the order [`from_row`] reads them.
macro_rules! columns {
    () => {
        "id, user_id, notification_type, title, content, metadata, COALESCE(is_read, FALSE),
         read_at, COALESCE(priority, 0), COALESCE(created_at, to_timestamp(0)), expires_at"
    };
}

/// SQL condition: the row has not expired.
macro_rules! live {
    () => {
        "(expires_at IS NULL OR expires_at > now())"
    };
}

fn from_row(r: &tokio_postgres::Row) -> Notification {
    Notification {
        id: r.get(0),
        user_id: r.get(1),
        kind: r.get(2),
        title: r.get(3),
        content: r.get(4),
        metadata: r.get(5),
        is_read: r.get(6),
        read_at: r.get(7),
        priority: r.get(8),
        created_at: r.get(9),
        expires_at: r.get(10),
    }
}

/// A page of `user`'s live notifications, highest priority first, then newest first.
pub async fn list(
    client: &impl GenericClient,
    user: UserId,
    unread_only: bool,
    limit: i64,
    offset: i64,
) -> Result<Vec<Notification>> {
    let stmt = client
        .prepare_cached(concat!(
            "SELECT ",
            columns!(),
            " FROM notifications WHERE user_id = $1 AND ",
            live!(),
            " AND (NOT $2 OR is_read IS NOT TRUE)
             ORDER BY COALESCE(priority, 0) DESC, created_at DESC, id DESC LIMIT $3 OFFSET $4"
        ))
        .await?;
    let rows = client
        .query(&stmt, &[&user, &unread_only, &limit, &offset])
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// The unread count and newest time of each of `users` that has live notifications.
pub async fn summaries(
    client: &impl GenericClient,
    users: &[UserId],
) -> Result<Vec<(UserId, Summary)>> {
    let stmt = client
        .prepare_cached(concat!(
            "SELECT user_id, count(*) FILTER (WHERE is_read IS NOT TRUE), max(created_at)
             FROM notifications WHERE user_id = ANY($1) AND ",
            live!(),
            " GROUP BY user_id"
        ))
        .await?;
    let rows = client.query(&stmt, &[&users]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Summary {
                    unread_count: r.get(1),
                    latest: r.get(2),
                },
            )
        })
        .collect())
}

/// The summary of one user (zero and no time when they have nothing live).
pub async fn summary(client: &impl GenericClient, user: UserId) -> Result<Summary> {
    Ok(summaries(client, &[user])
        .await?
        .into_iter()
        .next()
        .map(|(_, s)| s)
        .unwrap_or(Summary {
            unread_count: 0,
            latest: None,
        }))
}

/// What marking one notification read did.
#[derive(Debug, Clone, PartialEq)]
pub enum MarkRead {
    /// No such notification of this user.
    NotFound,
    /// It was already read.
    AlreadyRead(Notification),
    /// It is read now; `counted` is true when it was live, so the unread count dropped.
    Marked {
        /// The row after the change.
        notification: Notification,
        /// The live unread count changed.
        counted: bool,
    },
}

/// Marks `id` of `user` read (expired or not) and returns it.
pub async fn mark_read(client: &impl GenericClient, user: UserId, id: Uuid) -> Result<MarkRead> {
    let update = client
        .prepare_cached(concat!(
            "UPDATE notifications SET is_read = TRUE, read_at = now()
             WHERE id = $1 AND user_id = $2 AND is_read IS NOT TRUE
             RETURNING ",
            columns!(),
            ", ",
            live!()
        ))
        .await?;
    if let Some(r) = client.query_opt(&update, &[&id, &user]).await? {
        return Ok(MarkRead::Marked {
            notification: from_row(&r),
            counted: r.get(11),
        });
    }
    let select = client
        .prepare_cached(concat!(
            "SELECT ",
            columns!(),
            " FROM notifications WHERE id = $1 AND user_id = $2"
        ))
        .await?;
    Ok(match client.query_opt(&select, &[&id, &user]).await? {
        Some(r) => MarkRead::AlreadyRead(from_row(&r)),
        None => MarkRead::NotFound,
    })
}

/// Marks every unread notification of `user` read. Returns how many of them were live
/// (by how much the unread count dropped).
pub async fn mark_all_read(client: &impl GenericClient, user: UserId) -> Result<i64> {
    let stmt = client
        .prepare_cached(concat!(
            "WITH marked AS (
                 UPDATE notifications SET is_read = TRUE, read_at = now()
                 WHERE user_id = $1 AND is_read IS NOT TRUE
                 RETURNING expires_at
             )
             SELECT count(*) FROM marked WHERE ",
            live!()
        ))
        .await?;
    Ok(client.query_one(&stmt, &[&user]).await?.get(0))
}

/// Deletes `id` of `user`. `None` when there was no such row; else whether it was a live
/// unread one (so the unread count dropped).
pub async fn delete(client: &impl GenericClient, user: UserId, id: Uuid) -> Result<Option<bool>> {
    let stmt = client
        .prepare_cached(concat!(
            "DELETE FROM notifications WHERE id = $1 AND user_id = $2
             RETURNING is_read IS NOT TRUE AND ",
            live!()
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&id, &user])
        .await?
        .map(|r| r.get(0)))
}

/// `user`'s newest live unread notification.
pub async fn latest_unread(
    client: &impl GenericClient,
    user: UserId,
) -> Result<Option<Notification>> {
    let stmt = client
        .prepare_cached(concat!(
            "SELECT ",
            columns!(),
            " FROM notifications WHERE user_id = $1 AND is_read IS NOT TRUE AND ",
            live!(),
            " ORDER BY created_at DESC, id DESC LIMIT 1"
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&user])
        .await?
        .as_ref()
        .map(from_row))
}

/// The same new notification for each of `users`.
pub struct NewNotification<'a> {
    /// `notification_type`.
    pub kind: &'a str,
    /// Rendered title.
    pub title: &'a str,
    /// Rendered content.
    pub content: Option<&'a str>,
    /// Metadata object.
    pub metadata: Option<&'a Value>,
    /// Priority.
    pub priority: i32,
}

/// Inserts `n` once per user (unread, no expiry) in one statement; returns the rows.
pub async fn insert_for_users(
    client: &impl GenericClient,
    users: &[UserId],
    n: &NewNotification<'_>,
) -> Result<Vec<Notification>> {
    let stmt = client
        .prepare_cached(concat!(
            "INSERT INTO notifications
                 (user_id, notification_type, title, content, metadata, priority, is_read, created_at)
             SELECT u, $2::varchar, $3::varchar, $4::text, $5::jsonb, $6::int4, FALSE, now()
             FROM unnest($1::uuid[]) AS u
             RETURNING ",
            columns!()
        ))
        .await?;
    let rows = client
        .query(
            &stmt,
            &[
                &users,
                &n.kind,
                &n.title,
                &n.content,
                &n.metadata,
                &n.priority,
            ],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}
