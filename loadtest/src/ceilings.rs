//! The machine's own ceilings, measured in the same run as the scenarios so that ratios
//! hold on a noisy machine: Redis PUBLISH rate for the payload size of a message envelope,
//! PostgreSQL insert rate for a bare batched insert into a scratch copy of `messages`, the
//! "minimal send SQL" rate (the least durable work a send can be reduced to: its row in
//! the real `messages` table and its conversation's `last_seq` bump, committed with
//! fsync, see [`pg_minimal_send`]), and the echo rate of a bare fastwebsockets server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The measured ceilings, per second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ceilings {
    /// PUBLISH commands per second (pipelined, `payload` bytes each, 4 connections).
    pub redis_publish_per_second: f64,
    /// Payload size used.
    pub payload_bytes: usize,
    /// Message rows inserted per second (batches of 100 in transactions, 2 connections).
    pub pg_insert_rows_per_second: f64,
    /// WebSocket echo round trips per second against a bare fastwebsockets server.
    pub ws_echo_per_second: f64,
    /// Minimal send SQL: messages per second written into the real `messages` table with
    /// their conversations' `last_seq` bumps ([`pg_minimal_send`]).
    #[serde(default)]
    pub pg_minimal_send_per_second: Option<f64>,
    /// PostgreSQL's durability settings during the minimal send SQL, e.g.
    /// "fsync on, synchronous_commit on".
    #[serde(default)]
    pub pg_durability: Option<String>,
}

/// Messages per transaction of the minimal send SQL (about a writer batch).
pub const MINIMAL_SEND_BATCH: usize = 64;
/// Concurrent connections of the minimal send SQL.
pub const MINIMAL_SEND_CONNECTIONS: usize = 4;
/// Conversations the minimal send SQL writes to (each batch's messages go to distinct
/// conversations, as one-to-one traffic spread over many pairs does).
const MINIMAL_SEND_CONVERSATIONS: usize = 1024;

/// Redis PUBLISH rate for `payload` bytes.
pub async fn redis_publish(url: &str, payload: usize, duration: Duration) -> Result<f64, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let count = Arc::new(AtomicU64::new(0));
    let data = Bytes::from(vec![b'x'; payload]);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        let (count, data) = (count.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            while started.elapsed() < duration {
                let mut pipe = redis::pipe();
                for _ in 0..128 {
                    pipe.cmd("PUBLISH")
                        .arg(format!("ceiling:u:{}", Uuid::new_v4()))
                        .arg(&data[..])
                        .ignore();
                }
                if pipe.query_async::<()>(&mut conn).await.is_err() {
                    return;
                }
                count.fetch_add(128, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// PostgreSQL insert rate for the writer's batched insert into a scratch copy of `messages`.
pub async fn pg_insert(database_url: &str, duration: Duration) -> Result<f64, String> {
    let connect = || async {
        let (client, conn) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok::<_, String>(client)
    };
    let admin = connect().await?;
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS loadtest_ceiling_messages;
             CREATE TABLE loadtest_ceiling_messages (LIKE messages INCLUDING DEFAULTS INCLUDING INDEXES);",
        )
        .await
        .map_err(|e| e.to_string())?;
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let mut client = connect().await?;
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            let conv = Uuid::new_v4();
            let mut seq = 0i64;
            let started = Instant::now();
            while started.elapsed() < duration {
                let ids: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
                let convs = vec![conv; 100];
                let seqs: Vec<i64> = (0..100).map(|i| seq + i).collect();
                seq += 100;
                let senders = vec![Uuid::new_v4(); 100];
                let contents: Vec<String> = (0..100).map(|i| format!("ceiling message {i} with some text")).collect();
                let Ok(tx) = client.transaction().await else { return };
                let r = tx
                    .execute(
                        "INSERT INTO loadtest_ceiling_messages (id, conversation_id, seq, sender_id, message_type, content, status, is_recalled, created_at, bucket)
                         SELECT id, conv, seq, sender, 'text', content, 'sent', FALSE, now(), msg_bucket(conv)
                         FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::text[]) AS t(id, conv, seq, sender, content)",
                        &[&ids, &convs, &seqs, &senders, &contents],
                    )
                    .await;
                if r.is_err() || tx.commit().await.is_err() {
                    return;
                }
                count.fetch_add(100, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    let rate = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let _ = admin
        .batch_execute("DROP TABLE IF EXISTS loadtest_ceiling_messages")
        .await;
    Ok(rate)
}

/// The minimal SQL work of a send, batched and durable: each transaction (one statement,
/// committed on its own, so one WAL flush) inserts [`MINIMAL_SEND_BATCH`] message rows
/// into the real, partitioned `messages` table (its indexes, foreign key and partition
/// routing; ids are UUIDv7 carrying their bucket, as the server makes them) and sets the
/// `last_seq` of each message's conversation in `conversations`, over
/// [`MINIMAL_SEND_CONNECTIONS`] connections with `synchronous_commit` on. It leaves out
/// what a send could be reduced away from (idempotency keys, the sender's read cursor,
/// the other counters, search). Conversations are created for it and deleted afterwards
/// (with their messages). Returns messages per second and the durability settings.
pub async fn pg_minimal_send(
    database_url: &str,
    duration: Duration,
) -> Result<(f64, String), String> {
    let connect = || async {
        let (client, conn) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok::<_, String>(client)
    };
    let admin = connect().await?;
    let setting = |name: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .map(|r| r.get::<_, String>(0))
                .map_err(|e| e.to_string())
        }
    };
    let durability = format!(
        "fsync {}, synchronous_commit {}",
        setting("fsync").await?,
        setting("synchronous_commit").await?
    );
    let conversations: Vec<Uuid> = (0..MINIMAL_SEND_CONVERSATIONS)
        .map(|_| Uuid::new_v4())
        .collect();
    admin
        .execute(
            "INSERT INTO conversations (id, conversation_type, group_name)
             SELECT id, 'group', 'loadtest ceiling' FROM unnest($1::uuid[]) AS t(id)",
            &[&conversations],
        )
        .await
        .map_err(|e| e.to_string())?;
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..MINIMAL_SEND_CONNECTIONS {
        let client = connect().await?;
        let count = count.clone();
        // Each connection its own conversations, as the writer's seq lock would have it.
        let mine: Vec<Uuid> = conversations
            .iter()
            .skip(c)
            .step_by(MINIMAL_SEND_CONNECTIONS)
            .copied()
            .collect();
        tasks.push(tokio::spawn(async move {
            minimal_send_loop(&client, &mine, &count, duration).await
        }));
    }
    let started = Instant::now();
    let mut failure = None;
    for t in tasks {
        if let Ok(Err(e)) = t.await {
            failure.get_or_insert(e);
        }
    }
    let rate = count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let cleanup = admin
        .execute(
            "DELETE FROM conversations WHERE id = ANY($1)",
            &[&conversations],
        )
        .await;
    match (failure, cleanup) {
        (Some(e), _) => Err(format!("minimal send SQL: {e}")),
        (None, Err(e)) => Err(format!("minimal send SQL clean-up: {e}")),
        (None, Ok(_)) => Ok((rate, durability)),
    }
}

/// One connection of [`pg_minimal_send`]: batches round robin over `conversations`.
async fn minimal_send_loop(
    client: &tokio_postgres::Client,
    conversations: &[Uuid],
    count: &AtomicU64,
    duration: Duration,
) -> Result<(), String> {
    client
        .batch_execute("SET synchronous_commit = on")
        .await
        .map_err(|e| e.to_string())?;
    let stmt = client
        .prepare(
            "WITH inserted AS (
                 INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content,
                                       created_at, bucket)
                 SELECT id, conv, seq, sender, 'text', content, now(), msg_bucket(conv)
                 FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::text[])
                      AS t(id, conv, seq, sender, content)
             )
             UPDATE conversations c SET last_seq = v.seq
             FROM unnest($2::uuid[], $3::int8[]) AS v(id, seq)
             WHERE c.id = v.id",
        )
        .await
        .map_err(|e| e.to_string())?;
    let sender = Uuid::new_v4();
    let mut seqs = vec![0i64; conversations.len()];
    let mut next = 0usize;
    let started = Instant::now();
    while started.elapsed() < duration {
        let mut ids = Vec::with_capacity(MINIMAL_SEND_BATCH);
        let mut convs = Vec::with_capacity(MINIMAL_SEND_BATCH);
        let mut batch_seqs = Vec::with_capacity(MINIMAL_SEND_BATCH);
        let mut contents = Vec::with_capacity(MINIMAL_SEND_BATCH);
        for _ in 0..MINIMAL_SEND_BATCH {
            let i = next % conversations.len();
            next += 1;
            let conv = conversations[i];
            seqs[i] += 1;
            // A UUIDv7 whose last byte is the conversation's bucket, like the server's.
            let mut id = *Uuid::now_v7().as_bytes();
            id[15] = conv.as_bytes()[15];
            ids.push(Uuid::from_bytes(id));
            convs.push(conv);
            batch_seqs.push(seqs[i]);
            contents.push(format!("lt:{}:0:{next}", crate::stats::now_micros()));
        }
        let senders = vec![sender; MINIMAL_SEND_BATCH];
        client
            .execute(&stmt, &[&ids, &convs, &batch_seqs, &senders, &contents])
            .await
            .map_err(|e| e.to_string())?;
        count.fetch_add(MINIMAL_SEND_BATCH as u64, Ordering::Relaxed);
    }
    Ok(())
}

/// Echo round trips per second of a bare fastwebsockets server on this machine.
pub async fn ws_echo(connections: usize, duration: Duration) -> Result<f64, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |mut req: hyper::Request<hyper::body::Incoming>| async move {
                        let (resp, fut) = fastwebsockets::upgrade::upgrade(&mut req)?;
                        tokio::spawn(async move {
                            let Ok(ws) = fut.await else { return };
                            let mut ws = fastwebsockets::FragmentCollector::new(ws);
                            while let Ok(frame) = ws.read_frame().await {
                                match frame.opcode {
                                    OpCode::Close => return,
                                    OpCode::Text | OpCode::Binary => {}
                                    _ => continue,
                                }
                                if ws.write_frame(frame).await.is_err() {
                                    return;
                                }
                            }
                        });
                        Ok::<_, fastwebsockets::WebSocketError>(resp)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
            let req = hyper::Request::builder()
                .uri("/")
                .header("Host", addr.to_string())
                .header("Upgrade", "websocket")
                .header("Connection", "upgrade")
                .header(
                    "Sec-WebSocket-Key",
                    fastwebsockets::handshake::generate_key(),
                )
                .header("Sec-WebSocket-Version", "13")
                .body(http_body_util::Empty::<Bytes>::new())
                .ok()?;
            let (ws, _) = fastwebsockets::handshake::client(&Exec, req, stream)
                .await
                .ok()?;
            let mut ws = fastwebsockets::FragmentCollector::new(ws);
            let payload = vec![b'x'; 300];
            let started = Instant::now();
            while started.elapsed() < duration {
                ws.write_frame(Frame::text(Payload::Borrowed(&payload)))
                    .await
                    .ok()?;
                ws.read_frame().await.ok()?;
                count.fetch_add(1, Ordering::Relaxed);
            }
            Some(())
        }));
    }
    let started = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    server.abort();
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

struct Exec;

impl<Fut> hyper::rt::Executor<Fut> for Exec
where
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::spawn(fut);
    }
}
