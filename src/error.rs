//! The one error type of the service, and what each error looks like on the wire.
//!
//! A client error carries its HTTP status, a stable snake_case code ([`Code`], every one
//! listed in [`codes`]) and the original service's message text. Database, Redis and
//! internal errors are logged where they are handled and reach clients only as
//! `500 internal error`.

pub mod codes;

use std::borrow::Cow;

use hyper::StatusCode;

pub use codes::Code;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure a request or a frame can end in.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller did something wrong; shown to them as is.
    #[error("{message}")]
    Client {
        /// HTTP status for HTTP callers.
        status: StatusCode,
        /// Stable machine-readable code.
        code: Code,
        /// Human text (the original service's wording where it had one).
        message: Cow<'static, str>,
    },
    /// Refused for now, to be tried again after `retry_after_ms` (over the send rate, or the
    /// node is saturated). Shown as is, with the delay (WebSocket `data.retry_after_ms`,
    /// HTTP `Retry-After`).
    #[error("{message}")]
    Busy {
        /// 429 for a caller over its own rate, 503 for a saturated node.
        status: StatusCode,
        /// `rate_limited` or `overloaded`.
        code: Code,
        /// Human text.
        message: Cow<'static, str>,
        /// When trying again makes sense.
        retry_after_ms: u64,
    },
    /// PostgreSQL failed.
    #[error("database: {}", db_detail(.0))]
    Db(#[from] tokio_postgres::Error),
    /// No PostgreSQL connection could be had.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Anything else that is our fault.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// A client error with its status, code and message.
    pub fn client(status: StatusCode, code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Error::Client {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with the given code and message.
    pub fn bad_request(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, message)
    }

    /// 403 with the given code and message.
    pub fn forbidden(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 with the given code and message.
    pub fn not_found(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 with the given code and message.
    pub fn conflict(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::CONFLICT, code, message)
    }

    /// 401 with the given code and message.
    pub fn unauthorized(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Self::client(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 400 `invalid_body` with the given message.
    pub fn invalid_body(message: impl Into<Cow<'static, str>>) -> Self {
        Self::bad_request(Code::InvalidBody, message)
    }

    /// 403 `not_member`: `user is not a member of this conversation`.
    pub fn not_member() -> Self {
        Self::forbidden(Code::NotMember, "user is not a member of this conversation")
    }

    /// 403 `not_member` as the caller is told it: `you are not a member of this
    /// conversation`.
    pub fn caller_not_member() -> Self {
        Self::forbidden(Code::NotMember, "you are not a member of this conversation")
    }

    /// 401 `invalid_token`.
    pub fn invalid_token() -> Self {
        Self::unauthorized(Code::InvalidToken, "invalid token")
    }

    /// 404 `route_not_found`.
    pub fn route_not_found() -> Self {
        Self::not_found(Code::RouteNotFound, "route not found")
    }

    /// 404 `template_not_found`.
    pub fn template_not_found() -> Self {
        Self::not_found(Code::TemplateNotFound, "template not found")
    }

    /// 503 `overloaded`: the node is saturated; try again after `retry_after_ms`.
    pub fn overloaded(retry_after_ms: u64) -> Self {
        Error::Busy {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: Code::Overloaded,
            message: Cow::Borrowed("server busy: message not accepted, retry later"),
            retry_after_ms,
        }
    }

    /// 429 `rate_limited`: over `per_second` messages a second; try again after
    /// `retry_after_ms`.
    pub fn rate_limited(per_second: u64, retry_after_ms: u64) -> Self {
        Error::Busy {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: Code::RateLimited,
            message: Cow::Owned(format!(
                "rate limit exceeded: at most {per_second} messages per second"
            )),
            retry_after_ms,
        }
    }

    /// 429 `rate_limited` for HTTP: over `per_second` requests a second.
    pub fn requests_rate_limited(per_second: u32, retry_after_ms: u64) -> Self {
        Error::Busy {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: Code::RateLimited,
            message: Cow::Owned(format!(
                "rate limit exceeded: at most {per_second} requests per second"
            )),
            retry_after_ms,
        }
    }

    /// 429 `too_many_frames`: a WebSocket connection over its budget of `per_second`
    /// non-`message` frames; the frame was ignored.
    pub fn too_many_frames(per_second: u32, retry_after_ms: u64) -> Self {
        Error::Busy {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: Code::TooManyFrames,
            message: Cow::Owned(format!(
                "too many frames: at most {per_second} a second besides messages; frame ignored"
            )),
            retry_after_ms,
        }
    }

    /// How long to wait before trying again, for the errors that say so.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Error::Busy { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        }
    }

    /// 500 for a failure we log but do not explain to the client.
    pub fn internal(what: impl Into<String>) -> Self {
        Error::Internal(what.into())
    }

    /// HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Client { status, .. } | Error::Busy { status, .. } => *status,
            Error::Pool(_) | Error::Redis(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Db(e) if is_unavailable(e) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code (`error` field of the envelope, `code` of WebSocket errors).
    pub fn stable_code(&self) -> Code {
        match self {
            Error::Client { code, .. } | Error::Busy { code, .. } => *code,
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            _ => Code::InternalError,
        }
    }

    /// The stable code as it appears on the wire.
    pub fn code(&self) -> &'static str {
        self.stable_code().as_str()
    }

    /// The text a client may see. Internal details never leave the process.
    pub fn public_message(&self) -> Cow<'static, str> {
        match self {
            Error::Client { message, .. } | Error::Busy { message, .. } => message.clone(),
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => {
                Cow::Borrowed("service temporarily unavailable, please retry")
            }
            _ => Cow::Borrowed("internal error"),
        }
    }

    /// True for errors that are the caller's doing (not worth a warning in the log).
    pub fn is_client(&self) -> bool {
        matches!(self, Error::Client { .. } | Error::Busy { .. })
    }
}

/// The server's code and message when PostgreSQL answered with an error.
fn db_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} ({}): {}",
            db.message(),
            db.code().code(),
            db.detail().unwrap_or("")
        ),
        None => e.to_string(),
    }
}

/// True for PostgreSQL errors worth retrying as they are: deadlocks and serialization
/// failures.
pub fn is_retryable(e: &Error) -> bool {
    matches!(e, Error::Db(d) if d.code().is_some_and(|c| {
        *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
    }))
}

/// A PostgreSQL error that means "cannot reach the database" rather than a bad query.
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    e.is_closed() || e.as_db_error().is_none() && e.code().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_are_hidden() {
        let e = Error::internal("secret table xyz broke");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.public_message(), "internal error");
        assert_eq!(e.code(), "internal_error");
    }

    #[test]
    fn client_errors_keep_their_text() {
        let e = Error::forbidden(Code::NotMember, "user is not a member of this conversation");
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(e.code(), "not_member");
        assert_eq!(
            e.public_message(),
            "user is not a member of this conversation"
        );
        assert!(e.is_client());
    }
}
