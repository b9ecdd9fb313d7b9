//! The reader of one connection: reads frames (reassembling fragments, enforcing the size
//! limit and UTF-8), decodes them into requests and runs them; an invalid request gets an
//! `error` event and the connection stays usable. Frames other than `message` spend the
//! connection's budget (`ws::budget`).

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
use crate::error::Error;
use crate::metrics as m;
use crate::model::UserId;
use crate::ws::budget::{FrameBudget, Verdict};
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
    opts: super::Options,
) -> Exit {
    let mut rd = rd;
    let mut budget = FrameBudget::new(opts.frame_rate, opts.frame_burst, Instant::now());
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
        let decoded = protocol::decode(&mut payload);
        // `message` frames have their own per-user rate; every other frame, invalid ones
        // too, spends the connection's budget.
        if !matches!(decoded, Ok(Request::Message(_))) {
            match budget.take(received) {
                Verdict::Run => {}
                Verdict::Refuse(wait) => {
                    metrics::counter!(m::WS_FRAMES_IN, "type" => "over_budget").increment(1);
                    let retry_ms = (wait.as_millis() as u64).max(1);
                    queue_error(
                        &tx,
                        Some(&kill),
                        &Error::too_many_frames(opts.frame_rate, retry_ms),
                        None,
                    );
                    continue;
                }
                Verdict::Close => {
                    metrics::counter!(m::WS_FRAMES_IN, "type" => "over_budget").increment(1);
                    kill.fire(close::POLICY_VIOLATION, "too many frames");
                    return Exit::OverBudget;
                }
            }
        }
        match decoded {
            Ok(request) => {
                metrics::counter!(m::WS_FRAMES_IN, "type" => request_label(&request)).increment(1);
                handle(&hub, user, conn, &tx, &kill, request, received, &opts).await;
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
        Request::Edit { .. } => "edit",
        Request::SetCurrentConversation(_) => "set_current_conversation",
        Request::Ack { .. } => "ack",
    }
}

fn send_error(tx: &mpsc::Sender<Outbound>, e: &Error) {
    queue_error(tx, None, e, None);
}

/// Queues the `error` frame answering a request (with `retry_after_ms` and the refused
/// message's `client_msg_id` where they apply). A connection whose queue is full cannot be
/// told: it is closed with 1013 like any client too slow to read, and resends what it has
/// no echo for when it reconnects.
fn queue_error(
    tx: &mpsc::Sender<Outbound>,
    kill: Option<&Kill>,
    e: &Error,
    client_msg_id: Option<&str>,
) {
    if !e.is_client() {
        tracing::error!(error = %e, "request failed");
    }
    let frame = Outbound::Text(events::request_error(e, client_msg_id), None);
    if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(frame) {
        metrics::counter!(m::QUEUE_FULL_CLOSES).increment(1);
        if let Some(kill) = kill {
            kill.fire(close::TRY_AGAIN_LATER, "outbound queue full");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    hub: &Arc<Hub>,
    user: UserId,
    conn: u64,
    tx: &mpsc::Sender<Outbound>,
    kill: &Arc<Kill>,
    request: Request,
    received: Instant,
    opts: &super::Options,
) {
    let services = hub.services();
    let result = match request {
        Request::Heartbeat => {
            // Coalesced: the periodic presence refresh covers the user in between.
            if hub.allow_heartbeat_refresh(user) {
                services.heartbeat(user);
            }
            Ok(())
        }
        Request::Message(draft) => {
            let limit = services.settings().max_messages_per_second;
            let cmid = draft.client_msg_id.clone();
            if !hub.allow_send(user, limit) {
                let e = Error::rate_limited(limit, 1000u64.div_ceil(limit.max(1)));
                queue_error(tx, Some(kill), &e, cmid.as_deref());
                return;
            }
            let reply_tx = tx.clone();
            let kill = kill.clone();
            let reply = Box::new(move |outcome: crate::error::Result<Sent>| match outcome {
                Ok(Sent::Stored(_)) => {}
                Ok(Sent::Duplicate(original)) => {
                    let _ =
                        reply_tx.try_send(Outbound::Text(events::message(&original, true), None));
                }
                Err(e) => queue_error(&reply_tx, Some(&kill), &e, cmid.as_deref()),
            });
            services.send(user, draft, received, reply).await;
            Ok(())
        }
        Request::Typing { conversation_id } => {
            let every = opts.typing_interval;
            services
                .typing(user, conversation_id, conn, || {
                    hub.allow_typing(user, conversation_id, every)
                })
                .await
        }
        Request::Read {
            conversation_id,
            message_id,
        } => services.read(user, conversation_id, message_id, conn).await,
        Request::Recall { message_id } => services.recall(user, message_id).await.map(|_| ()),
        Request::Edit {
            message_id,
            content,
        } => services
            .edit(user, message_id, content.as_deref())
            .await
            .map(|_| ()),
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
        queue_error(tx, Some(kill), &e, None);
    }
}
