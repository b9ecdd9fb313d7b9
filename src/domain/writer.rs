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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::events;
use super::members::{MemberCache, Members};
use super::routing::Routed;
use super::send::Draft;
use super::settings::SettingsCache;
use crate::cluster::bus::Bus;
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::model::{ConversationKind, Message, Timestamp};
use crate::store::{self, Store};

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
    pub sender: Uuid,
    /// The conversation, resolved (private conversations exist by now).
    pub conversation_id: Uuid,
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
            code,
            message: message.clone(),
        },
        other if other.status() == hyper::StatusCode::SERVICE_UNAVAILABLE => Error::client(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
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
enum Outcome {
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

fn message_type_label(t: &str) -> &'static str {
    match t {
        "text" => "text",
        "image" => "image",
        "video" => "video",
        "emoji" => "emoji",
        _ => "other",
    }
}

/// A conversation's state while a batch is assembled.
struct ConvState {
    kind: ConversationKind,
    last_seq: i64,
    first_sender: Option<Uuid>,
    replied: bool,
    members: Arc<Members>,
    last: Option<(Uuid, Timestamp)>,
}

fn not_member() -> Error {
    Error::forbidden("not_member", "user is not a member of this conversation")
}

async fn write_batch(deps: &Deps, batch: &[Job]) -> Result<Vec<Outcome>> {
    let settings = deps.settings.get();
    let mut conn = deps.store.conn().await?;
    let tx = conn.transaction().await?;
    let conv_ids: Vec<Uuid> = {
        let set: HashSet<Uuid> = batch.iter().map(|j| j.conversation_id).collect();
        set.into_iter().collect()
    };
    let (locked, now) = store::conversations::lock_for_send(&tx, &conv_ids).await?;

    // Member lists at the locked version: cached when current, else read now.
    let stale: Vec<Uuid> = locked
        .iter()
        .filter(|c| {
            deps.members
                .get(c.id)
                .is_none_or(|m| m.version != c.members_version)
        })
        .map(|c| c.id)
        .collect();
    let mut fresh: HashMap<Uuid, Vec<(Uuid, crate::model::Role)>> = HashMap::new();
    if !stale.is_empty() {
        for (conv, user, role) in store::conversations::active_members(&tx, &stale).await? {
            fresh.entry(conv).or_default().push((user, role));
        }
    }
    let mut convs: HashMap<Uuid, ConvState> = HashMap::with_capacity(locked.len());
    for c in locked {
        let members = if stale.contains(&c.id) {
            let m = Arc::new(Members {
                version: c.members_version,
                kind: c.kind,
                list: fresh.remove(&c.id).unwrap_or_default(),
            });
            deps.members.put(c.id, m.clone());
            m
        } else {
            deps.members.get(c.id).expect("checked current above")
        };
        convs.insert(
            c.id,
            ConvState {
                kind: c.kind,
                last_seq: c.last_seq,
                first_sender: c.first_sender_id,
                replied: c.replied,
                members,
                last: None,
            },
        );
    }

    // Blocks, reply targets and retried client ids: one query each for the whole batch.
    let (mut blockers, mut blocked) = (Vec::new(), Vec::new());
    if settings.block {
        for job in batch {
            if let Some(c) = convs.get(&job.conversation_id)
                && c.kind == ConversationKind::Private
                && let Some(other) = c.members.other(job.sender)
            {
                blockers.push(other);
                blocked.push(job.sender);
            }
        }
    }
    let replies: Vec<Uuid> = batch
        .iter()
        .filter_map(|j| j.draft.reply_to_message_id)
        .collect();
    let cmid_senders: Vec<Uuid> = batch
        .iter()
        .filter(|j| j.draft.client_msg_id.is_some())
        .map(|j| j.sender)
        .collect();
    let cmids: Vec<&str> = batch
        .iter()
        .filter_map(|j| j.draft.client_msg_id.as_deref())
        .collect();
    let blocks_q = async {
        if blockers.is_empty() {
            Ok(Vec::new())
        } else {
            store::relationships::blocks_among(&tx, &blockers, &blocked).await
        }
    };
    let replies_q = async {
        if replies.is_empty() {
            Ok(Vec::new())
        } else {
            store::messages::conversations_of(&tx, &replies).await
        }
    };
    let cmids_q = async {
        if cmids.is_empty() {
            Ok(Vec::new())
        } else {
            store::messages::by_client_ids(&tx, &cmid_senders, &cmids).await
        }
    };
    let (blocks, reply_convs, earlier) = tokio::try_join!(blocks_q, replies_q, cmids_q)?;
    let blocks: HashSet<(Uuid, Uuid)> = blocks.into_iter().collect();
    let reply_convs: HashMap<Uuid, Uuid> = reply_convs.into_iter().collect();
    let mut earlier: HashMap<(Uuid, String), Message> = earlier
        .into_iter()
        .filter_map(|m| Some(((m.sender_id, m.client_msg_id.clone()?), m)))
        .collect();

    let mut outcomes = Vec::with_capacity(batch.len());
    let mut in_batch: HashMap<(Uuid, &str), usize> = HashMap::new();
    let mut rows: Vec<Message> = Vec::new();
    for (i, job) in batch.iter().enumerate() {
        let Some(c) = convs.get_mut(&job.conversation_id) else {
            outcomes.push(Outcome::Refused(not_member()));
            continue;
        };
        if !c.members.contains(job.sender) {
            outcomes.push(Outcome::Refused(not_member()));
            continue;
        }
        if let Some(cmid) = job.draft.client_msg_id.as_deref() {
            if let Some(original) = earlier.remove(&(job.sender, cmid.to_string())) {
                earlier.insert((job.sender, cmid.to_string()), original.clone());
                outcomes.push(Outcome::Duplicate(original));
                continue;
            }
            if let Some(first) = in_batch.get(&(job.sender, cmid)) {
                outcomes.push(Outcome::DuplicateOf(*first));
                continue;
            }
        }
        let private = c.kind == ConversationKind::Private;
        if private
            && let Some(other) = c.members.other(job.sender)
            && blocks.contains(&(other, job.sender))
        {
            outcomes.push(Outcome::Refused(Error::forbidden(
                "blocked",
                "you are blocked by this user",
            )));
            continue;
        }
        if let Some(reply) = job.draft.reply_to_message_id
            && reply_convs.get(&reply) != Some(&job.conversation_id)
        {
            outcomes.push(Outcome::Refused(Error::bad_request(
                "invalid_reply",
                "reply_to_message_id must be a message of this conversation",
            )));
            continue;
        }
        // First-message limit: tracked always, enforced when the setting is on.
        let (mut first_sender, mut replied) = (c.first_sender, c.replied);
        if private {
            match first_sender {
                None => first_sender = Some(job.sender),
                Some(f) if f == job.sender => {
                    if !replied && settings.first_message_limit {
                        outcomes.push(Outcome::Refused(Error::forbidden(
                            "first_message_limit",
                            "first message limit: wait for reply before sending more messages",
                        )));
                        continue;
                    }
                }
                Some(_) => replied = true,
            }
        }
        c.first_sender = first_sender;
        c.replied = replied;
        c.last_seq += 1;
        let message = Message {
            id: Uuid::now_v7(),
            conversation_id: job.conversation_id,
            seq: c.last_seq,
            sender_id: job.sender,
            message_type: job.draft.message_type.clone(),
            content: job.draft.content.clone(),
            metadata: job.draft.metadata.clone().filter(|v| !v.is_null()),
            reply_to_message_id: job.draft.reply_to_message_id,
            is_recalled: false,
            recalled_at: None,
            created_at: now,
            client_msg_id: job.draft.client_msg_id.clone(),
        };
        c.last = Some((message.id, now));
        if let Some(cmid) = job.draft.client_msg_id.as_deref() {
            in_batch.insert((job.sender, cmid), i);
        }
        let sender_can_send = !(private
            && settings.first_message_limit
            && first_sender == Some(job.sender)
            && !replied);
        rows.push(message.clone());
        outcomes.push(Outcome::Stored {
            message,
            members: c.members.clone(),
            sender_can_send,
        });
    }

    if !rows.is_empty() {
        let updates: Vec<store::conversations::AfterSend> = convs
            .iter()
            .filter_map(|(id, c)| {
                c.last.map(|(mid, at)| store::conversations::AfterSend {
                    id: *id,
                    last_seq: c.last_seq,
                    last_message_id: mid,
                    last_message_at: at,
                    first_sender_id: c.first_sender,
                    replied: c.replied,
                })
            })
            .collect();
        // Sending moves the sender's own read cursor to the message.
        let mut reads: HashMap<(Uuid, Uuid), (i64, Uuid)> = HashMap::new();
        for r in &rows {
            let e = reads
                .entry((r.conversation_id, r.sender_id))
                .or_insert((r.seq, r.id));
            if r.seq > e.0 {
                *e = (r.seq, r.id);
            }
        }
        let reads: Vec<(Uuid, Uuid, i64, Uuid)> = reads
            .into_iter()
            .map(|((c, u), (s, m))| (c, u, s, m))
            .collect();
        let (inserted, _, _) = tokio::try_join!(
            store::messages::insert_batch(&tx, &rows),
            store::conversations::update_after_send(&tx, &updates),
            store::members::advance_read(&tx, &reads),
        )?;
        if inserted.len() != rows.len() {
            // A client_msg_id committed concurrently in another conversation: those sends
            // become duplicates of what is stored.
            let inserted: HashSet<Uuid> = inserted.into_iter().collect();
            for o in outcomes.iter_mut() {
                if let Outcome::Stored { message, .. } = o
                    && !inserted.contains(&message.id)
                {
                    let cmid = message.client_msg_id.clone().unwrap_or_default();
                    let found =
                        store::messages::by_client_ids(&tx, &[message.sender_id], &[cmid.as_str()])
                            .await?;
                    *o = match found.into_iter().next() {
                        Some(original) => Outcome::Duplicate(original),
                        None => Outcome::Refused(Error::internal("message not stored")),
                    };
                }
            }
        }
    }
    tx.commit().await?;
    Ok(outcomes)
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
