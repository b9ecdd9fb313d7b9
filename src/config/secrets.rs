//! The JWT secrets' strength rules: long enough for HS256, and not a placeholder copied
//! from one of our example files. A refused secret is named, never echoed.

use super::ConfigError;

/// Minimum length of `JWT_SECRET` in bytes: 256 bits, the HS256 key size.
pub const MIN_SECRET_BYTES: usize = 32;

/// What a strong secret is, for error messages.
pub(super) const STRONG_SECRET: &str = "at least 32 bytes of random data, not an example placeholder \
    (e.g. head -c 32 /dev/urandom | base64)";

/// Words that mark a secret copied from an example file (compared case-insensitively,
/// ignoring `-` and `_`).
const PLACEHOLDERS: &[&str] = &["changeme", "changeit", "replaceme", "yoursecret", "example"];

/// A JWT secret must be long and must not be one of the placeholders our examples ship
/// (`change-me`, `CHANGE-ME`, `change-me-in-production`, …). The value is never printed.
pub fn check_jwt_secret(var: &'static str, secret: &str) -> Result<(), ConfigError> {
    let folded: String = secret
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .collect::<String>()
        .to_ascii_lowercase();
    let placeholder = PLACEHOLDERS.iter().any(|p| folded.contains(p));
    if secret.len() < MIN_SECRET_BYTES || placeholder {
        return Err(ConfigError {
            var,
            expected: format!(
                "{STRONG_SECRET}; this one is {}",
                if placeholder {
                    "a placeholder"
                } else {
                    "too short"
                }
            ),
            got: None,
        });
    }
    Ok(())
}
