//! A lean WebSocket client for load: binds a chosen local source address (so one machine
//! can open more connections than one address has ports), hands every text frame to a
//! callback, and writes through its own task so senders never wait on a lock.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use http_body_util::Empty;
use tokio::sync::mpsc;

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

/// Called with the payload of every text frame.
pub type OnText = Box<dyn FnMut(&[u8]) + Send>;

enum Out {
    Text(Bytes),
    Pong(Vec<u8>),
    Close,
}

/// An open connection; it closes when the last handle is dropped.
#[derive(Clone)]
pub struct Conn {
    tx: mpsc::Sender<Out>,
}

impl Conn {
    /// Queues a text frame; false when the connection is gone.
    pub async fn send(&self, text: Bytes) -> bool {
        self.tx.send(Out::Text(text)).await.is_ok()
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.tx.send(Out::Close).await;
    }

    /// A handle that does not keep the connection open.
    pub fn downgrade(&self) -> WeakConn {
        WeakConn {
            tx: self.tx.downgrade(),
        }
    }
}

/// A handle to a connection that does not keep it open (for the connection's own reader).
#[derive(Clone)]
pub struct WeakConn {
    tx: mpsc::WeakSender<Out>,
}

impl WeakConn {
    /// The connection, while some [`Conn`] still holds it.
    pub fn upgrade(&self) -> Option<Conn> {
        self.tx.upgrade().map(|tx| Conn { tx })
    }
}

/// Connects to `addr` with `token`, from `source` when given.
pub async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    token: &str,
    ack: bool,
    mut on_text: OnText,
) -> std::io::Result<Conn> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let ack = if ack { "&ack=1" } else { "" };
    let req = hyper::Request::builder()
        .method("GET")
        .uri(format!("/ws?token={token}{ack}"))
        .header("Host", addr.to_string())
        .header("Upgrade", "websocket")
        .header("Connection", "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .map_err(std::io::Error::other)?;
    let (ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, req, stream)
        .await
        .map_err(std::io::Error::other)?;
    let (mut rd, mut wr) = ws.split(tokio::io::split);
    let (tx, mut rx) = mpsc::channel::<Out>(256);
    tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            let res = match out {
                Out::Text(b) => wr.write_frame(Frame::text(Payload::Borrowed(&b))).await,
                Out::Pong(p) => wr.write_frame(Frame::pong(Payload::Owned(p))).await,
                Out::Close => break,
            };
            if res.is_err() {
                return;
            }
        }
        // Closed, or every handle dropped: close, so the server answers and the reader (and
        // the socket) end too.
        let _ = wr.write_frame(Frame::close(1000, b"")).await;
    });
    // Weak, so the reader does not keep the connection open once every handle is gone.
    let pong_tx = tx.downgrade();
    tokio::spawn(async move {
        loop {
            let ptx = pong_tx.clone();
            let frame = rd
                .read_frame(&mut move |f: Frame<'_>| {
                    if f.opcode == OpCode::Pong
                        && let Some(tx) = ptx.upgrade()
                    {
                        let _ = tx.try_send(Out::Pong(f.payload.to_vec()));
                    }
                    std::future::ready(Ok::<(), std::convert::Infallible>(()))
                })
                .await;
            match frame {
                Ok(f) if f.opcode == OpCode::Text => on_text(&f.payload),
                Ok(f) if f.opcode == OpCode::Close => return,
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    Ok(Conn { tx })
}
