//! One WebSocket connection: a reader task and a writer (the connection's own task) with a
//! bounded outbound queue.
//!
//! The reader decodes frames and runs requests; the writer writes queued frames, pings
//! every 20 s, closes a connection silent for 60 s (pongs and `heartbeat` frames both
//! count), and closes with the code asked through [`Kill`] (1013 for a full queue, 1012 on
//! drain, 1009 for an oversize message). When the client closes, the user's delivery
//! cursors are stored *before* the close is answered, so a client that waits for the close
//! handshake and reconnects elsewhere gets no message twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, WebSocket, WebSocketError, WebSocketRead};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::ReadHalf;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::frames::{self, FrameWriter};
use super::hub::{Device, Hub, Kill, Outbound};
use super::protocol::{self, MAX_MESSAGE_BYTES, Request, close};
use crate::cluster::presence::Added;
use crate::domain::events;
use crate::domain::writer::Sent;
use crate::error::{Code, Error};
use crate::metrics as m;

type Io = TokioIo<Upgraded>;

/// How a connection is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Outbound queue length.
    pub queue: usize,
    /// Ping interval.
    pub ping_every: Duration,
    /// Close after this long without a frame from the client.
    pub idle_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue: 1024,
            ping_every: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

fn now_ms(start: Instant) -> i64 {
    start.elapsed().as_millis() as i64
}

/// A connection registered before its handshake completes.
pub struct Prepared {
    user: Uuid,
    conn_id: u64,
    ack_mode: bool,
    tx: mpsc::Sender<Outbound>,
    rx: mpsc::Receiver<Outbound>,
    kill: Arc<Kill>,
    /// The 19th device: gets the error and the close, nothing else.
    refused: bool,
}

/// Registers a new connection of `user` before the `101` answer: the cluster-wide device
/// limit, then the hub (channel subscribed, pending messages queued). Returns once the
/// device is live, so what is committed after the client sees `101` arrives live.
pub async fn prepare(hub: &Arc<Hub>, user: Uuid, ack_mode: bool, opts: Options) -> Prepared {
    let services = hub.services();
    let conn_id = hub.next_conn_id();
    let (tx, rx) = mpsc::channel::<Outbound>(opts.queue);
    let kill = Arc::new(Kill::default());
    let mut prepared = Prepared {
        user,
        conn_id,
        ack_mode,
        tx: tx.clone(),
        rx,
        kill: kill.clone(),
        refused: false,
    };
    let online_enabled = services.settings.get().online_status;
    let first_anywhere = match services
        .presence
        .add_device(user, conn_id, online_enabled)
        .await
    {
        Ok(Added::TooMany) => {
            prepared.refused = true;
            return prepared;
        }
        Ok(Added::Yes { first }) => first,
        Err(e) => {
            // Without Redis the device limit cannot be checked; serve the client anyway.
            tracing::warn!(%user, error = %e, "presence registration failed");
            false
        }
    };
    metrics::counter!(m::WS_CONNECTIONS_OPENED).increment(1);
    if first_anywhere {
        let s = services.clone();
        tokio::spawn(async move {
            if let Err(e) = s.presence_changed(user, true).await {
                tracing::warn!(%user, error = %e, "online announcement failed");
            }
        });
    }
    let live = hub.add_device(
        user,
        Device {
            id: conn_id,
            tx,
            ack_mode,
            viewing: None,
            dead: false,
            kill,
        },
    );
    if tokio::time::timeout(Duration::from_secs(5), live)
        .await
        .is_err()
    {
        tracing::warn!(%user, "device not live after 5 s; completing the handshake anyway");
    }
    prepared
}

/// Undoes [`prepare`] when the handshake never completed.
pub async fn abandon(hub: &Arc<Hub>, prepared: Prepared) {
    if prepared.refused {
        return;
    }
    hub.remove_device(prepared.user, prepared.conn_id, false)
        .await;
    let _ = hub
        .services()
        .presence
        .remove_device(prepared.user, prepared.conn_id)
        .await;
}

/// Runs a prepared connection to the end.
pub async fn run(ws: WebSocket<Io>, hub: Arc<Hub>, prepared: Prepared, opts: Options) {
    hub.session_started();
    serve(ws, &hub, prepared, opts).await;
    hub.session_ended();
}

async fn serve(ws: WebSocket<Io>, hub: &Arc<Hub>, prepared: Prepared, opts: Options) {
    let services = hub.services().clone();
    // Reading goes through fastwebsockets; writing through our batching frame writer.
    let (read_half, write_half) = tokio::io::split(ws.into_inner());
    let (rd, _) = fastwebsockets::after_handshake_split(
        read_half,
        tokio::io::sink(),
        fastwebsockets::Role::Server,
    );
    let mut wr = FrameWriter::new(write_half);
    let Prepared {
        user,
        conn_id,
        ack_mode,
        tx,
        mut rx,
        kill,
        refused,
    } = prepared;
    if refused {
        let text = "Maximum 18 devices allowed";
        wr.push(frames::TEXT, &events::error(Code::TooManyDevices, text));
        wr.push_close(close::NORMAL, text);
        let _ = wr.flush().await;
        metrics::counter!(m::WS_CONNECTIONS_CLOSED, "reason" => "too_many_devices").increment(1);
        return;
    }

    let start = Instant::now();
    let last_seen = Arc::new(AtomicI64::new(0));
    let mut reader = tokio::spawn(read_loop(
        rd,
        hub.clone(),
        user,
        conn_id,
        tx.clone(),
        kill.clone(),
        last_seen.clone(),
        start,
    ));
    drop(tx);

    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + opts.ping_every,
        opts.ping_every,
    );
    let mut reader_done = false;
    let mut tags: Vec<(Uuid, i64, i64)> = Vec::new();
    let reason = loop {
        tokio::select! {
            biased;
            _ = kill.wait() => break "closed by server",
            r = &mut reader, if !reader_done => {
                reader_done = true;
                // The reader has asked for its close code already, or the client closed.
                kill.fire(close::NORMAL, "");
                break r.unwrap_or("reader failed");
            }
            item = rx.recv() => {
                let Some(item) = item else { break "queue closed" };
                // Everything already queued goes out in one write.
                let mut frames = 0u64;
                push_item(&mut wr, &mut tags, item);
                frames += 1;
                while wr.pending() < MAX_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(item) => {
                            push_item(&mut wr, &mut tags, item);
                            frames += 1;
                        }
                        Err(_) => break,
                    }
                }
                if wr.flush().await.is_err() {
                    break "write failed";
                }
                metrics::counter!(m::WS_FRAMES_OUT).increment(frames);
                let now = crate::model::Timestamp::now().micros();
                for (conv, seq, created_micros) in tags.drain(..) {
                    if !ack_mode {
                        hub.written(user, conv, seq);
                    }
                    metrics::histogram!(m::DELIVERY_LATENCY).record((now - created_micros).max(0) as f64 / 1e6);
                }
            }
            _ = ping.tick() => {
                let silent = now_ms(start) - last_seen.load(Ordering::Relaxed);
                if silent > opts.idle_timeout.as_millis() as i64 {
                    kill.fire(close::GOING_AWAY, "idle timeout");
                    break "idle timeout";
                }
                wr.push(frames::PING, b"");
                if wr.flush().await.is_err() {
                    break "write failed";
                }
            }
        }
    };
    if !reader_done {
        reader.abort();
    }
    let (code, text) = kill.requested().unwrap_or((close::NORMAL, ""));
    // A close handshake (the client's, or ours for logout and drain) means what was written
    // got there; a broken connection confirms only what was written a while ago.
    let clean = reason == "client closed"
        || (reason == "closed by server" && matches!(code, close::NORMAL | close::RESTART));
    // Store cursors (and unsubscribe) before answering the close.
    hub.remove_device(user, conn_id, clean).await;
    if reason != "write failed" {
        wr.push_close(code, text);
        let _ = wr.flush().await;
    }
    metrics::counter!(m::WS_CONNECTIONS_CLOSED, "reason" => close_label(code)).increment(1);
    tracing::debug!(%user, conn = conn_id, code, reason, "connection closed");
    match services.presence.remove_device(user, conn_id).await {
        Ok(true) => {
            if let Err(e) = services.presence_changed(user, false).await {
                tracing::warn!(%user, error = %e, "offline announcement failed");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(%user, error = %e, "presence unregistration failed"),
    }
}

fn close_label(code: u16) -> &'static str {
    match code {
        close::NORMAL => "normal",
        close::GOING_AWAY => "idle",
        close::PROTOCOL_ERROR => "protocol_error",
        close::TOO_BIG => "too_big",
        close::RESTART => "restart",
        close::TRY_AGAIN_LATER => "queue_full",
        _ => "other",
    }
}

/// Largest batch written at once.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Encodes one queued item; remembers message tags to advance cursors after the write.
fn push_item<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut FrameWriter<W>,
    tags: &mut Vec<(Uuid, i64, i64)>,
    item: Outbound,
) {
    match item {
        Outbound::Text(bytes, tag) => {
            wr.push(frames::TEXT, &bytes);
            if let Some(tag) = tag {
                tags.push(tag);
            }
        }
        Outbound::Pong(payload) => wr.push(frames::PONG, &payload),
    }
}

/// Reads frames until the client closes or the connection fails; returns why.
#[allow(clippy::too_many_arguments)]
async fn read_loop(
    rd: WebSocketRead<ReadHalf<Io>>,
    hub: Arc<Hub>,
    user: Uuid,
    conn: u64,
    tx: mpsc::Sender<Outbound>,
    kill: Arc<Kill>,
    last_seen: Arc<AtomicI64>,
    start: Instant,
) -> &'static str {
    let mut rd = rd;
    rd.set_max_message_size(MAX_MESSAGE_BYTES + 1);
    let mut fragments: Option<(OpCode, Vec<u8>)> = None;
    loop {
        let pong_tx = tx.clone();
        let mut obligated = move |frame: Frame<'_>| {
            // Pongs go to the writer; the close reply is sent after cursors are stored.
            if frame.opcode == OpCode::Pong {
                let _ = pong_tx.try_send(Outbound::Pong(Bytes::copy_from_slice(&frame.payload)));
            }
            std::future::ready(Ok::<(), std::convert::Infallible>(()))
        };
        let frame = match rd.read_frame(&mut obligated).await {
            Ok(f) => f,
            Err(WebSocketError::FrameTooLarge) => {
                kill.fire(close::TOO_BIG, "message too big");
                return "frame too large";
            }
            Err(
                WebSocketError::InvalidUTF8
                | WebSocketError::ReservedBitsNotZero
                | WebSocketError::ControlFrameFragmented
                | WebSocketError::PingFrameTooLarge
                | WebSocketError::InvalidFragment
                | WebSocketError::InvalidContinuationFrame
                | WebSocketError::InvalidCloseFrame
                | WebSocketError::InvalidCloseCode,
            ) => {
                kill.fire(close::PROTOCOL_ERROR, "protocol error");
                return "protocol error";
            }
            Err(_) => return "connection lost",
        };
        last_seen.store(now_ms(start), Ordering::Relaxed);
        let (opcode, mut payload) = match frame.opcode {
            OpCode::Close => return "client closed",
            OpCode::Pong | OpCode::Ping => continue,
            OpCode::Continuation => {
                let Some((op, buf)) = fragments.as_mut() else {
                    kill.fire(close::PROTOCOL_ERROR, "unexpected continuation");
                    return "protocol error";
                };
                if buf.len() + frame.payload.len() > MAX_MESSAGE_BYTES {
                    kill.fire(close::TOO_BIG, "message too big");
                    return "message too large";
                }
                buf.extend_from_slice(&frame.payload);
                if !frame.fin {
                    continue;
                }
                let op = *op;
                let (_, buf) = fragments.take().expect("present");
                (op, buf)
            }
            op @ (OpCode::Text | OpCode::Binary) => {
                if fragments.is_some() {
                    kill.fire(close::PROTOCOL_ERROR, "interleaved message");
                    return "protocol error";
                }
                if !frame.fin {
                    fragments = Some((op, frame.payload.to_vec()));
                    continue;
                }
                (op, frame.payload.to_vec())
            }
        };
        if opcode == OpCode::Text && std::str::from_utf8(&payload).is_err() {
            kill.fire(close::PROTOCOL_ERROR, "invalid UTF-8");
            return "protocol error";
        }
        let received = Instant::now();
        match protocol::decode(&mut payload) {
            Ok(request) => {
                metrics::counter!(m::WS_FRAMES_IN, "type" => request_label(&request)).increment(1);
                handle(&hub, user, conn, &tx, request, received).await;
            }
            Err(e) => {
                metrics::counter!(m::WS_FRAMES_IN, "type" => "invalid").increment(1);
                send_error(&tx, &e);
            }
        }
    }
}

fn request_label(r: &Request) -> &'static str {
    match r {
        Request::Heartbeat => "heartbeat",
        Request::Message(_) => "message",
        Request::Typing { .. } => "typing",
        Request::Read { .. } => "read",
        Request::Recall { .. } => "recall",
        Request::SetCurrentConversation(_) => "set_current_conversation",
        Request::Ack { .. } => "ack",
    }
}

fn send_error(tx: &mpsc::Sender<Outbound>, e: &Error) {
    if !e.is_client() {
        tracing::error!(error = %e, "request failed");
    }
    let _ = tx.try_send(Outbound::Text(
        events::error(e.stable_code(), &e.public_message()),
        None,
    ));
}

async fn handle(
    hub: &Arc<Hub>,
    user: Uuid,
    conn: u64,
    tx: &mpsc::Sender<Outbound>,
    request: Request,
    received: Instant,
) {
    let services = hub.services();
    let result = match request {
        Request::Heartbeat => {
            if services.settings.get().online_status {
                let presence = services.presence.clone();
                tokio::spawn(async move {
                    let _ = presence.refresh_online(&[user]).await;
                });
            }
            Ok(())
        }
        Request::Message(draft) => {
            let limit = services.settings.get().max_messages_per_second;
            if !hub.allow_send(user, limit) {
                Err(Error::client(
                    hyper::StatusCode::TOO_MANY_REQUESTS,
                    Code::RateLimited,
                    format!("rate limit exceeded: at most {limit} messages per second"),
                ))
            } else {
                let reply_tx = tx.clone();
                let reply = Box::new(move |outcome: crate::error::Result<Sent>| match outcome {
                    Ok(Sent::Stored(_)) => {}
                    Ok(Sent::Duplicate(original)) => {
                        let _ = reply_tx
                            .try_send(Outbound::Text(events::message(&original, true), None));
                    }
                    Err(e) => send_error(&reply_tx, &e),
                });
                services.send(user, draft, received, reply).await;
                Ok(())
            }
        }
        Request::Typing { conversation_id } => services.typing(user, conversation_id, conn).await,
        Request::Read {
            conversation_id,
            message_id,
        } => services.read(user, conversation_id, message_id, conn).await,
        Request::Recall { message_id } => services.recall(user, message_id).await.map(|_| ()),
        Request::SetCurrentConversation(conversation) => {
            hub.set_viewing(user, conn, conversation);
            Ok(())
        }
        Request::Ack {
            conversation_id,
            seq,
        } => {
            hub.ack(user, conversation_id, seq);
            Ok(())
        }
    };
    if let Err(e) = result {
        send_error(tx, &e);
    }
}
