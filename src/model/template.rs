//! A stored notification template (`notification_templates`).

use uuid::Uuid;

use super::Timestamp;

/// A stored template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Row id.
    pub id: Uuid,
    /// `type`, unique.
    pub kind: String,
    /// Title with `{{var}}` placeholders.
    pub title: String,
    /// Content with `{{var}}` placeholders.
    pub content_template: Option<String>,
    /// 0 normal, 1 important, 2 urgent.
    pub priority: i32,
    /// Push notifications wanted (not used by this service).
    pub enable_push: bool,
    /// Pushed over WebSocket on a batch send.
    pub enable_websocket: bool,
    /// Only active templates can be sent.
    pub is_active: bool,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Free text for admins.
    pub description: Option<String>,
}
