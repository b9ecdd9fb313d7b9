//! Seed rows inserted at every start where missing: system settings and the default
//! notification templates. Existing rows are never changed.

use crate::error::Result;

/// A default system setting.
pub struct SettingSeed {
    /// `system_settings.setting_key`.
    pub key: &'static str,
    /// Initial value.
    pub value: String,
    /// `system_settings.description`.
    pub description: &'static str,
}

/// A default notification template (PROTOCOL.md §5.16).
pub struct TemplateSeed {
    /// Template type, unique.
    pub kind: &'static str,
    /// Title with `{{var}}` placeholders.
    pub title: &'static str,
    /// Content with `{{var}}` placeholders.
    pub content_template: &'static str,
    /// 0 normal, 1 important, 2 urgent.
    pub priority: i32,
}

/// The default templates, matched by type.
pub const DEFAULT_TEMPLATES: &[TemplateSeed] = &[
    TemplateSeed {
        kind: "new_message",
        title: "New Message",
        content_template: "{{sender_name}}: {{content}}",
        priority: 0,
    },
    TemplateSeed {
        kind: "new_group_message",
        title: "New Group Message",
        content_template: "{{sender_name}} in {{group_name}}: {{content}}",
        priority: 0,
    },
    TemplateSeed {
        kind: "system",
        title: "System Notification",
        content_template: "{{content}}",
        priority: 1,
    },
    TemplateSeed {
        kind: "card_completed",
        title: "Card Completed",
        content_template: "Your card {{card_name}} is ready!",
        priority: 0,
    },
];

/// Inserts the settings that are missing. Returns how many were inserted.
pub async fn settings(
    client: &impl deadpool_postgres::GenericClient,
    seeds: &[SettingSeed],
) -> Result<u64> {
    let mut inserted = 0;
    for s in seeds {
        inserted += client
            .execute(
                "INSERT INTO system_settings (setting_key, setting_value, description)
                 VALUES ($1, $2, $3) ON CONFLICT (setting_key) DO NOTHING",
                &[&s.key, &s.value, &s.description],
            )
            .await?;
    }
    Ok(inserted)
}

/// Inserts the default templates whose type is missing. Returns how many were inserted.
pub async fn templates(client: &impl deadpool_postgres::GenericClient) -> Result<u64> {
    let mut inserted = 0;
    for t in DEFAULT_TEMPLATES {
        inserted += client
            .execute(
                "INSERT INTO notification_templates
                     (type, title, content_template, priority, enable_push, enable_websocket, is_active)
                 VALUES ($1, $2, $3, $4, TRUE, TRUE, TRUE) ON CONFLICT (type) DO NOTHING",
                &[&t.kind, &t.title, &t.content_template, &t.priority],
            )
            .await?;
    }
    Ok(inserted)
}
