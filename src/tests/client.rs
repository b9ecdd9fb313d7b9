//! Minimal HTTP client for the tests (hyper's HTTP/1 client over one TCP connection).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A raw answer: status, headers and body bytes.
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends one request and reads the whole answer.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> std::io::Result<Answer> {
    let uri: hyper::Uri = url.parse().expect("valid URL");
    let authority = uri.authority().expect("URL with host").to_string();
    let stream = tokio::net::TcpStream::connect(&authority).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("host", authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("valid request");
    let resp = sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn auth_header(token: Option<&str>) -> Option<String> {
    token.map(|t| format!("Bearer {t}"))
}

/// GET with an optional bearer token; returns status and JSON body.
pub async fn get(url: &str, token: Option<&str>) -> std::io::Result<(u16, Value)> {
    let auth = auth_header(token);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let a = send("GET", url, &headers, None).await?;
    Ok((a.status, a.json()))
}

/// POST a JSON value with an optional bearer token; returns status and JSON body.
pub async fn post(url: &str, token: Option<&str>, body: &Value) -> std::io::Result<(u16, Value)> {
    let auth = auth_header(token);
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let a = send(
        "POST",
        url,
        &headers,
        Some(serde_json::to_vec(body).unwrap()),
    )
    .await?;
    Ok((a.status, a.json()))
}
