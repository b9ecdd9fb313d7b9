//! Where configuration values come from: the [`Env`] trait (so tests pass a map instead
//! of mutating the process environment), the process environment with an optional `.env`
//! file as a fallback, and the `.env` parser.

use std::collections::HashMap;

use super::ConfigError;

/// Where configuration values come from.
pub trait Env {
    /// The value of `key`, or `None` when it is unset.
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment, with values from a `.env` file as a fallback.
pub struct ProcessEnv {
    dotenv: HashMap<String, String>,
}

impl ProcessEnv {
    /// Reads `.env` from the working directory when it exists. Process variables win.
    pub fn load() -> Result<Self, ConfigError> {
        let dotenv = match std::fs::read_to_string(".env") {
            Ok(text) => parse_dotenv(&text).map_err(|line| ConfigError {
                var: ".env",
                expected: format!("KEY=value lines; line {line} is not one"),
                got: None,
            })?,
            Err(_) => HashMap::new(),
        };
        Ok(Self { dotenv })
    }
}

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key)
            .ok()
            .or_else(|| self.dotenv.get(key).cloned())
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

/// Parses `KEY=value` lines; `#` comments, blank lines, `export ` prefixes and single or
/// double quotes around the value are accepted. Returns the 1-based number of a bad line.
pub fn parse_dotenv(text: &str) -> Result<HashMap<String, String>, usize> {
    let mut out = HashMap::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=').ok_or(idx + 1)?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(idx + 1);
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| {
                value
                    .strip_prefix(*q)
                    .and_then(|v| v.strip_suffix(*q))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| value.to_string());
        out.insert(key.to_string(), value);
    }
    Ok(out)
}
