//! `notification_templates` rows: list, create, partial update by fixed columns, delete,
//! and the active template of a type for a batch send. Defaults are seeded by
//! [`super::seed::templates`].

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::Template;

/// Every field of a new template (booleans stored as given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTemplate {
    /// `type`.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Content template.
    pub content_template: Option<String>,
    /// Priority.
    pub priority: i32,
    /// `enable_push`.
    pub enable_push: bool,
    /// `enable_websocket`.
    pub enable_websocket: bool,
    /// `is_active`.
    pub is_active: bool,
    /// Description.
    pub description: Option<String>,
}

/// The fields a partial update sets; `None` leaves a column as it is. For the nullable
/// columns `Some(None)` sets NULL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateChanges {
    /// `type`.
    pub kind: Option<String>,
    /// `title`.
    pub title: Option<String>,
    /// `content_template`.
    pub content_template: Option<Option<String>>,
    /// `priority`.
    pub priority: Option<i32>,
    /// `enable_push`.
    pub enable_push: Option<bool>,
    /// `enable_websocket`.
    pub enable_websocket: Option<bool>,
    /// `is_active`.
    pub is_active: Option<bool>,
    /// `description`.
    pub description: Option<Option<String>>,
}

/// Outcome of a create or update that may collide on `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Stored.
    Done(Template),
    /// Another template has this type.
    DuplicateType,
    /// No template with this id (update only).
    NotFound,
}

macro_rules! columns {
    () => {
        "id, type, title, content_template, COALESCE(priority, 0), COALESCE(enable_push, TRUE),
         COALESCE(enable_websocket, TRUE), COALESCE(is_active, TRUE),
         COALESCE(created_at, updated_at, to_timestamp(0)),
         COALESCE(updated_at, created_at, to_timestamp(0)), description"
    };
}

fn from_row(r: &tokio_postgres::Row) -> Template {
    Template {
        id: r.get(0),
        kind: r.get(1),
        title: r.get(2),
        content_template: r.get(3),
        priority: r.get(4),
        enable_push: r.get(5),
        enable_websocket: r.get(6),
        is_active: r.get(7),
        created_at: r.get(8),
        updated_at: r.get(9),
        description: r.get(10),
    }
}

fn is_unique_violation(e: &Error) -> bool {
    matches!(e, Error::Db(d) if d.code() == Some(&SqlState::UNIQUE_VIOLATION))
}

/// Every template, by type.
pub async fn list(client: &impl GenericClient) -> Result<Vec<Template>> {
    let stmt = client
        .prepare_cached(concat!(
            "SELECT ",
            columns!(),
            " FROM notification_templates ORDER BY type, id"
        ))
        .await?;
    Ok(client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(from_row)
        .collect())
}

/// The active template of type `kind`.
pub async fn active_by_type(client: &impl GenericClient, kind: &str) -> Result<Option<Template>> {
    let stmt = client
        .prepare_cached(concat!(
            "SELECT ",
            columns!(),
            " FROM notification_templates WHERE type = $1 AND COALESCE(is_active, TRUE)"
        ))
        .await?;
    Ok(client
        .query_opt(&stmt, &[&kind])
        .await?
        .as_ref()
        .map(from_row))
}

/// Inserts `t`; [`Write::DuplicateType`] when its type exists.
pub async fn create(client: &impl GenericClient, t: &NewTemplate) -> Result<Write> {
    let stmt = client
        .prepare_cached(concat!(
            "INSERT INTO notification_templates
                 (type, title, content_template, priority, enable_push, enable_websocket,
                  is_active, description, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), now())
             ON CONFLICT (type) DO NOTHING
             RETURNING ",
            columns!()
        ))
        .await?;
    let row = client
        .query_opt(
            &stmt,
            &[
                &t.kind,
                &t.title,
                &t.content_template,
                &t.priority,
                &t.enable_push,
                &t.enable_websocket,
                &t.is_active,
                &t.description,
            ],
        )
        .await?;
    Ok(match row {
        Some(r) => Write::Done(from_row(&r)),
        None => Write::DuplicateType,
    })
}

/// Applies `c` to template `id` and refreshes `updated_at`. The statement is fixed: each
/// column is either kept or set from its parameter.
pub async fn update(client: &impl GenericClient, id: Uuid, c: &TemplateChanges) -> Result<Write> {
    let stmt = client
        .prepare_cached(concat!(
            "UPDATE notification_templates SET
                 type = COALESCE($2, type),
                 title = COALESCE($3, title),
                 content_template = CASE WHEN $4 THEN $5 ELSE content_template END,
                 priority = COALESCE($6, priority),
                 enable_push = COALESCE($7, enable_push),
                 enable_websocket = COALESCE($8, enable_websocket),
                 is_active = COALESCE($9, is_active),
                 description = CASE WHEN $10 THEN $11 ELSE description END,
                 updated_at = now()
             WHERE id = $1
             RETURNING ",
            columns!()
        ))
        .await?;
    let content = c.content_template.clone().flatten();
    let description = c.description.clone().flatten();
    let row = client
        .query_opt(
            &stmt,
            &[
                &id,
                &c.kind,
                &c.title,
                &c.content_template.is_some(),
                &content,
                &c.priority,
                &c.enable_push,
                &c.enable_websocket,
                &c.is_active,
                &c.description.is_some(),
                &description,
            ],
        )
        .await
        .map_err(Error::from);
    match row {
        Ok(Some(r)) => Ok(Write::Done(from_row(&r))),
        Ok(None) => Ok(Write::NotFound),
        Err(e) if is_unique_violation(&e) => Ok(Write::DuplicateType),
        Err(e) => Err(e),
    }
}

/// Deletes template `id`; false when there was none.
pub async fn delete(client: &impl GenericClient, id: Uuid) -> Result<bool> {
    let stmt = client
        .prepare_cached("DELETE FROM notification_templates WHERE id = $1")
        .await?;
    Ok(client.execute(&stmt, &[&id]).await? > 0)
}
