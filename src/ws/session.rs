//! One WebSocket connection: a reader task and a writer (the connection's own task) with a
//! bounded outbound queue.
//!
//! The reader (`read`) decodes frames and runs requests; the writer writes queued frames, pings
//! every 20 s, closes a connection silent for 60 s (pongs and `heartbeat` frames both
//! count), and closes with the code asked through [`Kill`] (1013 for a full queue, 1012 on
//! drain, 1009 for an oversize message). When the client closes, the user's delivery
//! cursors are stored *before* the close is answered, so a client that waits for the close
//! handshake and reconnects elsewhere gets no message twice.

mod read;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use fastwebsockets::WebSocket;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::frames::{self, FrameWriter};
use super::protocol::close;
use crate::delivery::{Device, Hub, Kill, MessageTag, Outbound};
use crate::domain::events;
use crate::domain::presence::Registered;
use crate::error::Code;
use crate::metrics as m;
use crate::model::UserId;

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
    /// Frames other than `message` a second (`WS_FRAME_RATE`; 0 = no budget).
    pub frame_rate: u32,
    /// Such frames at once (`WS_FRAME_BURST`).
    pub frame_burst: u32,
    /// `typing` publishes at most once per this per (user, conversation)
    /// (`WS_TYPING_INTERVAL_MS`; zero = every one).
    pub typing_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            queue: 1024,
            ping_every: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            frame_rate: 50,
            frame_burst: 200,
            typing_interval: Duration::from_secs(2),
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The client sent a close frame.
    ClientClosed,
    /// The server asked for the close through [`Kill`] (logout, drain, a full queue, …).
    ClosedByServer,
    /// The client was silent for longer than the idle timeout.
    IdleTimeout,
    /// Writing to the socket failed.
    WriteFailed,
    /// Reading from the socket failed (reset, or the end without a close frame).
    ConnectionLost,
    /// A frame over the size limit.
    FrameTooLarge,
    /// A fragmented message over the size limit.
    MessageTooLarge,
    /// An invalid frame.
    ProtocolError,
    /// The outbound queue closed.
    QueueClosed,
    /// The reader task failed.
    ReaderFailed,
    /// The client kept sending frames over its budget.
    OverBudget,
}

impl Exit {
    /// True when the connection ended with a close handshake, so what was written got
    /// there: the client's close, or ours (closing with `code`) for logout and drain. A
    /// broken connection confirms only what was written a while ago.
    fn clean(self, code: u16) -> bool {
        match self {
            Exit::ClientClosed => true,
            Exit::ClosedByServer => matches!(code, close::NORMAL | close::RESTART),
            _ => false,
        }
    }

    /// For logs.
    fn label(self) -> &'static str {
        match self {
            Exit::ClientClosed => "client closed",
            Exit::ClosedByServer => "closed by server",
            Exit::IdleTimeout => "idle timeout",
            Exit::WriteFailed => "write failed",
            Exit::ConnectionLost => "connection lost",
            Exit::FrameTooLarge => "frame too large",
            Exit::MessageTooLarge => "message too large",
            Exit::ProtocolError => "protocol error",
            Exit::QueueClosed => "queue closed",
            Exit::ReaderFailed => "reader failed",
            Exit::OverBudget => "over the frame budget",
        }
    }
}

fn now_ms(start: Instant) -> i64 {
    start.elapsed().as_millis() as i64
}

/// A connection registered before its handshake completes.
pub struct Prepared {
    user: UserId,
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
pub async fn prepare(hub: &Arc<Hub>, user: UserId, ack_mode: bool, opts: Options) -> Prepared {
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
    let first_anywhere = match services.register_device(user, conn_id).await {
        Ok(Registered::TooManyDevices) => {
            prepared.refused = true;
            return prepared;
        }
        Ok(Registered::Accepted { first_anywhere }) => first_anywhere,
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
        .unregister_device(prepared.user, prepared.conn_id)
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
    let mut reader = tokio::spawn(read::read_loop(
        rd,
        hub.clone(),
        user,
        conn_id,
        tx.clone(),
        kill.clone(),
        last_seen.clone(),
        start,
        opts,
    ));
    drop(tx);

    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + opts.ping_every,
        opts.ping_every,
    );
    let mut reader_done = false;
    let mut tags: Vec<MessageTag> = Vec::new();
    let exit = loop {
        tokio::select! {
            biased;
            _ = kill.wait() => break Exit::ClosedByServer,
            r = &mut reader, if !reader_done => {
                reader_done = true;
                // The reader has asked for its close code already, or the client closed.
                kill.fire(close::NORMAL, "");
                break r.unwrap_or(Exit::ReaderFailed);
            }
            item = rx.recv() => {
                let Some(item) = item else { break Exit::QueueClosed };
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
                    break Exit::WriteFailed;
                }
                metrics::counter!(m::WS_FRAMES_OUT).increment(frames);
                let now = crate::model::Timestamp::now().micros();
                for tag in tags.drain(..) {
                    if !ack_mode {
                        hub.written(user, tag.conversation_id, tag.seq);
                    }
                    metrics::histogram!(m::DELIVERY_LATENCY).record((now - tag.created_at.micros()).max(0) as f64 / 1e6);
                }
            }
            _ = ping.tick() => {
                let silent = now_ms(start) - last_seen.load(Ordering::Relaxed);
                if silent > opts.idle_timeout.as_millis() as i64 {
                    kill.fire(close::GOING_AWAY, "idle timeout");
                    break Exit::IdleTimeout;
                }
                wr.push(frames::PING, b"");
                if wr.flush().await.is_err() {
                    break Exit::WriteFailed;
                }
            }
        }
    };
    if !reader_done {
        reader.abort();
    }
    let (code, text) = kill.requested().unwrap_or((close::NORMAL, ""));
    // Store cursors (and unsubscribe) before answering the close.
    hub.remove_device(user, conn_id, exit.clean(code)).await;
    if exit != Exit::WriteFailed {
        wr.push_close(code, text);
        let _ = wr.flush().await;
    }
    metrics::counter!(m::WS_CONNECTIONS_CLOSED, "reason" => close_label(code)).increment(1);
    tracing::debug!(%user, conn = conn_id, code, reason = exit.label(), "connection closed");
    match services.unregister_device(user, conn_id).await {
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
    tags: &mut Vec<MessageTag>,
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

#[cfg(test)]
mod tests {
    use super::{Exit, close};

    #[test]
    fn only_a_close_handshake_is_clean() {
        assert!(Exit::ClientClosed.clean(close::NORMAL));
        assert!(Exit::ClosedByServer.clean(close::NORMAL), "logout");
        assert!(Exit::ClosedByServer.clean(close::RESTART), "drain");
        assert!(
            !Exit::ClosedByServer.clean(close::TRY_AGAIN_LATER),
            "queue full"
        );
        assert!(!Exit::IdleTimeout.clean(close::GOING_AWAY));
        assert!(!Exit::ConnectionLost.clean(close::NORMAL));
        assert!(!Exit::WriteFailed.clean(close::NORMAL));
    }
}
