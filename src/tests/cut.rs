//! A connection cut while frames are in flight: what the node wrote but the client never
//! received comes back on the next connection, and a clean close repeats nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::realtime::{Cluster, befriend, send_text};
use super::ws_client::Ws;

/// A TCP proxy for one connection whose server-to-client direction can be cut: after
/// [`Cut::cut`] the bytes the node writes are read and thrown away, as if lost on the wire.
struct Cut {
    addr: SocketAddr,
    delivering: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cut {
    async fn to(node: SocketAddr) -> Cut {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delivering = Arc::new(AtomicBool::new(true));
        let d = delivering.clone();
        let task = tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(node).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let up = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if d.load(Ordering::SeqCst) && cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            up.abort();
        });
        Cut {
            addr,
            delivering,
            tasks: vec![task],
        }
    }

    /// From now on the node's bytes are lost.
    fn cut(&self) {
        self.delivering.store(false, Ordering::SeqCst);
    }

    /// Breaks both connections without a close handshake.
    fn break_off(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_lost_in_flight_come_back_on_the_next_connection() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let b_user = uuid::Uuid::new_v4();
    let token = c.env.token(b_user, false);
    let proxy = Cut::to(c.nodes[1].addr).await;
    let mut b = Ws::connect(proxy.addr, &token, b_user).await.unwrap();
    let conv = befriend(&mut a, &mut b).await;
    // Let the setup messages be confirmed as delivered, so only the lost ones come back.
    tokio::time::sleep(crate::delivery::CONFIRM + Duration::from_millis(2500)).await;

    proxy.cut();
    let mut lost = Vec::new();
    for i in 0..5 {
        let echo = send_text(&mut a, Some(conv), None, &format!("lost {i}")).await;
        lost.push(echo["id"].as_str().unwrap().to_string());
    }
    // The node has written them (into the void); a periodic flush runs meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.expect_no("message", Duration::from_millis(100)).await;
    proxy.break_off();
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut b2 = c.connect(0, b_user).await;
    let events = b2.drain(Duration::from_millis(1500)).await;
    let replayed: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "offline_message")
        .map(|e| e["data"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        replayed, lost,
        "every message the broken connection never delivered, once, in order"
    );

    // This connection ends with a close handshake: nothing comes twice.
    b2.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut b3 = c.connect(1, b_user).await;
    b3.expect_no("offline_message", Duration::from_millis(1500))
        .await;
}
