//! Typed reads of configuration values: optional, required, bounded numbers and
//! booleans, each failing with a [`ConfigError`] that names the variable.

use std::fmt;

use super::{ConfigError, Env};

/// Typed reads of one environment: trimmed, empty as unset, a [`ConfigError`] naming the
/// variable when a value is malformed.
pub(super) struct Reader<'a> {
    pub(super) env: &'a dyn Env,
}

impl Reader<'_> {
    /// The trimmed value, with empty treated as unset.
    pub(super) fn opt(&self, var: &'static str) -> Option<String> {
        self.env
            .get(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    pub(super) fn required(
        &self,
        var: &'static str,
        expected: &str,
    ) -> Result<String, ConfigError> {
        self.opt(var).ok_or_else(|| ConfigError {
            var,
            expected: expected.to_string(),
            got: None,
        })
    }

    pub(super) fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &self,
        var: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        let Some(raw) = self.opt(var) else {
            return Ok(default);
        };
        match raw.parse::<T>() {
            Ok(v) if v >= min && v <= max => Ok(v),
            _ => Err(ConfigError {
                var,
                expected: format!("an integer from {min} to {max}"),
                got: Some(raw),
            }),
        }
    }

    /// `1`/`true` or `0`/`false`; unset (or empty) is `default`.
    pub(super) fn boolean(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.opt(var).as_deref() {
            None => Ok(default),
            Some("1" | "true") => Ok(true),
            Some("0" | "false") => Ok(false),
            Some(other) => Err(ConfigError {
                var,
                expected: "1, true, 0 or false".into(),
                got: Some(other.to_string()),
            }),
        }
    }
}
