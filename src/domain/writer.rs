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

mod admission;
mod all_or_nothing;
mod batch;
mod fast;

pub use admission::{Admission, Limits};

use batch::write_batch;
use fast::KnownMap;

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
    shards: Arc<[Shard]>,
    admission: Admission,
    deps: Deps,
}

/// One shard's queue and pace.
struct Shard {
    tx: mpsc::Sender<Job>,
    pace: Arc<admission::Pace>,
}

/// Jobs one transaction takes at most.
const MAX_BATCH: usize = 512;
/// Jobs one shard queues at most (the bound in time, `Limits::queue_target`, comes first).
const QUEUE: usize = 8192;

/// What a shard's write loop needs besides the dependencies.
struct ShardLoop {
    index: usize,
    admission: Admission,
    pace: Arc<admission::Pace>,
}

/// Answers `job` with `overloaded`.
fn refuse(job: Job, retry_after_ms: u64) {
    metrics::counter!(m::MESSAGES_REJECTED, "code" => Code::Overloaded.as_str()).increment(1);
    (job.reply)(Err(Error::overloaded(retry_after_ms)));
}

impl Writer {
    /// Starts `shards` writer tasks, each with its fan-out task, admitting sends within
    /// `limits`.
    pub fn start(shards: usize, deps: Deps, limits: Limits) -> Writer {
        let admission = Admission::start(limits);
        let shards: Vec<Shard> = (0..shards.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let (fan_tx, fan_rx) = mpsc::channel(4096);
                let pace = Arc::new(admission::Pace::default());
                let shard = ShardLoop {
                    index: i,
                    admission: admission.clone(),
                    pace: pace.clone(),
                };
                tokio::spawn(write_loop(deps.clone(), rx, fan_tx, shard));
                tokio::spawn(fanout_loop(deps.bus.clone(), fan_rx));
                Shard { tx, pace }
            })
            .collect();
        Writer {
            shards: shards.into(),
            admission,
            deps,
        }
    }

    /// Queues a send, or refuses it at once (`overloaded`, with a retry delay) when the
    /// shard's queue would not drain within the target or the node is saturated (see
    /// `admission`); `job.reply` is called with the outcome. Never waits.
    pub fn submit(&self, job: Job) {
        let shard =
            &self.shards[(job.conversation_id.as_u128() % self.shards.len() as u128) as usize];
        let queued = shard.tx.max_capacity() - shard.tx.capacity();
        if let Err((why, after)) = self.admission.check(&shard.pace, queued) {
            why.count();
            return refuse(job, after);
        }
        match shard.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                admission::Refusal::Full.count();
                let after = admission::retry_after(self.admission.limits().deadline);
                refuse(job, after);
            }
            Err(mpsc::error::TrySendError::Closed(job)) => {
                (job.reply)(Err(Error::internal("writer stopped")))
            }
        }
    }

    /// True while some shard has more sends waiting than one batch takes (background work
    /// on PostgreSQL, such as search indexing, yields then).
    pub fn backlogged(&self) -> bool {
        self.shards
            .iter()
            .any(|s| s.tx.max_capacity() - s.tx.capacity() > MAX_BATCH)
    }
}

/// A committed message on its way to the members.
struct Fanout {
    message: Message,
    members: Arc<Members>,
    sender_can_send: bool,
    received: Instant,
}

async fn write_loop(
    deps: Deps,
    mut rx: mpsc::Receiver<Job>,
    fan_tx: mpsc::Sender<Fanout>,
    shard: ShardLoop,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    let mut known = KnownMap::default();
    let label = shard.index.to_string();
    loop {
        if rx.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        let started = Instant::now();
        metrics::gauge!(m::WRITER_QUEUE, "shard" => label.clone()).set(rx.len() as f64);
        // Jobs that waited past the deadline are refused, not written late.
        let (batch, late): (Vec<Job>, Vec<Job>) = std::mem::take(&mut jobs)
            .into_iter()
            .partition(|j| shard.admission.fresh(j.received));
        if !late.is_empty() {
            let after = admission::retry_after(shard.admission.limits().deadline);
            for job in late {
                admission::Refusal::Deadline.count();
                refuse(job, after);
            }
        }
        if batch.is_empty() {
            continue;
        }
        let size = batch.len();
        metrics::histogram!(m::WRITER_BATCH_SIZE).record(size as f64);
        let mut plan = fast::plan(&batch, &known, &deps.settings.get());
        let mut slots: Vec<Option<Job>> = batch.into_iter().map(Some).collect();
        let mut careful = std::mem::take(&mut plan.careful);
        if !plan.fast.is_empty() {
            match write_fast(&deps, &mut plan, &mut known).await {
                Ok(outcomes) => {
                    metrics::counter!(m::WRITER_BATCHES, "path" => "fast").increment(1);
                    let jobs = take(&mut slots, &plan.fast);
                    finish(jobs, outcomes, &fan_tx).await;
                }
                Err(e) => {
                    if fast::is_stale(&e) {
                        metrics::counter!(m::WRITER_STALE).increment(1);
                        tracing::debug!(error = %e, "the writer's view of a conversation was stale; writing carefully");
                    } else {
                        tracing::warn!(error = %e, "one-statement write failed; writing carefully");
                    }
                    for c in plan.conversations() {
                        known.forget(c);
                    }
                    careful.extend_from_slice(&plan.fast);
                    careful.sort_unstable();
                }
            }
        }
        if !careful.is_empty() {
            metrics::counter!(m::WRITER_BATCHES, "path" => "careful").increment(1);
            let jobs = take(&mut slots, &careful);
            write_carefully(&deps, jobs, &mut known, &fan_tx).await;
        }
        shard.pace.record(size, started.elapsed());
    }
}

/// The jobs at `indices`, moved out of `slots`.
fn take(slots: &mut [Option<Job>], indices: &[usize]) -> Vec<Job> {
    indices
        .iter()
        .map(|&i| slots[i].take().expect("each job is taken once"))
        .collect()
}

/// The one-statement write, retried on a deadlock (nothing was written then).
async fn write_fast(
    deps: &Deps,
    plan: &mut fast::Plan,
    known: &mut KnownMap,
) -> Result<Vec<Outcome>> {
    let conn = deps.store.conn().await?;
    let mut attempt = 0;
    loop {
        match plan.write(&conn, known).await {
            Err(e) if crate::error::is_retryable(&e) && attempt < 3 => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "one-statement write hit a deadlock; retrying");
            }
            other => return other,
        }
    }
}

/// The careful path: row locks first, then the checks; a batch that fails on a database
/// error is retried one job at a time, so one bad send cannot sink the others.
async fn write_carefully(
    deps: &Deps,
    batch: Vec<Job>,
    known: &mut KnownMap,
    fan_tx: &mpsc::Sender<Fanout>,
) {
    let mut outcome = write_batch(deps, &batch, false).await;
    for attempt in 1..=3 {
        match &outcome {
            Err(e) if crate::error::is_retryable(e) => {
                tracing::debug!(error = %e, attempt, "batch hit a deadlock or serialization failure; retrying");
                outcome = write_batch(deps, &batch, false).await;
            }
            _ => break,
        }
    }
    match outcome {
        Ok((outcomes, learned)) => {
            for (conv, k) in learned {
                known.put(conv, k);
            }
            finish(batch, outcomes, fan_tx).await
        }
        Err(e) if batch.len() > 1 && matches!(e, Error::Db(ref d) if d.as_db_error().is_some()) => {
            tracing::warn!(error = %e, jobs = batch.len(), "batch failed; retrying its sends one by one");
            for job in batch {
                let one = std::slice::from_ref(&job);
                match write_batch(deps, one, false).await {
                    Ok((outcomes, learned)) => {
                        for (conv, k) in learned {
                            known.put(conv, k);
                        }
                        finish(vec![job], outcomes, fan_tx).await
                    }
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

fn clone_err(e: &Error) -> Error {
    match e {
        Error::Busy {
            status,
            code,
            message,
            retry_after_ms,
        } => Error::Busy {
            status: *status,
            code: *code,
            message: message.clone(),
            retry_after_ms: *retry_after_ms,
        },
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

/// Publishes each committed message to every member: one frame for the members (serialized
/// once, shared by every recipient on every node) in one [`Bus::route_many`], which the
/// sender's echo joins when its frame is the same (its `can_send` is true, as always in a
/// group); otherwise the echo, with the sender's own `can_send`, goes on its own.
async fn fanout_loop(bus: Bus, mut rx: mpsc::Receiver<Fanout>) {
    let mut users = Vec::new();
    while let Some(f) = rx.recv().await {
        publish(&bus, &f, &mut users).await;
    }
}

/// Publishes one committed message (see [`fanout_loop`]); `users` is scratch space.
async fn publish(bus: &Bus, f: &Fanout, users: &mut Vec<UserId>) {
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
    users.clear();
    if f.sender_can_send {
        // The echo is the recipients' frame: the sender rides in the same envelope.
        users.push(m.sender_id);
    } else {
        bus.route(m.sender_id, envelope(events::message(m, false)))
            .await;
    }
    users.extend(
        f.members
            .list
            .iter()
            .map(|(u, _)| *u)
            .filter(|u| *u != m.sender_id),
    );
    bus.route_many(users, to_recipients, m.conversation_id)
        .await;
    metrics::histogram!(m::SEND_LATENCY).record(f.received.elapsed().as_secs_f64());
}
