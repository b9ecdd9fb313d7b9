//! A user's profile as the external profile ("agent") service describes it; cached in
//! Redis as this JSON shape and shown in conversation lists and searches.

use serde::{Deserialize, Serialize};

/// What the agent knows about a user; a missing field is an empty string, as in the
/// original.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Avatar URL.
    #[serde(default)]
    pub avatar_url: String,
    /// The user's domain (shown as `username`).
    #[serde(default)]
    pub domain: String,
    /// Job title.
    #[serde(default)]
    pub full_position: String,
}
