//! Filling the search table: committed messages with text are queued here by the writer's
//! fan-out and written in batches a moment later, off the send path. What a node never
//! wrote (it crashed, or its queue was full) is added by the periodic sweep.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::metrics as m;
use crate::model::Message;
use crate::store::search::Searchable;
use crate::store::{self, Store};

/// Most rows one insert carries.
const BATCH: usize = 2000;
/// How long a batch may wait to fill up.
const LINGER: Duration = Duration::from_millis(100);

/// Handle to the indexing task.
#[derive(Clone)]
pub struct SearchIndexer {
    tx: mpsc::Sender<Searchable>,
}

impl SearchIndexer {
    /// Starts the indexing task.
    pub fn start(store: Store) -> SearchIndexer {
        let (tx, rx) = mpsc::channel(100_000);
        tokio::spawn(run(store, rx));
        SearchIndexer { tx }
    }

    /// Queues a message for search if it has text. Never waits: when the queue is full the
    /// sweep picks the message up later.
    pub fn push(&self, message: &Message) {
        let Some(content) = message.content.as_ref().filter(|c| !c.is_empty()) else {
            return;
        };
        let item = Searchable {
            message_id: message.id,
            conversation_id: message.conversation_id,
            created_at: message.created_at,
            content: content.clone(),
        };
        if self.tx.try_send(item).is_err() {
            metrics::counter!(m::SEARCH_INDEX_DROPPED).increment(1);
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Searchable>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let result = async {
            let conn = store.conn().await?;
            store::search::index(&conn, &batch).await
        }
        .await;
        if let Err(e) = result {
            // The sweep adds these later.
            tracing::warn!(error = %e, rows = batch.len(), "search indexing failed");
            metrics::counter!(m::SEARCH_INDEX_DROPPED).increment(batch.len() as u64);
        }
        batch.clear();
    }
}

/// Adds what is missing among messages created after `since`, on one node at a time.
/// The caller moves `since` forward between sweeps (with a margin), so each sweep reads
/// only recent rows.
pub async fn sweep(store: &Store, since: crate::model::Timestamp) -> crate::error::Result<u64> {
    let mut conn = store.conn().await?;
    let tx = conn.transaction().await?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock(7314227001)", &[])
        .await?
        .get(0);
    if !locked {
        return Ok(0);
    }
    let added = store::search::sweep(&tx, since).await?;
    tx.commit().await?;
    Ok(added)
}

impl super::Services {
    /// [`sweep`] on this node's database.
    pub async fn sweep_search_index(
        &self,
        since: crate::model::Timestamp,
    ) -> crate::error::Result<u64> {
        sweep(&self.store, since).await
    }
}
