//! Notification templates (PROTOCOL.md §3.9, §5.16): the editable fields read from a JSON
//! object with every key and type checked (an unknown key or a wrong type is a 400 naming
//! it, and never reaches SQL), and the admin operations on them.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::Services;
use crate::error::{Code, Error, Result};
use crate::model::Template;
use crate::store;
use crate::store::templates::{NewTemplate, TemplateChanges, Write};

/// Longest `type` (`varchar(50)`).
const MAX_TYPE_CHARS: usize = 50;
/// Longest `title` (`varchar(200)`).
const MAX_TITLE_CHARS: usize = 200;
/// Fields of the template shape a create body may carry but that are not stored from it.
const READ_ONLY: &[&str] = &["id", "created_at", "updated_at"];

fn invalid(field: &str, expected: &str) -> Error {
    Error::bad_request(
        Code::InvalidField,
        format!("invalid value for {field}: expected {expected}"),
    )
}

fn text(field: &str, v: &Value, max: usize) -> Result<String> {
    let expected = format!("a non-empty string of at most {max} characters");
    match v.as_str() {
        Some(s) if !s.trim().is_empty() && s.chars().count() <= max => Ok(s.to_string()),
        _ => Err(invalid(field, &expected)),
    }
}

fn nullable_text(field: &str, v: &Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(invalid(field, "a string or null")),
    }
}

fn boolean(field: &str, v: &Value) -> Result<bool> {
    v.as_bool().ok_or_else(|| invalid(field, "true or false"))
}

/// Reads the editable fields of `obj`. Keys in `ignored` are skipped; any other key that
/// is not an editable field is refused.
pub fn parse_fields(obj: &Map<String, Value>, ignored: &[&str]) -> Result<TemplateChanges> {
    let mut c = TemplateChanges::default();
    for (key, v) in obj {
        match key.as_str() {
            "type" => c.kind = Some(text(key, v, MAX_TYPE_CHARS)?),
            "title" => c.title = Some(text(key, v, MAX_TITLE_CHARS)?),
            "content_template" => c.content_template = Some(nullable_text(key, v)?),
            "description" => c.description = Some(nullable_text(key, v)?),
            "priority" => {
                c.priority = Some(
                    v.as_i64()
                        .filter(|p| (0..=2).contains(p))
                        .map(|p| p as i32)
                        .ok_or_else(|| invalid(key, "an integer from 0 to 2"))?,
                )
            }
            "enable_push" => c.enable_push = Some(boolean(key, v)?),
            "enable_websocket" => c.enable_websocket = Some(boolean(key, v)?),
            "is_active" => c.is_active = Some(boolean(key, v)?),
            k if ignored.contains(&k) => {}
            k => {
                let shown: String = k.chars().take(64).collect();
                return Err(Error::bad_request(
                    Code::UnknownField,
                    format!("unknown field: {shown}"),
                ));
            }
        }
    }
    Ok(c)
}

/// A new template from a create body: `type` and `title` required, booleans as given
/// (true when absent, the column defaults), priority 0 when absent.
pub fn new_template(obj: &Map<String, Value>) -> Result<NewTemplate> {
    let c = parse_fields(obj, READ_ONLY)?;
    let required =
        |field: &str| Error::bad_request(Code::MissingField, format!("{field} is required"));
    Ok(NewTemplate {
        kind: c.kind.ok_or_else(|| required("type"))?,
        title: c.title.ok_or_else(|| required("title"))?,
        content_template: c.content_template.flatten(),
        priority: c.priority.unwrap_or(0),
        enable_push: c.enable_push.unwrap_or(true),
        enable_websocket: c.enable_websocket.unwrap_or(true),
        is_active: c.is_active.unwrap_or(true),
        description: c.description.flatten(),
    })
}

fn duplicate(kind: &str) -> Error {
    Error::conflict(
        Code::DuplicateTemplateType,
        format!("a template of type {kind} already exists"),
    )
}

impl Services {
    /// Every template, by type.
    pub async fn templates(&self) -> Result<Vec<Template>> {
        let db = self.store.conn().await?;
        store::templates::list(&db).await
    }

    /// Creates a template from the fields in `body`; 409 when its type exists.
    pub async fn create_template(&self, body: &Map<String, Value>) -> Result<Template> {
        let t = new_template(body)?;
        let db = self.store.conn().await?;
        match store::templates::create(&db, &t).await? {
            Write::Done(t) => Ok(t),
            Write::DuplicateType | Write::NotFound => Err(duplicate(&t.kind)),
        }
    }

    /// Applies the fields in `body` to template `id`.
    pub async fn update_template(&self, id: Uuid, body: &Map<String, Value>) -> Result<Template> {
        let changes = parse_fields(body, &[])?;
        if changes == TemplateChanges::default() {
            return Err(Error::bad_request(Code::NoFields, "no fields to update"));
        }
        let db = self.store.conn().await?;
        match store::templates::update(&db, id, &changes).await? {
            Write::Done(t) => Ok(t),
            Write::NotFound => Err(Error::template_not_found()),
            Write::DuplicateType => Err(duplicate(changes.kind.as_deref().unwrap_or_default())),
        }
    }

    /// Deletes template `id`.
    pub async fn delete_template(&self, id: Uuid) -> Result<()> {
        let db = self.store.conn().await?;
        if store::templates::delete(&db, id).await? {
            Ok(())
        } else {
            Err(Error::template_not_found())
        }
    }

    /// Inserts the default templates that are missing; returns how many.
    pub async fn init_default_templates(&self) -> Result<u64> {
        let db = self.store.conn().await?;
        store::seed::templates(&db).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn fields_are_checked_by_name_and_type() {
        let c = parse_fields(
            &obj(
                json!({"type": "t", "title": "T", "content_template": null, "priority": 2,
                "enable_push": false, "enable_websocket": false, "is_active": false,
                "description": "d"}),
            ),
            &[],
        )
        .unwrap();
        assert_eq!(c.kind.as_deref(), Some("t"));
        assert_eq!(c.content_template, Some(None));
        assert_eq!(c.description, Some(Some("d".into())));
        assert_eq!(c.priority, Some(2));
        assert_eq!(
            (c.enable_push, c.enable_websocket, c.is_active),
            (Some(false), Some(false), Some(false))
        );
        let refused = [
            (
                json!({"type; DROP TABLE x": 1}),
                "unknown field: type; DROP TABLE x",
            ),
            (json!({"id": "x"}), "unknown field: id"),
            (
                json!({"priority": 3}),
                "invalid value for priority: expected an integer from 0 to 2",
            ),
            (
                json!({"priority": "1"}),
                "invalid value for priority: expected an integer from 0 to 2",
            ),
            (
                json!({"priority": 1.5}),
                "invalid value for priority: expected an integer from 0 to 2",
            ),
            (
                json!({"is_active": "true"}),
                "invalid value for is_active: expected true or false",
            ),
            (
                json!({"enable_push": null}),
                "invalid value for enable_push: expected true or false",
            ),
            (
                json!({"title": ""}),
                "invalid value for title: expected a non-empty string of at most 200 characters",
            ),
            (
                json!({"type": null}),
                "invalid value for type: expected a non-empty string of at most 50 characters",
            ),
            (
                json!({"type": "x".repeat(51)}),
                "invalid value for type: expected a non-empty string of at most 50 characters",
            ),
            (
                json!({"description": 5}),
                "invalid value for description: expected a string or null",
            ),
        ];
        for (body, text) in refused {
            let e = parse_fields(&obj(body.clone()), &[]).unwrap_err();
            assert_eq!(e.to_string(), text, "{body}");
            assert_eq!(e.status(), hyper::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn creating_keeps_booleans_as_given() {
        let t = new_template(&obj(
            json!({"type": "a", "title": "A", "enable_push": false,
            "enable_websocket": false, "is_active": false, "id": "ignored"}),
        ))
        .unwrap();
        assert!(!t.enable_push && !t.enable_websocket && !t.is_active);
        let t = new_template(&obj(json!({"type": "a", "title": "A"}))).unwrap();
        assert!(t.enable_push && t.enable_websocket && t.is_active);
        assert_eq!(
            (t.priority, t.content_template, t.description),
            (0, None, None)
        );
        assert_eq!(
            new_template(&obj(json!({"title": "A"})))
                .unwrap_err()
                .to_string(),
            "type is required"
        );
        assert_eq!(
            new_template(&obj(json!({"type": "a"})))
                .unwrap_err()
                .to_string(),
            "title is required"
        );
    }
}
