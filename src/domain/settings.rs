//! System settings: their keys, types and defaults, and the in-memory copy every node
//! reads on hot paths.
//!
//! Values stay strings on the wire and in `system_settings`, as in the original, but each
//! key has a type; [`validate`] refuses a wrong value. A change is written to PostgreSQL and
//! announced on the control channel so every node reloads its [`SettingsCache`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::error::{Code, Error, Result};
use crate::store::seed::SettingSeed;

/// The type of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `"true"` or `"false"`.
    Bool,
    /// A non-negative integer up to `max`.
    Int {
        /// Largest accepted value.
        max: u64,
    },
}

/// One known setting.
pub struct Definition {
    /// `system_settings.setting_key`.
    pub key: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Human description stored with the seed.
    pub description: &'static str,
}

/// Typing indicator on/off.
pub const TYPING: &str = "enable_typing_indicator";
/// Read receipts on/off.
pub const READ_RECEIPT: &str = "enable_read_receipt";
/// Presence on/off.
pub const ONLINE_STATUS: &str = "enable_online_status";
/// First-message limit on/off.
pub const FIRST_MESSAGE_LIMIT: &str = "enable_first_message_limit";
/// Blocking on/off.
pub const BLOCK: &str = "enable_block_feature";
/// Video size limit in MiB.
pub const MAX_VIDEO_SIZE_MB: &str = "max_video_size_mb";
/// Recall window in seconds.
pub const RECALL_WINDOW: &str = "recall_window_seconds";
/// Edit window in seconds.
pub const EDIT_WINDOW: &str = "edit_window_seconds";
/// Offline messages sent on one connect.
pub const OFFLINE_MAX: &str = "offline_max_per_connect";
/// Per-user message rate limit.
pub const MAX_MESSAGES_PER_SECOND: &str = "max_messages_per_second";
/// Largest group, owner included.
pub const MAX_GROUP_MEMBERS: &str = "max_group_members";

/// Every known setting.
pub const DEFINITIONS: &[Definition] = &[
    Definition {
        key: TYPING,
        kind: Kind::Bool,
        description: "Send typing indicators to conversation members",
    },
    Definition {
        key: READ_RECEIPT,
        kind: Kind::Bool,
        description: "Send read receipts to conversation members",
    },
    Definition {
        key: ONLINE_STATUS,
        kind: Kind::Bool,
        description: "Track and show online status",
    },
    Definition {
        key: FIRST_MESSAGE_LIMIT,
        kind: Kind::Bool,
        description: "In a private chat, one message until the other side replies",
    },
    Definition {
        key: BLOCK,
        kind: Kind::Bool,
        description: "Enforce user blocks on private messages",
    },
    Definition {
        key: MAX_VIDEO_SIZE_MB,
        kind: Kind::Int { max: 100_000 },
        description: "Largest video (metadata.file_size) in MiB",
    },
    Definition {
        key: RECALL_WINDOW,
        kind: Kind::Int { max: 86_400 * 365 },
        description: "Seconds after sending during which a message can be recalled",
    },
    Definition {
        key: EDIT_WINDOW,
        kind: Kind::Int { max: 86_400 * 365 },
        description: "Seconds after sending during which a text message can be edited by its sender; 0 turns editing off",
    },
    Definition {
        key: OFFLINE_MAX,
        kind: Kind::Int { max: 100_000 },
        description: "Most offline messages delivered on one connect; the rest are announced by offline_truncated",
    },
    Definition {
        key: MAX_MESSAGES_PER_SECOND,
        kind: Kind::Int { max: 1_000_000 },
        description: "Messages one user may send per second (burst twice that); 0 disables the limit",
    },
    Definition {
        key: MAX_GROUP_MEMBERS,
        kind: Kind::Int { max: 10_000_000 },
        description: "Most active members of a group, owner included; creating or adding past it is refused (group_too_large); 0 disables the limit",
    },
];

/// The seed values for a fresh database.
pub fn seeds(config: &Config) -> Vec<SettingSeed> {
    DEFINITIONS
        .iter()
        .map(|d| SettingSeed {
            key: d.key,
            value: default_value(d.key, config),
            description: d.description,
        })
        .collect()
}

fn default_value(key: &str, config: &Config) -> String {
    match key {
        TYPING => "false".into(),
        READ_RECEIPT | ONLINE_STATUS | FIRST_MESSAGE_LIMIT | BLOCK => "true".into(),
        MAX_VIDEO_SIZE_MB => config.max_video_size_mb.to_string(),
        RECALL_WINDOW => "120".into(),
        EDIT_WINDOW => "900".into(),
        OFFLINE_MAX => "1000".into(),
        MAX_MESSAGES_PER_SECOND => "20".into(),
        MAX_GROUP_MEMBERS => "2000".into(),
        _ => String::new(),
    }
}

/// Checks a new value for `key`. Unknown keys are a 400 naming the key.
pub fn validate(key: &str, value: &str) -> Result<()> {
    let Some(def) = DEFINITIONS.iter().find(|d| d.key == key) else {
        return Err(Error::bad_request(
            Code::SettingNotFound,
            format!("setting key not found: {key}"),
        ));
    };
    match def.kind {
        Kind::Bool if value == "true" || value == "false" => Ok(()),
        Kind::Bool => Err(Error::bad_request(
            Code::InvalidSettingValue,
            "value must be 'true' or 'false'",
        )),
        Kind::Int { max } => match value.parse::<u64>() {
            Ok(v) if v <= max && !value.starts_with('+') => Ok(()),
            _ => Err(Error::bad_request(
                Code::InvalidSettingValue,
                format!("value must be an integer from 0 to {max}"),
            )),
        },
    }
}

/// A consistent view of every setting, as typed values.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Every row of `system_settings`, as stored.
    pub raw: BTreeMap<String, String>,
    /// `enable_typing_indicator`.
    pub typing: bool,
    /// `enable_read_receipt`.
    pub read_receipt: bool,
    /// `enable_online_status`.
    pub online_status: bool,
    /// `enable_first_message_limit`.
    pub first_message_limit: bool,
    /// `enable_block_feature`.
    pub block: bool,
    /// `max_video_size_mb`.
    pub max_video_size_mb: u64,
    /// `recall_window_seconds`.
    pub recall_window_seconds: u64,
    /// `edit_window_seconds` (0 = editing off).
    pub edit_window_seconds: u64,
    /// `offline_max_per_connect`.
    pub offline_max_per_connect: u64,
    /// `max_messages_per_second` (0 = unlimited).
    pub max_messages_per_second: u64,
    /// `max_group_members` (0 = unlimited).
    pub max_group_members: u64,
}

impl Snapshot {
    /// Typed view of the stored rows. A missing or invalid value falls back to the default
    /// (a feature switch missing from the table is off, as in the original).
    pub fn from_rows(raw: BTreeMap<String, String>, config: &Config) -> Self {
        let flag = |k: &str| raw.get(k).map(String::as_str) == Some("true");
        let int = |k: &str| {
            raw.get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| default_value(k, config).parse().unwrap_or(0))
        };
        Snapshot {
            typing: flag(TYPING),
            read_receipt: flag(READ_RECEIPT),
            online_status: flag(ONLINE_STATUS),
            first_message_limit: flag(FIRST_MESSAGE_LIMIT),
            block: flag(BLOCK),
            max_video_size_mb: int(MAX_VIDEO_SIZE_MB),
            recall_window_seconds: int(RECALL_WINDOW),
            edit_window_seconds: int(EDIT_WINDOW),
            offline_max_per_connect: int(OFFLINE_MAX),
            max_messages_per_second: int(MAX_MESSAGES_PER_SECOND),
            max_group_members: int(MAX_GROUP_MEMBERS),
            raw,
        }
    }
}

/// The node's current settings, swapped whole on reload.
#[derive(Clone)]
pub struct SettingsCache {
    current: Arc<RwLock<Arc<Snapshot>>>,
    config: Arc<Config>,
}

impl SettingsCache {
    /// A cache holding `snapshot`.
    pub fn new(snapshot: Snapshot, config: Arc<Config>) -> Self {
        SettingsCache {
            current: Arc::new(RwLock::new(Arc::new(snapshot))),
            config,
        }
    }

    /// The current snapshot (cheap: one `Arc` clone).
    pub fn get(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the snapshot with freshly read rows. Returns true when anything changed.
    pub fn replace(&self, raw: BTreeMap<String, String>) -> bool {
        let next = Snapshot::from_rows(raw, &self.config);
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if **cur == next {
            return false;
        }
        *cur = Arc::new(next);
        true
    }

    /// Reads every row from PostgreSQL into the cache.
    pub async fn reload(&self, client: &impl deadpool_postgres::GenericClient) -> Result<bool> {
        Ok(self.replace(crate::store::settings::all(client).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_by_type() {
        assert!(validate(TYPING, "true").is_ok());
        assert!(validate(TYPING, "false").is_ok());
        assert_eq!(
            validate(TYPING, "yes").unwrap_err().public_message(),
            "value must be 'true' or 'false'"
        );
        assert!(validate(RECALL_WINDOW, "300").is_ok());
        assert!(validate(RECALL_WINDOW, "-1").is_err());
        assert!(validate(RECALL_WINDOW, "+5").is_err());
        assert!(validate(RECALL_WINDOW, "1e3").is_err());
        assert!(validate(OFFLINE_MAX, "100001").is_err());
        assert_eq!(
            validate("nope", "true").unwrap_err().public_message(),
            "setting key not found: nope"
        );
    }

    #[test]
    fn every_definition_has_a_valid_default() {
        let env: std::collections::HashMap<String, String> = [
            ("DATABASE_URL", "postgres://localhost/x"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = Config::from_env(&env).unwrap();
        for seed in seeds(&config) {
            validate(seed.key, &seed.value).unwrap();
        }
        let snap = Snapshot::from_rows(BTreeMap::new(), &config);
        assert!(!snap.typing && !snap.block);
        assert_eq!(snap.recall_window_seconds, 120);
        assert_eq!(snap.edit_window_seconds, 900);
        assert_eq!(snap.max_video_size_mb, 50);
        assert_eq!(snap.max_group_members, 2000);
    }
}
