//! The batching writer: concurrent sends share one transaction (group commit).
//!
//! Sends are spread over a few shards by conversation, so one conversation's messages are
//! written in order by one task. A shard takes every job waiting, locks the conversations
//! (in id order), checks membership, blocks, replies, the first-message limit and retried
//! `client_msg_id`s with one query each for the whole batch, hands out seqs, inserts the
//! messages and moves the counters and the senders' read cursors, then commits. Only after
//! the commit does the fan-out stage publish the messages (the sender's echo included).
//! A batch that fails on a database error is retried one job at a time, so one bad send
//! cannot sink the others.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

mod batch;

use batch::write_batch;

use super::events;
use super::members::{MemberCache, Members};
use super::routing::Routed;
use super::send::Draft;
use super::settings::SettingsCache;
use crate::cluster::bus::Bus;
use crate::error::{Code, Error, Result};
use crate::metrics as m;
use crate::model::{ConversationId, Message, MessageType, UserId};
use crate::store::Store;

/// The outcome of a send.
#[derive(Debug, Clone)]
pub enum Sent {
    /// Stored now; its echo is on its way to the sender's devices.
    Stored(Message),
    /// The sender's `client_msg_id` was used before: the original message, nothing stored.
    Duplicate(Message),
}

/// Called once with the outcome of a send.
pub type Reply = Box<dyn FnOnce(Result<Sent>) + Send + Sync>;

/// One send waiting for the writer.
pub struct Job {
    /// The caller.
    pub sender: UserId,
    /// The conversation, resolved (private conversations exist by now).
    pub conversation_id: ConversationId,
    /// What to store (already statically validated).
    pub draft: Draft,
    /// When the frame was read, for the send latency.
    pub received: Instant,
    /// Where the outcome goes.
    pub reply: Reply,
}

/// What the writer needs.
#[derive(Clone)]
pub struct Deps {
    /// PostgreSQL.
    pub store: Store,
    /// Fan-out.
    pub bus: Bus,
    /// Settings (first-message limit, blocks).
    pub settings: SettingsCache,
    /// Member lists.
    pub members: Arc<MemberCache>,
}

/// Handle to the writer shards.
#[derive(Clone)]
pub struct Writer {
    shards: Arc<[mpsc::Sender<Job>]>,
}

/// Jobs one transaction takes at most.
const MAX_BATCH: usize = 512;

impl Writer {
    /// Starts `shards` writer tasks, each with its fan-out task.
    pub fn start(shards: usize, deps: Deps) -> Writer {
        let senders: Vec<mpsc::Sender<Job>> = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(4096);
                let (fan_tx, fan_rx) = mpsc::channel(4096);
                tokio::spawn(write_loop(deps.clone(), rx, fan_tx));
                tokio::spawn(fanout_loop(deps.bus.clone(), fan_rx));
                tx
            })
            .collect();
        Writer {
            shards: senders.into(),
        }
    }

    /// Queues a send; `job.reply` is called with the outcome.
    pub async fn submit(&self, job: Job) {
        let shard = (job.conversation_id.as_u128() % self.shards.len() as u128) as usize;
        if let Err(mpsc::error::SendError(job)) = self.shards[shard].send(job).await {
            (job.reply)(Err(Error::internal("writer stopped")));
        }
    }

    /// True while some shard has more sends waiting than one batch takes (background work
    /// on PostgreSQL, such as search indexing, yields then).
    pub fn backlogged(&self) -> bool {
        self.shards
            .iter()
            .any(|s| s.max_capacity() - s.capacity() > MAX_BATCH)
    }
}

/// A committed message on its way to the members.
struct Fanout {
    message: Message,
    members: Arc<Members>,
    sender_can_send: bool,
    received: Instant,
}

async fn write_loop(deps: Deps, mut rx: mpsc::Receiver<Job>, fan_tx: mpsc::Sender<Fanout>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    loop {
        if rx.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        metrics::histogram!(m::WRITER_BATCH_SIZE).record(jobs.len() as f64);
        let batch: Vec<Job> = std::mem::take(&mut jobs);
        let mut outcome = write_batch(&deps, &batch).await;
        for attempt in 1..=3 {
            match &outcome {
                Err(e) if crate::error::is_retryable(e) => {
                    tracing::debug!(error = %e, attempt, "batch hit a deadlock or serialization failure; retrying");
                    outcome = write_batch(&deps, &batch).await;
                }
                _ => break,
            }
        }
        match outcome {
            Ok(outcomes) => finish(batch, outcomes, &fan_tx).await,
            Err(e)
                if batch.len() > 1
                    && matches!(e, Error::Db(ref d) if d.as_db_error().is_some()) =>
            {
                tracing::warn!(error = %e, jobs = batch.len(), "batch failed; retrying its sends one by one");
                for job in batch {
                    let one = std::slice::from_ref(&job);
                    let outcome = write_batch(&deps, one).await;
                    match outcome {
                        Ok(outcomes) => finish(vec![job], outcomes, &fan_tx).await,
                        Err(e) => fail(job, e),
                    }
                }
            }
            Err(e) => {
                for job in batch {
                    fail(job, clone_err(&e));
                }
            }
        }
    }
}

fn clone_err(e: &Error) -> Error {
    match e {
        Error::Client {
            status,
            code,
            message,
        } => Error::Client {
            status: *status,
            code: *code,
            message: message.clone(),
        },
        other if other.status() == hyper::StatusCode::SERVICE_UNAVAILABLE => Error::client(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            Code::Unavailable,
            "failed to save message: database unavailable, please retry",
        ),
        _ => Error::internal("failed to save message"),
    }
}

fn fail(job: Job, e: Error) {
    if !e.is_client() {
        tracing::error!(error = %e, "send failed");
        metrics::counter!(m::DB_ERRORS, "op" => "send").increment(1);
    }
    metrics::counter!(m::MESSAGES_REJECTED, "code" => e.code()).increment(1);
    (job.reply)(Err(clone_err(&e)));
}

/// What happened to one job of a batch.
pub(super) enum Outcome {
    Stored {
        message: Message,
        members: Arc<Members>,
        sender_can_send: bool,
    },
    Duplicate(Message),
    /// Same `client_msg_id` as job `index` of this batch.
    DuplicateOf(usize),
    Refused(Error),
}

async fn finish(batch: Vec<Job>, outcomes: Vec<Outcome>, fan_tx: &mpsc::Sender<Fanout>) {
    let stored: Vec<Option<Message>> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Stored { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Stored {
                message,
                members,
                sender_can_send,
            } => {
                metrics::counter!(m::MESSAGES_SENT, "type" => message_type_label(&message.message_type)).increment(1);
                let received = job.received;
                (job.reply)(Ok(Sent::Stored(message.clone())));
                let _ = fan_tx
                    .send(Fanout {
                        message,
                        members,
                        sender_can_send,
                        received,
                    })
                    .await;
            }
            Outcome::Duplicate(original) => (job.reply)(Ok(Sent::Duplicate(original))),
            Outcome::DuplicateOf(i) => match stored.get(i).cloned().flatten() {
                Some(original) => (job.reply)(Ok(Sent::Duplicate(original))),
                None => (job.reply)(Err(Error::internal("duplicate of a send that failed"))),
            },
            Outcome::Refused(e) => {
                metrics::counter!(m::MESSAGES_REJECTED, "code" => e.code()).increment(1);
                (job.reply)(Err(e));
            }
        }
    }
}

fn message_type_label(t: &MessageType) -> &'static str {
    match t {
        MessageType::Text => "text",
        MessageType::Image => "image",
        MessageType::Video => "video",
        MessageType::Emoji => "emoji",
        MessageType::Other(_) => "other",
    }
}

/// Publishes each committed message to every member: one frame for the recipients, one
/// (with the sender's `can_send`) for the sender's devices.
async fn fanout_loop(bus: Bus, mut rx: mpsc::Receiver<Fanout>) {
    while let Some(f) = rx.recv().await {
        let m = &f.message;
        let preview = events::preview(&m.message_type, m.content.as_deref(), false);
        let envelope = |frame: Bytes| {
            let routed = Routed::Message {
                conversation_id: m.conversation_id,
                seq: m.seq,
                sender_id: m.sender_id,
                created_at: m.created_at,
                preview: preview.clone(),
                frame,
            };
            let mut env = bus.envelope(128 + m.content.as_ref().map_or(0, String::len));
            routed.encode_into(&mut env);
            env.freeze()
        };
        let to_recipients = envelope(events::message(m, true));
        let to_sender = envelope(events::message(m, f.sender_can_send));
        bus.route(m.sender_id, to_sender).await;
        metrics::histogram!(m::SEND_LATENCY).record(f.received.elapsed().as_secs_f64());
        for (user, _) in f.members.list.iter().filter(|(u, _)| *u != m.sender_id) {
            bus.route(*user, to_recipients.clone()).await;
        }
    }
}
