//! Tokens: HS256 JWTs with a `user_id` claim, verified the same way for HTTP and WebSocket.
//!
//! Stricter than the original on purpose (DECISIONS.md "tokens"): HS256 only, `exp`
//! required, `user_id` a valid non-nil UUID. Admin rights come from the `role: "admin"`
//! claim or from `ADMIN_USER_IDS`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Code, Error};
use crate::model::UserId;

pub mod jwt_hmac;

/// Who is calling, as proven by a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The `user_id` claim.
    pub user_id: UserId,
    /// Admin by claim or by configuration.
    pub is_admin: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    user_id: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

/// Verifies and issues tokens with one shared secret.
#[derive(Clone)]
pub struct Tokens {
    inner: Arc<Inner>,
}

struct Inner {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    admins: HashSet<Uuid>,
}

/// Why a token was refused (logged at debug level; clients see `invalid token`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Signature, algorithm, expiry or shape is wrong.
    #[error("{0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// `user_id` is not a valid non-nil UUID.
    #[error("user_id is not a valid non-nil UUID")]
    BadUserId,
}

impl Tokens {
    /// Keys from the `JWT_SECRET`; `admins` from `ADMIN_USER_IDS`.
    pub fn new(secret: &str, admins: HashSet<Uuid>) -> Self {
        jwt_hmac::install();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Tokens {
            inner: Arc::new(Inner {
                decoding: DecodingKey::from_secret(secret.as_bytes()),
                encoding: EncodingKey::from_secret(secret.as_bytes()),
                validation,
                admins,
            }),
        }
    }

    /// Checks a compact JWT and returns the caller it proves.
    pub fn verify(&self, token: &str) -> Result<Caller, TokenError> {
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.inner.decoding, &self.inner.validation)?;
        let user_id = Uuid::try_parse(&data.claims.user_id).map_err(|_| TokenError::BadUserId)?;
        if user_id.is_nil() {
            return Err(TokenError::BadUserId);
        }
        let is_admin =
            data.claims.role.as_deref() == Some("admin") || self.inner.admins.contains(&user_id);
        Ok(Caller {
            user_id: UserId::from_uuid(user_id),
            is_admin,
        })
    }

    /// Signs a token for `user_id` valid for `ttl`, with `role: "admin"` when asked.
    pub fn issue(&self, user_id: UserId, admin: bool, ttl: Duration) -> String {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(ttl)
            .as_secs();
        let claims = Claims {
            user_id: user_id.to_string(),
            exp,
            role: admin.then(|| "admin".to_string()),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.encoding,
        )
        .expect("HS256 signing with an in-memory key cannot fail")
    }

    /// The HTTP rule of PROTOCOL.md §1.3 for an `Authorization` header value.
    pub fn from_authorization(&self, header: Option<&[u8]>) -> Result<Caller, Error> {
        let header = match header {
            Some(h) if !h.is_empty() => h,
            _ => {
                return Err(Error::unauthorized(
                    Code::MissingAuthorization,
                    "missing authorization header",
                ));
            }
        };
        let invalid_header =
            || Error::unauthorized(Code::InvalidAuthorization, "invalid authorization header");
        let text = std::str::from_utf8(header).map_err(|_| invalid_header())?;
        let (scheme, token) = text.split_once(' ').ok_or_else(invalid_header)?;
        if scheme != "Bearer" {
            return Err(invalid_header());
        }
        self.verify(token).map_err(|e| {
            tracing::debug!(error = %e, "token refused");
            Error::invalid_token()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new("secret", HashSet::new())
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn sign(alg: Algorithm, secret: &str, claims: serde_json::Value) -> String {
        jwt_hmac::install();
        jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let t = tokens();
        let id = UserId::new_v4();
        let caller = t
            .verify(&t.issue(id, false, Duration::from_secs(60)))
            .unwrap();
        assert_eq!(
            caller,
            Caller {
                user_id: id,
                is_admin: false
            }
        );
        let admin = t
            .verify(&t.issue(id, true, Duration::from_secs(60)))
            .unwrap();
        assert!(admin.is_admin);
    }

    #[test]
    fn configured_admins() {
        let id = Uuid::new_v4();
        let t = Tokens::new("secret", HashSet::from([id]));
        assert!(
            t.verify(&t.issue(id.into(), false, Duration::from_secs(60)))
                .unwrap()
                .is_admin
        );
    }

    #[test]
    fn refusals() {
        let t = tokens();
        let id = Uuid::new_v4().to_string();
        let exp = now() + 600;
        let cases = [
            (
                "bad signature",
                sign(
                    Algorithm::HS256,
                    "other",
                    serde_json::json!({"user_id": id, "exp": exp}),
                ),
            ),
            (
                "HS512",
                sign(
                    Algorithm::HS512,
                    "secret",
                    serde_json::json!({"user_id": id, "exp": exp}),
                ),
            ),
            (
                "expired",
                sign(
                    Algorithm::HS256,
                    "secret",
                    serde_json::json!({"user_id": id, "exp": now() - 3600}),
                ),
            ),
            (
                "no exp",
                sign(
                    Algorithm::HS256,
                    "secret",
                    serde_json::json!({"user_id": id}),
                ),
            ),
            (
                "nil user",
                sign(
                    Algorithm::HS256,
                    "secret",
                    serde_json::json!({"user_id": Uuid::nil(), "exp": exp}),
                ),
            ),
            (
                "bad user",
                sign(
                    Algorithm::HS256,
                    "secret",
                    serde_json::json!({"user_id": "abc", "exp": exp}),
                ),
            ),
            (
                "no user",
                sign(Algorithm::HS256, "secret", serde_json::json!({"exp": exp})),
            ),
            ("garbage", "not.a.token".to_string()),
            ("empty", String::new()),
        ];
        for (what, token) in cases {
            assert!(t.verify(&token).is_err(), "{what} must be refused");
        }
        // alg none: header {"alg":"none"}, no signature.
        let none = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            base64_url(&serde_json::json!({"user_id": id, "exp": exp}).to_string())
        );
        assert!(t.verify(&none).is_err());
    }

    fn base64_url(s: &str) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &v)| acc | (v as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn header_rules() {
        let t = tokens();
        let good = t.issue(UserId::new_v4(), false, Duration::from_secs(60));
        let msg = |h: Option<&str>| {
            t.from_authorization(h.map(str::as_bytes))
                .unwrap_err()
                .public_message()
                .into_owned()
        };
        assert_eq!(msg(None), "missing authorization header");
        assert_eq!(msg(Some("")), "missing authorization header");
        assert_eq!(msg(Some("Token abc")), "invalid authorization header");
        assert_eq!(msg(Some("bearer abc")), "invalid authorization header");
        assert_eq!(msg(Some("Bearer")), "invalid authorization header");
        assert_eq!(msg(Some("Bearer ")), "invalid token");
        assert_eq!(msg(Some(&format!("Bearer  {good}"))), "invalid token");
        assert!(
            t.from_authorization(Some(format!("Bearer {good}").as_bytes()))
                .is_ok()
        );
    }
}
