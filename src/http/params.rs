//! Path and query parameters: UUIDs in the path (400 with the route's own text when
//! malformed) and paging (`limit` 1..100 with each route's default, `offset` ≥ 0).

use uuid::Uuid;

use super::Call;
use crate::error::{Code, Error, Result};

/// Largest page.
pub const MAX_LIMIT: i64 = 100;
/// Largest `offset`: deeper pages cost a scan of everything before them (use
/// `before_seq` to page far back in a history).
pub const MAX_OFFSET: i64 = 10_000;

/// The path parameter `name` as a UUID (or an id type over one); `message` is the 400
/// text when it is not one.
pub fn path_uuid<T: From<Uuid>>(call: &Call, name: &str, message: &'static str) -> Result<T> {
    call.params
        .get(name)
        .and_then(|v| Uuid::try_parse(v).ok())
        .map(T::from)
        .ok_or_else(|| Error::bad_request(Code::InvalidId, message))
}

/// Decoded query parameters of a request.
pub struct Query {
    pairs: Vec<(String, String)>,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) if hex.len() == 2 => {
                        out.push(b);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    /// Parses the query string of `call`.
    pub fn of(call: &Call) -> Query {
        Query::parse(call.req.uri().query().unwrap_or(""))
    }

    /// Parses a raw query string.
    pub fn parse(raw: &str) -> Query {
        let pairs = raw
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (percent_decode(k), percent_decode(v)),
                None => (percent_decode(kv), String::new()),
            })
            .collect();
        Query { pairs }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first non-empty (trimmed) value among `names`.
    pub fn text(&self, names: &[&str]) -> Option<String> {
        names
            .iter()
            .filter_map(|n| self.get(n))
            .map(str::trim)
            .find(|v| !v.is_empty())
            .map(str::to_string)
    }

    /// `limit`: `default` when absent, else 1..=100, else 400.
    pub fn limit(&self, default: i64) -> Result<i64> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(Error::bad_request(
                    Code::InvalidLimit,
                    format!("limit must be an integer from 1 to {MAX_LIMIT}"),
                )),
            },
        }
    }

    /// `offset`: 0 when absent, else an integer from 0 to [`MAX_OFFSET`], else 400.
    pub fn offset(&self) -> Result<i64> {
        match self.get("offset") {
            None => Ok(0),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n > MAX_OFFSET => Err(Error::bad_request(
                    Code::InvalidOffset,
                    format!("offset must be at most {MAX_OFFSET}"),
                )),
                Ok(n) if n >= 0 => Ok(n),
                _ => Err(Error::bad_request(
                    Code::InvalidOffset,
                    "offset must be a non-negative integer",
                )),
            },
        }
    }

    /// An optional non-negative integer parameter (e.g. `before_seq`); 400 when malformed.
    pub fn seq(&self, name: &'static str) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Some(n)),
                _ => Err(Error::bad_request(
                    Code::InvalidSeq,
                    format!("{name} must be a non-negative integer"),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        let q = Query::parse("q=%E6%B5%8B%E8%AF%95&keyword=a+b&x=%zz&limit=5");
        assert_eq!(q.get("q"), Some("测试"));
        assert_eq!(q.get("keyword"), Some("a b"));
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(q.text(&["nope", "q"]).as_deref(), Some("测试"));
    }

    #[test]
    fn paging_bounds() {
        assert_eq!(Query::parse("").limit(20).unwrap(), 20);
        assert_eq!(Query::parse("limit=100").limit(20).unwrap(), 100);
        for bad in ["limit=0", "limit=101", "limit=-1", "limit=abc", "limit="] {
            assert_eq!(
                Query::parse(bad).limit(20).unwrap_err().code(),
                "invalid_limit",
                "{bad}"
            );
        }
        assert_eq!(Query::parse("offset=7").offset().unwrap(), 7);
        assert_eq!(Query::parse("offset=10000").offset().unwrap(), MAX_OFFSET);
        let e = Query::parse("offset=10001").offset().unwrap_err();
        assert_eq!(
            (e.code(), e.public_message().as_ref()),
            ("invalid_offset", "offset must be at most 10000")
        );
        for bad in ["offset=-1", "offset=x", "offset="] {
            assert_eq!(
                Query::parse(bad).offset().unwrap_err().code(),
                "invalid_offset",
                "{bad}"
            );
        }
        assert_eq!(
            Query::parse("before_seq=4").seq("before_seq").unwrap(),
            Some(4)
        );
        assert!(Query::parse("before_seq=-4").seq("before_seq").is_err());
    }
}
