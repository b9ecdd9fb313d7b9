//! A WebSocket test client: frames arrive in a queue read by the test; the reader can be
//! paused to act as a client that stops reading.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketWrite};
use http_body_util::Empty;
use hyper::Request;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::WriteHalf;
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;

struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::spawn(fut);
    }
}

/// What the reader saw.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// A text frame, parsed.
    Event(Value),
    /// The server's close frame: code and reason.
    Closed(u16, String),
    /// The connection ended without a close frame.
    Gone,
}

/// A connected test client.
pub struct Ws {
    writer: Arc<Mutex<WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>>>,
    rx: mpsc::UnboundedReceiver<Seen>,
    paused: Arc<AtomicBool>,
    reader: tokio::task::JoinHandle<()>,
    /// The user this client is.
    pub user: Uuid,
}

impl Drop for Ws {
    /// Dropping a client drops its connection (without a close frame).
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Options for [`Ws::connect_with`].
#[derive(Default, Clone)]
pub struct ConnectOptions {
    /// `?ack=1`.
    pub ack: bool,
    /// An `Origin` header.
    pub origin: Option<String>,
    /// A small socket receive buffer (for slow-reader tests).
    pub small_buffer: bool,
}

impl Ws {
    /// Connects to `node` (`127.0.0.1:port`) as `user` with `token`.
    pub async fn connect(
        addr: std::net::SocketAddr,
        token: &str,
        user: Uuid,
    ) -> Result<Ws, WebSocketError> {
        Self::connect_with(addr, token, user, ConnectOptions::default()).await
    }

    /// Connects with options.
    pub async fn connect_with(
        addr: std::net::SocketAddr,
        token: &str,
        user: Uuid,
        opts: ConnectOptions,
    ) -> Result<Ws, WebSocketError> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if opts.small_buffer {
            socket.set_recv_buffer_size(4096)?;
        }
        let stream = socket.connect(addr).await?;
        let ack = if opts.ack { "&ack=1" } else { "" };
        let mut req = Request::builder()
            .method("GET")
            .uri(format!("/ws?token={token}{ack}"))
            .header("Host", addr.to_string())
            .header("Upgrade", "websocket")
            .header("Connection", "upgrade")
            .header(
                "Sec-WebSocket-Key",
                fastwebsockets::handshake::generate_key(),
            )
            .header("Sec-WebSocket-Version", "13");
        if let Some(o) = &opts.origin {
            req = req.header("Origin", o);
        }
        let req = req.body(Empty::<Bytes>::new()).expect("request");
        let (ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, req, stream).await?;
        let (mut rd, wr) = ws.split(tokio::io::split);
        let writer = Arc::new(Mutex::new(wr));
        let (tx, rx) = mpsc::unbounded_channel();
        let paused = Arc::new(AtomicBool::new(false));
        let w = writer.clone();
        let p = paused.clone();
        let reader = tokio::spawn(async move {
            loop {
                while p.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let w2 = w.clone();
                let p2 = p.clone();
                let frame = rd
                    .read_frame(&mut move |f: Frame<'_>| {
                        let w2 = w2.clone();
                        let p2 = p2.clone();
                        let owned =
                            Frame::new(f.fin, f.opcode, None, Payload::Owned(f.payload.to_vec()));
                        async move {
                            // A paused client answers no ping either (and reads nothing more).
                            while p2.load(Ordering::Relaxed) {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            // The peer may be gone already; keep reading what it sent.
                            let _ = w2.lock().await.write_frame(owned).await;
                            Ok::<(), WebSocketError>(())
                        }
                    })
                    .await;
                match frame {
                    Ok(f) if f.opcode == OpCode::Text => {
                        let v: Value = serde_json::from_slice(&f.payload).unwrap_or(Value::Null);
                        if tx.send(Seen::Event(v)).is_err() {
                            return;
                        }
                    }
                    Ok(f) if f.opcode == OpCode::Close => {
                        let code = if f.payload.len() >= 2 {
                            u16::from_be_bytes([f.payload[0], f.payload[1]])
                        } else {
                            1005
                        };
                        let reason =
                            String::from_utf8_lossy(f.payload.get(2..).unwrap_or(&[])).to_string();
                        let _ = tx.send(Seen::Closed(code, reason));
                        return;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let _ = tx.send(Seen::Gone);
                        return;
                    }
                }
            }
        });
        Ok(Ws {
            writer,
            rx,
            paused,
            reader,
            user,
        })
    }

    /// Sends a JSON value as a text frame.
    pub async fn send(&self, v: Value) {
        self.send_raw(v.to_string().as_bytes()).await;
    }

    /// Sends raw bytes as a text frame.
    pub async fn send_raw(&self, bytes: &[u8]) {
        let _ = self
            .writer
            .lock()
            .await
            .write_frame(Frame::text(Payload::Owned(bytes.to_vec())))
            .await;
    }

    /// Sends a frame as given.
    pub async fn send_frame(&self, frame: Frame<'_>) -> Result<(), WebSocketError> {
        self.writer.lock().await.write_frame(frame).await
    }

    /// Sends a `message` of text to a conversation (or to a receiver when `conversation` is None).
    pub async fn text_to(&self, conversation: Option<Uuid>, receiver: Option<Uuid>, text: &str) {
        self.send(json!({"type": "message", "data": {
            "conversation_id": conversation, "receiver_id": receiver,
            "message_type": "text", "content": text,
        }}))
        .await;
    }

    /// The next thing seen, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Seen> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next event of type `ty`, skipping others; panics after `timeout`.
    pub async fn expect(&mut self, ty: &str) -> Value {
        self.expect_within(ty, Duration::from_secs(10)).await
    }

    /// Like [`Ws::expect`] with a timeout.
    pub async fn expect_within(&mut self, ty: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Seen::Event(v)) if v["type"] == ty => return v["data"].clone(),
                Some(Seen::Event(_)) => continue,
                other => panic!("user {} waited for {ty}, got {other:?}", self.user),
            }
        }
    }

    /// Every event received within `window`.
    pub async fn drain(&mut self, window: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Seen::Event(v)) => out.push(v),
                _ => return out,
            }
        }
    }

    /// Asserts no event of type `ty` arrives within `window` (others are skipped).
    pub async fn expect_no(&mut self, ty: &str, window: Duration) {
        for v in self.drain(window).await {
            assert_ne!(v["type"], ty, "unexpected {ty}: {v}");
        }
    }

    /// Waits for the server's close frame; returns its code.
    pub async fn expect_closed(&mut self, timeout: Duration) -> u16 {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Seen::Event(_)) => continue,
                Some(Seen::Closed(code, _)) => return code,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Stops (or resumes) reading from the socket.
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// Closes properly: sends a close frame and waits for the server's answer, which comes
    /// after the server stored this user's delivery cursors.
    pub async fn close(mut self) {
        self.close_in_place().await;
    }

    async fn close_in_place(&mut self) {
        let _ = self.send_frame(Frame::close(1000, b"")).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(s) = self.rx.recv().await {
                if !matches!(s, Seen::Event(_)) {
                    return;
                }
            }
        })
        .await;
    }
}
