//! Message search: `content ILIKE` over the conversations a user is an active member of,
//! newest first, recalled messages excluded. The pattern arrives escaped; the trigram
//! index on `message_search` serves it for Chinese and English alike. `message_search`
//! is filled by the cluster's indexer up to a stored high-water mark ([`progress`],
//! [`index`]; [`sweep`] for stragglers), and [`messages`] reads what lies after the mark
//! from `messages` itself. An edit rewrites its message's row at once ([`replace_text`]).

use deadpool_postgres::GenericClient;

use crate::error::Result;
use crate::model::{ConversationId, Message, MessageId, Timestamp, UserId};
use crate::store::messages::{COLUMNS_M, from_row};

/// True when `user` is an active member of `conversation`.
pub async fn is_active_member(
    client: &impl GenericClient,
    conversation: ConversationId,
    user: UserId,
) -> Result<bool> {
    let stmt = client
        .prepare_cached(
            "SELECT 1 FROM conversation_members
             WHERE conversation_id = $1 AND user_id = $2 AND left_at IS NULL",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&conversation, &user])
        .await?
        .is_some())
}

/// A term shorter than a trigram reads at most this many of the newest indexed messages
/// of each conversation searched (the trigram index cannot serve it: each conversation is
/// read newest first through its `(conversation_id, created_at)` index)...
pub const SHORT_TERM_SCAN_PER_CONVERSATION: i64 = 1000;
/// ...in at most this many of the caller's most recently active conversations.
pub const SHORT_TERM_CONVERSATIONS: i64 = 100;

/// Messages matching `pattern` (an `ILIKE` pattern with `\` as its escape character) in
/// `user`'s active conversations, or only in `conversation` when given; newest first.
/// With `short` (a term under 3 characters) the indexed part is a bounded scan: see
/// [`SHORT_TERM_SCAN_PER_CONVERSATION`].
///
/// Two parts, read in one statement (one snapshot), so each message is in exactly one:
/// what the indexer has covered (`created_at <= indexed_until`) through `message_search`
/// and its trigram index, and the tail after it straight from `messages`. The tail is
/// found per conversation: only conversations whose `last_message_at` is past the mark
/// have one, and within a conversation `created_at` grows with `seq` (the writer stamps
/// it so), so the tail is the seqs above the newest message at or before the mark, read
/// by a range of the `(conversation_id, seq)` key.
pub async fn messages(
    client: &impl GenericClient,
    user: UserId,
    pattern: &str,
    conversation: Option<ConversationId>,
    limit: i64,
    offset: i64,
    short: bool,
) -> Result<Vec<Message>> {
    let narrow = match conversation {
        Some(_) => "AND cm.conversation_id = $5",
        None => "",
    };
    let indexed = if short {
        format!(
            "SELECT {COLUMNS_M} FROM (
                 SELECT c.id FROM mine JOIN conversations c ON c.id = mine.id
                 ORDER BY c.last_message_at DESC NULLS LAST
                 LIMIT {SHORT_TERM_CONVERSATIONS}
             ) recent, LATERAL (
                 SELECT r.message_id, r.conversation_id, r.created_at, r.content
                 FROM message_search r
                 WHERE r.conversation_id = recent.id AND r.created_at <= (SELECT t FROM hw)
                 ORDER BY r.created_at DESC
                 LIMIT {SHORT_TERM_SCAN_PER_CONVERSATION}
             ) s
             JOIN messages m ON m.id = s.message_id AND m.bucket = msg_bucket(s.conversation_id)
             WHERE TRUE"
        )
    } else {
        format!(
            "SELECT {COLUMNS_M} FROM message_search s
             JOIN messages m ON m.id = s.message_id AND m.bucket = msg_bucket(s.conversation_id)
             WHERE s.conversation_id IN (SELECT id FROM mine)
               AND s.created_at <= (SELECT t FROM hw)"
        )
    };
    let stmt = client
        .prepare_cached(&format!(
            "WITH hw AS (SELECT indexed_until AS t FROM search_progress),
             mine AS (
                 SELECT cm.conversation_id AS id FROM conversation_members cm
                 WHERE cm.user_id = $1 AND cm.left_at IS NULL {narrow}
             ),
             indexed AS (
                 {indexed}
                 AND COALESCE(m.is_recalled, FALSE) = FALSE AND s.content ILIKE $2 ESCAPE '\\'
                 ORDER BY s.created_at DESC, m.seq DESC
                 LIMIT $3::int8 + $4::int8
             ),
             tails AS MATERIALIZED (
                 SELECT c.id, COALESCE((
                     SELECT f.seq FROM messages f
                     WHERE f.conversation_id = c.id AND f.bucket = msg_bucket(c.id)
                       AND f.created_at <= (SELECT t FROM hw)
                     ORDER BY f.seq DESC LIMIT 1), 0) AS after_seq
                 FROM mine JOIN conversations c ON c.id = mine.id
                 WHERE c.last_message_at > (SELECT t FROM hw)
             ),
             tail AS (
                 SELECT x.* FROM tails, LATERAL (
                     SELECT {COLUMNS_M} FROM messages m
                     WHERE m.conversation_id = tails.id AND m.bucket = msg_bucket(tails.id)
                       AND m.seq > tails.after_seq AND m.created_at > (SELECT t FROM hw)
                       AND COALESCE(m.is_recalled, FALSE) = FALSE AND m.content ILIKE $2 ESCAPE '\\'
                 ) x
                 ORDER BY x.created_at DESC, x.seq DESC
                 LIMIT $3::int8 + $4::int8
             )
             SELECT * FROM (SELECT * FROM indexed UNION ALL SELECT * FROM tail) r
             ORDER BY r.created_at DESC, r.seq DESC, r.id DESC
             LIMIT $3 OFFSET $4"
        ))
        .await?;
    let rows = match conversation {
        Some(c) => {
            client
                .query(&stmt, &[&user, &pattern, &limit, &offset, &c])
                .await?
        }
        None => {
            client
                .query(&stmt, &[&user, &pattern, &limit, &offset])
                .await?
        }
    };
    Ok(rows.iter().map(from_row).collect())
}

/// Puts the edited text of message `id` into `message_search`, in the edit's transaction
/// (after the `messages` row is updated), so the indexed part of a search matches the new
/// words and not the old ones. The row is written whether or not the indexer has reached
/// the message: search reads rows only up to the mark, and the indexer's insert of the
/// message (`ON CONFLICT DO NOTHING`) then keeps this one. An insert the indexer has not
/// committed yet, made from a snapshot with the old text, holds this statement until it
/// commits and is then overwritten; one begun after this statement waits for the edit
/// to commit and finds the row.
pub async fn replace_text(
    client: &impl GenericClient,
    id: MessageId,
    conversation: ConversationId,
    created_at: Timestamp,
    content: &str,
) -> Result<()> {
    let stmt = client
        .prepare_cached(
            "INSERT INTO message_search (message_id, conversation_id, created_at, content)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (message_id) DO UPDATE SET content = EXCLUDED.content",
        )
        .await?;
    client
        .execute(&stmt, &[&id, &conversation, &created_at, &content])
        .await?;
    Ok(())
}

/// Where the indexer stands, read at the start of a pass.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Every message created at or before this is in `message_search`.
    pub indexed_until: Timestamp,
    /// The newest time the indexer may move the mark to now (see [`progress`]).
    pub bound: Timestamp,
    /// Transactions of this database and role older than the hold-back limit, which the
    /// bound ignores (a message they commit later is left to the straggler sweep).
    pub ignored: i64,
    /// The straggler sweep is due.
    pub sweep_due: bool,
}

/// Takes the transaction-level advisory lock `key` if it is free.
pub async fn try_lock(client: &impl GenericClient, key: i64) -> Result<bool> {
    let stmt = client
        .prepare_cached("SELECT pg_try_advisory_xact_lock($1)")
        .await?;
    Ok(client.query_one(&stmt, &[&key]).await?.get(0))
}

/// Waits for the transaction-level advisory lock `key`.
pub async fn lock(client: &impl GenericClient, key: i64) -> Result<()> {
    let stmt = client
        .prepare_cached("SELECT pg_advisory_xact_lock($1)")
        .await?;
    client.execute(&stmt, &[&key]).await?;
    Ok(())
}

/// The mark and how far it may move. `created_at` is at or after the writing transaction's
/// start (`now()` there), and a row becomes visible at its commit, so every message at or
/// before the bound is already visible to any later statement when the bound is below
/// the start of every transaction still open: the oldest open transaction of this
/// database and role (other than this one and straggler sweeps, and not older than
/// `hold_back_s`), minus a microsecond, and at most `now() - guard_s` (which covers what `pg_stat_activity` cannot
/// show: a transaction of another role, or `track_activities` off). The activity is read
/// before the caller's next statement takes its snapshot, so a transaction that starts
/// after this read starts after the bound.
pub async fn progress(
    client: &impl GenericClient,
    guard_s: f64,
    hold_back_s: f64,
    sweep_every_s: f64,
) -> Result<Progress> {
    let stmt = client
        .prepare_cached(
            "SELECT p.indexed_until,
                    least(now() - $1::float8 * interval '1 second', a.oldest) - interval '1 microsecond',
                    a.ignored,
                    p.swept_at < now() - $3::float8 * interval '1 second'
             FROM search_progress p, (
                 SELECT min(xact_start) FILTER (WHERE xact_start > now() - $2::float8 * interval '1 second') AS oldest,
                        count(*) FILTER (WHERE xact_start <= now() - $2::float8 * interval '1 second') AS ignored
                 FROM pg_stat_activity
                 WHERE datname = current_database() AND usename = current_user
                   AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
                   AND application_name IS DISTINCT FROM $4
             ) a",
        )
        .await?;
    let row = client
        .query_one(
            &stmt,
            &[&guard_s, &hold_back_s, &sweep_every_s, &SWEEP_APPLICATION],
        )
        .await?;
    Ok(Progress {
        indexed_until: row.get(0),
        bound: row.get(1),
        ignored: row.get(2),
        sweep_due: row.get(3),
    })
}

/// Copies the text of every message created in `(after, until]` into `message_search` and
/// moves the mark from `after` to `until`, in one statement (nothing is copied when the
/// mark is no longer at `after`). Returns rows added.
pub async fn index(client: &impl GenericClient, after: Timestamp, until: Timestamp) -> Result<u64> {
    let stmt = client
        .prepare_cached(
            "WITH moved AS (
                 UPDATE search_progress SET indexed_until = $2 WHERE indexed_until = $1
                 RETURNING 1
             ), added AS (
                 INSERT INTO message_search (message_id, conversation_id, created_at, content)
                 SELECT m.id, m.conversation_id, m.created_at, m.content FROM messages m
                 WHERE m.created_at > $1 AND m.created_at <= $2
                   AND m.content IS NOT NULL AND m.content <> ''
                   AND EXISTS (SELECT 1 FROM moved)
                 ON CONFLICT DO NOTHING
                 RETURNING 1
             )
             SELECT count(*) FROM added",
        )
        .await?;
    let added: i64 = client.query_one(&stmt, &[&after, &until]).await?.get(0);
    Ok(added as u64)
}

/// Summarizes the new page ranges of the `created_at` BRIN index of every `messages`
/// partition, waiting at most `lock_timeout_ms` for each (autovacuum holds the same lock
/// while it works on a partition). Without this, pages written since a partition's last
/// vacuum stay unsummarized and every scan by time reads all of them. Run it in a
/// savepoint: it fails when the lock is not free, and needs to own the table.
pub async fn summarize_recent(client: &impl GenericClient, lock_timeout_ms: i64) -> Result<i64> {
    client
        .batch_execute(&format!("SET LOCAL lock_timeout = {lock_timeout_ms}"))
        .await?;
    let stmt = client
        .prepare_cached(
            "SELECT COALESCE(sum(brin_summarize_new_values(relid)), 0)::int8
             FROM pg_partition_tree('idx_msg_created_brin') WHERE isleaf",
        )
        .await?;
    Ok(client.query_one(&stmt, &[]).await?.get(0))
}

/// `application_name` of a straggler sweep's transactions, which [`progress`] does not
/// wait for (a sweep writes no messages, and one can take seconds).
pub const SWEEP_APPLICATION: &str = "dinq-message search sweep";

/// Adds the text of messages created in `(from, until]`, and at or before the mark, that
/// `message_search` lacks (stragglers: committed after the mark had passed their time).
/// Returns rows added and the mark.
pub async fn sweep(
    client: &impl GenericClient,
    from: Timestamp,
    until: Timestamp,
) -> Result<(u64, Timestamp)> {
    client
        .batch_execute(&format!(
            "SET LOCAL application_name = '{SWEEP_APPLICATION}'"
        ))
        .await?;
    let stmt = client
        .prepare_cached(
            "WITH hw AS (SELECT indexed_until AS t FROM search_progress),
             added AS (
                 INSERT INTO message_search (message_id, conversation_id, created_at, content)
                 SELECT m.id, m.conversation_id, m.created_at, m.content FROM messages m
                 WHERE m.created_at > $1 AND m.created_at <= $2
                   AND m.created_at <= (SELECT t FROM hw)
                   AND m.content IS NOT NULL AND m.content <> ''
                   AND NOT EXISTS (SELECT 1 FROM message_search s WHERE s.message_id = m.id)
                 ON CONFLICT DO NOTHING
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM added), (SELECT t FROM hw)",
        )
        .await?;
    let row = client.query_one(&stmt, &[&from, &until]).await?;
    Ok((row.get::<_, i64>(0) as u64, row.get(1)))
}

/// Claims the straggler sweep when it is due (`swept_at` more than `every_s` ago): records
/// it as run and returns where it starts, `window_s` before the mark.
pub async fn claim_sweep(
    client: &impl GenericClient,
    every_s: f64,
    window_s: f64,
) -> Result<Option<Timestamp>> {
    let stmt = client
        .prepare_cached(
            "UPDATE search_progress SET swept_at = now()
             WHERE swept_at < now() - $1::float8 * interval '1 second'
             RETURNING indexed_until - $2::float8 * interval '1 second'",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&every_s, &window_s])
        .await?
        .map(|r| r.get(0)))
}
