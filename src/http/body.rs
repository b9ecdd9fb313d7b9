//! Request bodies: read with a 1 MiB limit and decoded as JSON, with a 400 envelope that
//! says what is wrong when they are not.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use crate::error::{Code, Error, Result};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`] with 413.
pub async fn read(body: Incoming) -> Result<Bytes> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Error::client(
            hyper::StatusCode::PAYLOAD_TOO_LARGE,
            Code::BodyTooLarge,
            format!("request body exceeds {MAX_BODY_BYTES} bytes"),
        )),
        Err(e) => Err(Error::invalid_body(format!(
            "could not read request body: {e}"
        ))),
    }
}

/// Decodes `bytes` as JSON into `T`; an empty or malformed body is a 400 naming the problem.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid_body(
            "request body is empty; a JSON object is required",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid_body(format!("invalid request body: {e}")))
}

/// Reads and decodes a JSON body.
pub async fn json<T: DeserializeOwned>(body: Incoming) -> Result<T> {
    decode(&read(body).await?)
}
