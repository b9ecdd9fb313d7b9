//! Filling the search table, off the send path: one indexer for the whole cluster at a
//! time copies committed messages into `message_search` from a stored high-water mark
//! (`search_progress.indexed_until`), in large batches, and moves the mark in the same
//! transaction. Search reads the table up to the mark and `messages` after it
//! (`store::search::messages`), so indexing late never makes a message unsearchable; it
//! only lengthens the directly-read tail. Every node tries a pass every [`PASS_EVERY`];
//! a transaction-level advisory lock lets one through at a time, and a pass that finds less
//! than [`MIN_STEP`] to do does nothing, so the cluster indexes about that often whatever
//! its size. A node whose writer is backlogged leaves the work to others, for at most
//! [`MAX_DEFER`]. A rare straggler sweep adds what the mark passed before it was committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::metrics as m;
use crate::model::Timestamp;
use crate::store::{self, Store};

/// How often each node tries an indexing pass.
pub const PASS_EVERY: Duration = Duration::from_millis(500);
/// Longest a node skips passes while its writer is backlogged.
pub const MAX_DEFER: Duration = Duration::from_secs(5);
/// Least distance the mark moves in a pass: less waits for the next pass.
const MIN_STEP: Duration = Duration::from_millis(400);
/// Floor of the distance between the mark and `now()`, for transactions `pg_stat_activity`
/// does not show (see [`store::search::progress`]): longer than any send transaction.
const GUARD: Duration = Duration::from_secs(2);
/// An open transaction older than this no longer holds the mark back (a leaked or frozen
/// transaction would stop indexing altogether); what it commits later is a straggler.
const HOLD_BACK: Duration = Duration::from_secs(60);
/// Most of `created_at` one transaction indexes (catching up after an outage).
const SLICE: Duration = Duration::from_secs(5);
/// Most slices one pass indexes before it lets the next pass (maybe elsewhere) go on.
const MAX_SLICES: usize = 12;
/// How long summarizing the BRIN index waits for a partition's lock.
const SUMMARIZE_LOCK_TIMEOUT_MS: i64 = 20;
/// How often the straggler sweep runs in the cluster, and how far before the mark it looks:
/// each message is checked about 1.5 times, and one committed up to 5 minutes after the
/// mark passed it is found within 10 minutes.
const SWEEP_EVERY: Duration = Duration::from_secs(600);
const SWEEP_WINDOW: Duration = Duration::from_secs(900);
/// Most of `created_at` one sweep transaction covers.
const SWEEP_SLICE: Duration = Duration::from_secs(60);

/// Advisory lock of the indexer: whoever holds it (one pass, or a test holding the indexer
/// off) is the only indexer.
pub const INDEXER_LOCK: i64 = 7_314_227_002;
/// Advisory lock of the straggler sweep (the key the per-node sweep used).
const SWEEP_LOCK: i64 = 7_314_227_001;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Messages added by the indexer.
    pub indexed: u64,
    /// The straggler sweep this pass claimed for the cluster: [`sweep`] from here.
    pub sweep_from: Option<Timestamp>,
    /// Open transactions too old to hold the mark back (see [`HOLD_BACK`]).
    pub ignored: i64,
}

/// Whether this node tries a pass now: always, unless its writer is backlogged and its
/// last pass is less than [`MAX_DEFER`] ago.
pub fn due(backlogged: bool, since_last: Duration) -> bool {
    !backlogged || since_last >= MAX_DEFER
}

/// Whether summarizing has failed for a reason other than a busy lock, once warned.
static SUMMARIZE_WARNED: AtomicBool = AtomicBool::new(false);

fn lock_busy(e: &crate::error::Error) -> bool {
    matches!(e, crate::error::Error::Db(d)
        if d.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE))
}

fn micros(d: Duration) -> i64 {
    d.as_micros() as i64
}

/// One indexing pass on `store`, claiming the straggler sweep when it is due. `backlogged`
/// is asked between slices, so a long catch-up yields to sends.
pub async fn pass(store: &Store, backlogged: impl Fn() -> bool) -> Result<Pass> {
    let mut conn = store.conn().await?;
    let mut done = Pass::default();
    let mut sweep_due = false;
    for _ in 0..MAX_SLICES {
        // Read committed: the bound is computed from the activity read before the insert's
        // snapshot is taken (see store::search::progress).
        let mut tx = conn
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
            .start()
            .await?;
        if !store::search::try_lock(&tx, INDEXER_LOCK).await? {
            break;
        }
        let p = store::search::progress(
            &tx,
            GUARD.as_secs_f64(),
            HOLD_BACK.as_secs_f64(),
            SWEEP_EVERY.as_secs_f64(),
        )
        .await?;
        sweep_due = p.sweep_due;
        done.ignored = p.ignored;
        let until = Timestamp(
            p.bound
                .micros()
                .min(p.indexed_until.micros() + micros(SLICE)),
        );
        if until.micros() - p.indexed_until.micros() < micros(MIN_STEP) {
            break;
        }
        done.indexed += store::search::index(&tx, p.indexed_until, until).await?;
        let sp = tx.savepoint("summarize").await?;
        match store::search::summarize_recent(&sp, SUMMARIZE_LOCK_TIMEOUT_MS).await {
            Ok(_) => sp.commit().await?,
            Err(e) => {
                // Busy (autovacuum) now and then; a lasting failure (the role does not own
                // the table) is worth one warning: scans by time then slow down between
                // vacuums.
                if lock_busy(&e) || SUMMARIZE_WARNED.swap(true, Ordering::Relaxed) {
                    tracing::debug!(error = %e, "BRIN summarization skipped");
                } else {
                    tracing::warn!(error = %e, "cannot summarize the messages BRIN index");
                }
                sp.rollback().await?;
            }
        }
        tx.commit().await?;
        // Caught up, or sends are waiting: the rest is for the next pass.
        if until >= p.bound || backlogged() {
            break;
        }
    }
    if sweep_due && !backlogged() {
        // Claim this period's sweep for the cluster, then sweep in slices.
        let tx = conn.transaction().await?;
        let claimed = match store::search::try_lock(&tx, SWEEP_LOCK).await? {
            true => {
                store::search::claim_sweep(
                    &tx,
                    SWEEP_EVERY.as_secs_f64(),
                    SWEEP_WINDOW.as_secs_f64(),
                )
                .await?
            }
            false => None,
        };
        tx.commit().await?;
        done.sweep_from = claimed;
    }
    Ok(done)
}

/// Adds the messages created after `since` and at or before the mark that the search
/// table lacks (committed after the mark had passed their time, or lost), a minute of
/// `created_at` per transaction; waits for a sweep running elsewhere. Returns rows added.
pub async fn sweep(store: &Store, since: Timestamp) -> Result<u64> {
    sweep_on(&mut store.conn().await?, since).await
}

async fn sweep_on(conn: &mut deadpool_postgres::Object, since: Timestamp) -> Result<u64> {
    let mut added = 0;
    let mut from = since;
    loop {
        let tx = conn.transaction().await?;
        store::search::lock(&tx, SWEEP_LOCK).await?;
        let until = Timestamp(from.micros() + micros(SWEEP_SLICE));
        let (n, mark) = store::search::sweep(&tx, from, until).await?;
        tx.commit().await?;
        added += n;
        if until >= mark {
            return Ok(added);
        }
        from = until;
    }
}

/// This node's side of the indexer: when it last tried a pass, how many too-old
/// transactions the last pass ignored, and whether it failed (to warn once, not every
/// pass).
#[derive(Debug)]
pub struct Pacer {
    last: Instant,
    ignored: i64,
    failing: bool,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            last: Instant::now(),
            ignored: 0,
            failing: false,
        }
    }
}

impl super::Services {
    /// This node's indexer tick (every [`PASS_EVERY`]): a [`pass`] on this node's database
    /// unless [`due`] defers it; counted in metrics, problems logged.
    pub async fn index_search(&self, pacer: &mut Pacer) {
        if !due(self.writer.backlogged(), pacer.last.elapsed()) {
            metrics::counter!(m::SEARCH_INDEX_DEFERRED).increment(1);
            return;
        }
        pacer.last = Instant::now();
        match pass(&self.store, || self.writer.backlogged()).await {
            Ok(done) => {
                metrics::counter!(m::SEARCH_INDEXED).increment(done.indexed);
                if let Some(since) = done.sweep_from {
                    // On its own connection, so this node's passes go on meanwhile.
                    let store = self.store.clone();
                    tokio::spawn(async move {
                        match sweep(&store, since).await {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::warn!(rows = n, "search sweep added stragglers");
                                metrics::counter!(m::SEARCH_SWEPT).increment(n);
                            }
                            Err(e) => tracing::warn!(error = %e, "search sweep failed"),
                        }
                    });
                }
                if done.ignored > pacer.ignored {
                    tracing::warn!(
                        transactions = done.ignored,
                        "open transactions older than a minute no longer hold back search indexing"
                    );
                }
                pacer.ignored = done.ignored;
                if std::mem::take(&mut pacer.failing) {
                    tracing::info!("search indexing passes work again");
                }
            }
            Err(e) if pacer.failing => tracing::debug!(error = %e, "search indexing pass failed"),
            Err(e) => {
                pacer.failing = true;
                tracing::warn!(error = %e, "search indexing pass failed (search reads the unindexed messages meanwhile)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlogged_writer_defers_passes_for_a_while_only() {
        assert!(due(false, Duration::ZERO));
        assert!(!due(true, Duration::ZERO));
        assert!(!due(true, MAX_DEFER - Duration::from_millis(1)));
        assert!(due(true, MAX_DEFER));
    }
}
