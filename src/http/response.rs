//! The JSON envelope of every HTTP answer: `{code, message, data}` on success and
//! `{code, message, error}` on failure, where `code` is the HTTP status of the error
//! (DECISIONS.md "error envelope"); and the body type, whole or streamed in chunks.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Frame, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::{Code, Error};

/// The body of every response: whole (envelopes, probes, the web client), or chunks taken
/// from a bounded channel as the connection can send them (an export), so a long answer
/// is never held in memory at once and its producer waits while the client reads slowly.
/// A chunk that is an error ends the response abruptly (the connection is closed without
/// the final chunk), so a client can tell a cut-short stream from a complete one.
#[derive(Debug)]
pub struct Body(Inner);

#[derive(Debug)]
enum Inner {
    Whole(Full<Bytes>),
    Chunks(mpsc::Receiver<Result<Bytes, Error>>),
}

impl Default for Body {
    fn default() -> Self {
        Body(Inner::Whole(Full::default()))
    }
}

impl From<Full<Bytes>> for Body {
    fn from(full: Full<Bytes>) -> Self {
        Body(Inner::Whole(full))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match &mut self.get_mut().0 {
            Inner::Whole(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Inner::Chunks(chunks) => chunks
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Whole(full) => full.is_end_stream(),
            Inner::Chunks(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Whole(full) => full.size_hint(),
            Inner::Chunks(_) => SizeHint::default(),
        }
    }
}

/// A finished response.
pub type Resp = Response<Body>;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    code: u16,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// A JSON response with `status` and a serialized body.
pub fn json(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut resp = Response::new(Body::from(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn envelope<T: Serialize>(status: StatusCode, env: &Envelope<'_, T>) -> Resp {
    match serde_json::to_vec(env) {
        Ok(body) => json(status, body),
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            let body = format!(
                r#"{{"code":500,"message":"internal error","error":"{}"}}"#,
                Code::InternalError.as_str()
            );
            json(StatusCode::INTERNAL_SERVER_ERROR, body.into_bytes())
        }
    }
}

/// 200 `{"code":0,"message":"success","data":…}`.
pub fn ok<T: Serialize>(data: T) -> Resp {
    envelope(
        StatusCode::OK,
        &Envelope {
            code: 0,
            message: "success",
            data: Some(data),
            error: None,
            request_id: None,
        },
    )
}

/// 200 `{"code":0,"message":<text>}` for routes that answer with a message only.
pub fn ok_message(message: &str) -> Resp {
    envelope::<()>(
        StatusCode::OK,
        &Envelope {
            code: 0,
            message,
            data: None,
            error: None,
            request_id: None,
        },
    )
}

/// The error envelope. Internal errors show only a request id to quote in a bug report.
pub fn error(err: &Error, request_id: &str) -> Resp {
    let status = err.status();
    let message = err.public_message();
    let mut resp = envelope::<()>(
        status,
        &Envelope {
            code: status.as_u16(),
            message: &message,
            data: None,
            error: Some(err.code()),
            request_id: (!err.is_client()).then_some(request_id),
        },
    );
    if let Some(ms) = err.retry_after_ms() {
        // Whole seconds, rounded up (RFC 9110 allows no fraction).
        resp.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            HeaderValue::from(ms.div_ceil(1000).max(1)),
        );
    }
    resp
}

/// A plain-text response (Prometheus exposition).
pub fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Body::from(Full::new(body.into())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A 200 whose body is the chunks of `chunks`, sent as they come (chunked transfer
/// encoding), with `content_type`.
pub fn stream(content_type: &'static str, chunks: mpsc::Receiver<Result<Bytes, Error>>) -> Resp {
    let mut resp = Response::new(Body(Inner::Chunks(chunks)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
