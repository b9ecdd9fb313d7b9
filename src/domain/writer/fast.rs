//! The one-round-trip write: a batch whose conversations the writer already knows is
//! written by one statement ([`store::sends::FAST_SQL`]) that checks, under the row locks it
//! takes, that what the writer knew still holds.
//!
//! The writer shard remembers, per conversation it wrote, the member list with its version,
//! the first-message state and whether it is an old private row without a pair key
//! ([`Known`]). A job is written this way when its conversation is known, its sender is a
//! member, and the first-message limit lets it through; the statement then verifies the
//! members' version, the first-message state, that no block exists between a private pair,
//! that no `client_msg_id` was used before and that every reply names a message of the same
//! conversation. If any of that fails, nothing is written and the jobs take the careful path
//! (`batch.rs`: row locks, one query per check), which also answers every refusal: a refusal
//! is never decided on what the writer only remembers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Job, Outcome};
use crate::domain::members::Members;
use crate::domain::settings::Snapshot;
use crate::error::{Error, Result};
use crate::model::{ConversationId, ConversationKind, Message, MessageId, UserId};
use crate::store;
use crate::store::sends::{FastConversation, FastMessage, FastRead};

/// Conversations a shard remembers at most (a crude bound: a miss costs one careful batch).
const MAX_KNOWN: usize = 100_000;

/// What a writer shard remembers of a conversation after writing to it.
#[derive(Debug, Clone)]
pub(super) struct Known {
    /// Active members, at `members.version`.
    pub members: Arc<Members>,
    /// First-message limit: who spoke first.
    pub first_sender: Option<UserId>,
    /// First-message limit: the other side wrote back.
    pub replied: bool,
    /// An old private row without a pair key: blocks need a look-up (careful path only).
    pub legacy_pair: bool,
}

/// A shard's memory of its conversations.
#[derive(Default)]
pub(super) struct KnownMap {
    map: HashMap<ConversationId, Known>,
}

impl KnownMap {
    /// Remembers `conversation` as the careful path left it.
    pub fn put(&mut self, conversation: ConversationId, known: Known) {
        if self.map.len() >= MAX_KNOWN && !self.map.contains_key(&conversation) {
            self.map.clear();
        }
        self.map.insert(conversation, known);
    }

    /// Forgets `conversation` (the statement found it changed).
    pub fn forget(&mut self, conversation: ConversationId) {
        self.map.remove(&conversation);
    }
}

/// A batch split in two: the jobs the statement can write, planned, and the rest.
pub(super) struct Plan {
    /// Indices (into the batch) of the jobs written by the statement, in batch order.
    pub fast: Vec<usize>,
    /// Indices of the jobs left to the careful path.
    pub careful: Vec<usize>,
    /// One message per fast job (seq and time filled in after the write).
    messages: Vec<Message>,
    /// Place of each fast job's message among its conversation's in this batch.
    ords: Vec<i32>,
    /// Per fast job: the sender may send again (first-message limit).
    can_send: Vec<bool>,
    conversations: Vec<FastConversation>,
    reads: Vec<FastRead>,
}

/// The state of one conversation while planning.
struct Draft {
    jobs: Vec<usize>,
    first: Option<UserId>,
    replied: bool,
    fast: bool,
}

/// Splits `batch`: a conversation goes to the statement only when every job of it in this
/// batch can (so a conversation's messages stay in order).
pub(super) fn plan(batch: &[Job], known: &KnownMap, settings: &Snapshot) -> Plan {
    // The same (sender, client_msg_id) twice in one batch: the careful path answers it.
    let mut keys = HashSet::new();
    let mut repeated = HashSet::new();
    for job in batch {
        if let Some(cmid) = job.draft.client_msg_id.as_deref()
            && !keys.insert((job.sender, cmid))
        {
            repeated.insert(job.conversation_id);
        }
    }
    let mut order: Vec<ConversationId> = Vec::new();
    let mut drafts: HashMap<ConversationId, Draft> = HashMap::new();
    for (i, job) in batch.iter().enumerate() {
        let conv = job.conversation_id;
        let d = drafts.entry(conv).or_insert_with(|| {
            order.push(conv);
            let k = known.map.get(&conv);
            Draft {
                jobs: Vec::new(),
                first: k.and_then(|k| k.first_sender),
                replied: k.is_some_and(|k| k.replied),
                fast: k.is_some_and(|k| !k.legacy_pair) && !repeated.contains(&conv),
            }
        });
        d.jobs.push(i);
        if !d.fast {
            continue;
        }
        let k = &known.map[&conv];
        // A forwarded message is written carefully (the statement has no column for it).
        if !k.members.contains(job.sender) || job.draft.forwarded_from.is_some() {
            d.fast = false;
            continue;
        }
        if k.members.kind == ConversationKind::Private {
            match d.first {
                None => d.first = Some(job.sender),
                Some(f) if f == job.sender => {
                    if !d.replied && settings.first_message_limit {
                        d.fast = false;
                    }
                }
                Some(_) => d.replied = true,
            }
        }
    }

    let mut plan = Plan {
        fast: Vec::new(),
        careful: Vec::new(),
        messages: Vec::new(),
        ords: Vec::new(),
        can_send: Vec::new(),
        conversations: Vec::new(),
        reads: Vec::new(),
    };
    for conv in order {
        let d = &drafts[&conv];
        if !d.fast {
            plan.careful.extend(&d.jobs);
            continue;
        }
        let k = &known.map[&conv];
        let private = k.members.kind == ConversationKind::Private;
        // Replay the first-message state job by job for each sender's `can_send`.
        let (mut first, mut replied) = (k.first_sender, k.replied);
        let mut last_by_sender: HashMap<UserId, (i32, MessageId)> = HashMap::new();
        let mut last = None;
        for (n, &i) in d.jobs.iter().enumerate() {
            let job = &batch[i];
            if private {
                match first {
                    None => first = Some(job.sender),
                    Some(f) if f == job.sender => {}
                    Some(_) => replied = true,
                }
            }
            let ord = n as i32 + 1;
            let id = store::messages::new_id(conv);
            last = Some(id);
            last_by_sender.insert(job.sender, (ord, id));
            plan.fast.push(i);
            plan.ords.push(ord);
            plan.can_send.push(
                !(private && settings.first_message_limit && first == Some(job.sender) && !replied),
            );
            plan.messages.push(job.draft.message(
                id,
                conv,
                0,
                job.sender,
                crate::model::Timestamp(0),
            ));
        }
        plan.conversations.push(FastConversation {
            id: conv,
            count: d.jobs.len() as i32,
            members_version: k.members.version,
            first_sender_id: k.first_sender,
            replied: k.replied,
            new_first_sender_id: first,
            new_replied: replied,
            last_message_id: last.expect("a conversation of the plan has a job"),
            check_blocks: private && settings.block,
        });
        for (user, (ord, id)) in last_by_sender {
            plan.reads.push(FastRead {
                conversation_id: conv,
                user_id: user,
                ord,
                message_id: id,
            });
        }
    }
    plan
}

impl Plan {
    /// Writes the fast jobs. `Ok(outcomes)` lines up with [`Plan::fast`]; an error with
    /// SQLSTATE `DQ001` means nothing was written (see [`is_stale`]).
    pub async fn write(
        &mut self,
        client: &impl deadpool_postgres::GenericClient,
        known: &mut KnownMap,
    ) -> Result<Vec<Outcome>> {
        let messages: Vec<FastMessage<'_>> = self
            .messages
            .iter()
            .zip(&self.ords)
            .map(|(m, ord)| FastMessage {
                id: m.id,
                conversation_id: m.conversation_id,
                ord: *ord,
                sender_id: m.sender_id,
                message_type: m.message_type.as_str(),
                content: m.content.as_deref(),
                metadata: m.metadata.as_ref(),
                reply_to: m.reply_to_message_id,
                client_msg_id: m.client_msg_id.as_deref(),
            })
            .collect();
        let written =
            store::sends::write_fast(client, &messages, &self.conversations, &self.reads).await?;
        drop(messages);
        if written.len() != self.messages.len() {
            return Err(Error::internal(format!(
                "fast write returned {} of {} messages",
                written.len(),
                self.messages.len()
            )));
        }
        let stamped: HashMap<MessageId, (i64, crate::model::Timestamp)> = written
            .into_iter()
            .map(|(id, seq, at)| (id, (seq, at)))
            .collect();
        for c in &self.conversations {
            if let Some(k) = known.map.get_mut(&c.id) {
                k.first_sender = c.new_first_sender_id;
                k.replied = c.new_replied;
            }
        }
        let mut outcomes = Vec::with_capacity(self.messages.len());
        for (mut message, can_send) in self.messages.drain(..).zip(self.can_send.drain(..)) {
            let Some(&(seq, at)) = stamped.get(&message.id) else {
                return Err(Error::internal("fast write lost a message"));
            };
            message.seq = seq;
            message.created_at = at;
            let members = known.map[&message.conversation_id].members.clone();
            outcomes.push(Outcome::Stored {
                message,
                members,
                sender_can_send: can_send,
            });
        }
        Ok(outcomes)
    }

    /// The conversations of the fast jobs (forgotten when the statement found them changed).
    pub fn conversations(&self) -> impl Iterator<Item = ConversationId> + '_ {
        self.conversations.iter().map(|c| c.id)
    }
}

/// True when `e` says the node's view was stale: nothing was written, take the careful path.
pub(super) fn is_stale(e: &Error) -> bool {
    matches!(e, Error::Db(d) if d.code().is_some_and(|c| c.code() == store::sends::STALE))
}
