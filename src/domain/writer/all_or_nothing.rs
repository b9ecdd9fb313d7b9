//! A forward's batch: sends of one caller to several conversations, written in one
//! transaction on the careful path, all or nothing, beside the shards.

use super::batch::write_batch;
use super::{Fanout, Job, Outcome, Writer, admission, clone_err, message_type_label, publish};
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::model::Message;

impl Writer {
    /// Writes `jobs` in one transaction on the careful path, all or nothing: the first
    /// refusal of any job (not a member, blocked, the first-message limit, …) is the answer
    /// and nothing is stored. Runs in the caller's task, beside the shards: the row locks
    /// (taken in conversation id order, as a shard does) order it with their batches, and a
    /// shard that remembered a conversation finds its view changed and writes carefully.
    /// After the commit every message is published like a shard's. Refused with
    /// `overloaded` while the shards are backlogged. Returns the messages in job order.
    pub async fn write_all(&self, jobs: Vec<Job>) -> Result<Vec<Message>> {
        if self.backlogged() {
            admission::Refusal::Full.count();
            return Err(Error::overloaded(admission::retry_after(
                self.admission.limits().deadline,
            )));
        }
        let deps = &self.deps;
        let mut outcome = write_batch(deps, &jobs, true).await;
        for attempt in 1..=3 {
            match &outcome {
                Err(e) if crate::error::is_retryable(e) => {
                    tracing::debug!(error = %e, attempt, "all-or-nothing batch hit a deadlock; retrying");
                    outcome = write_batch(deps, &jobs, true).await;
                }
                _ => break,
            }
        }
        let outcomes = match outcome {
            Ok((outcomes, _learned)) => outcomes,
            Err(e) => {
                if !e.is_client() {
                    tracing::error!(error = %e, "all-or-nothing batch failed");
                    metrics::counter!(m::DB_ERRORS, "op" => "send").increment(1);
                }
                metrics::counter!(m::MESSAGES_REJECTED, "code" => e.code())
                    .increment(jobs.len() as u64);
                return Err(clone_err(&e));
            }
        };
        let mut stored = Vec::with_capacity(outcomes.len());
        let mut users = Vec::new();
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let Outcome::Stored {
                message,
                members,
                sender_can_send,
            } = outcome
            else {
                return Err(Error::internal("an all-or-nothing batch left a send out"));
            };
            metrics::counter!(m::MESSAGES_SENT, "type" => message_type_label(&message.message_type)).increment(1);
            let f = Fanout {
                message,
                members,
                sender_can_send,
                received: job.received,
            };
            publish(&deps.bus, &f, &mut users).await;
            stored.push(f.message);
        }
        Ok(stored)
    }
}
