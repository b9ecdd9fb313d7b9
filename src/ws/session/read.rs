//! The reader of one connection: reads frames (reassembling fragments, enforcing the size
//! limit and UTF-8), decodes them into requests and runs them; an invalid request gets an
//! `error` event and the connection stays usable.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, WebSocketError, WebSocketRead};
use tokio::io::ReadHalf;
use tokio::sync::mpsc;

use super::{Exit, Io, now_ms};
use crate::delivery::{Hub, Kill, Outbound};
use crate::domain::events;
use crate::domain::writer::Sent;
use crate::error::{Code, Error};
use crate::metrics as m;
use crate::model::UserId;
use crate::ws::protocol::{self, MAX_MESSAGE_BYTES, Request, close};

/// Reads frames until the client closes or the connection fails; returns why.
#[allow(clippy::too_many_arguments)]
pub(super) async fn read_loop(
    rd: WebSocketRead<ReadHalf<Io>>,
    hub: Arc<Hub>,
    user: UserId,
    conn: u64,
    tx: mpsc::Sender<Outbound>,
    kill: Arc<Kill>,
    last_seen: Arc<AtomicI64>,
    start: Instant,
) -> Exit {
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
                return Exit::FrameTooLarge;
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
                return Exit::ProtocolError;
            }
            Err(_) => return Exit::ConnectionLost,
        };
        last_seen.store(now_ms(start), Ordering::Relaxed);
        let (opcode, mut payload) = match frame.opcode {
            OpCode::Close => return Exit::ClientClosed,
            OpCode::Pong | OpCode::Ping => continue,
            OpCode::Continuation => {
                let Some((op, buf)) = fragments.as_mut() else {
                    kill.fire(close::PROTOCOL_ERROR, "unexpected continuation");
                    return Exit::ProtocolError;
                };
                if buf.len() + frame.payload.len() > MAX_MESSAGE_BYTES {
                    kill.fire(close::TOO_BIG, "message too big");
                    return Exit::MessageTooLarge;
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
                    return Exit::ProtocolError;
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
            return Exit::ProtocolError;
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
    user: UserId,
    conn: u64,
    tx: &mpsc::Sender<Outbound>,
    request: Request,
    received: Instant,
) {
    let services = hub.services();
    let result = match request {
        Request::Heartbeat => {
            services.heartbeat(user);
            Ok(())
        }
        Request::Message(draft) => {
            let limit = services.settings().max_messages_per_second;
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
