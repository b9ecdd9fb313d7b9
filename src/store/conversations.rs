//! `conversations` rows and their active members: private-pair creation, the row locks and
//! counters of the send transaction, member lists.

use deadpool_postgres::GenericClient;

use crate::error::Result;
use crate::model::{ConversationId, ConversationKind, MessageId, Role, Timestamp, UserId};

/// The unique key of the private conversation of two users: `"<low>:<high>"`.
pub fn private_key(a: UserId, b: UserId) -> String {
    let (a, b) = (a.to_string(), b.to_string());
    if a <= b {
        format!("{a}:{b}")
    } else {
        format!("{b}:{a}")
    }
}

/// The private conversation of `a` and `b`, created with both as members when it does not
/// exist. Safe under concurrency: the unique `private_key` makes exactly one. Returns the id
/// and whether this call created it.
pub async fn get_or_create_private(
    client: &mut deadpool_postgres::Object,
    a: UserId,
    b: UserId,
) -> Result<(ConversationId, bool)> {
    let key = private_key(a, b);
    let find = client
        .prepare_cached("SELECT id FROM conversations WHERE private_key = $1")
        .await?;
    if let Some(row) = client.query_opt(&find, &[&key]).await? {
        return Ok((row.get(0), false));
    }
    let tx = client.transaction().await?;
    let id = ConversationId::now_v7();
    let inserted = tx
        .query_opt(
            "INSERT INTO conversations (id, conversation_type, private_key, created_at, updated_at)
             VALUES ($1, 'private', $2, now(), now())
             ON CONFLICT (private_key) DO NOTHING RETURNING id",
            &[&id, &key],
        )
        .await?;
    if inserted.is_some() {
        tx.execute(
            "INSERT INTO conversation_members (conversation_id, user_id, role, joined_at)
             VALUES ($1, $2, 'member', now()), ($1, $3, 'member', now())",
            &[&id, &a, &b],
        )
        .await?;
        tx.commit().await?;
        return Ok((id, true));
    }
    tx.rollback().await?;
    // Someone else created it between our look-up and our insert; it is committed now.
    let row = client.query_one(&find, &[&key]).await?;
    Ok((row.get(0), false))
}

/// A conversation row locked by the send transaction.
#[derive(Debug, Clone)]
pub struct Locked {
    /// Conversation id.
    pub id: ConversationId,
    /// Private or group.
    pub kind: ConversationKind,
    /// Highest seq handed out.
    pub last_seq: i64,
    /// Bumped by every membership change.
    pub members_version: i64,
    /// First-message limit: who spoke first (private only).
    pub first_sender_id: Option<UserId>,
    /// First-message limit: the other side has written back.
    pub replied: bool,
    /// Private conversations with a pair key: `(blocker, blocked)` blocks between the two.
    pub blocks: Vec<(UserId, UserId)>,
    /// A private conversation without a pair key (only old rows): blocks must be looked up.
    pub needs_block_lookup: bool,
    /// Time of its newest message (so new ones are stamped later, in seq order).
    pub last_message_at: Option<Timestamp>,
}

/// Locks the rows of `ids` (in id order, so concurrent batches cannot deadlock) and returns
/// them with the transaction's timestamp and, for private conversations, the blocks
/// between their two members (read in the same round trip).
pub async fn lock_for_send(
    client: &impl GenericClient,
    ids: &[ConversationId],
) -> Result<(Vec<Locked>, Timestamp)> {
    let stmt = client
        .prepare_cached(
            "SELECT c.id, c.conversation_type, c.last_seq, c.members_version, c.first_sender_id,
                    c.replied, now(), c.private_key,
                    CASE WHEN c.private_key IS NULL THEN FALSE ELSE EXISTS (
                        SELECT 1 FROM user_relationships r WHERE r.relationship_type = 'blocked'
                          AND r.user_id = split_part(c.private_key, ':', 1)::uuid
                          AND r.target_user_id = split_part(c.private_key, ':', 2)::uuid) END,
                    CASE WHEN c.private_key IS NULL THEN FALSE ELSE EXISTS (
                        SELECT 1 FROM user_relationships r WHERE r.relationship_type = 'blocked'
                          AND r.user_id = split_part(c.private_key, ':', 2)::uuid
                          AND r.target_user_id = split_part(c.private_key, ':', 1)::uuid) END,
                    c.last_message_at
             FROM conversations c WHERE c.id = ANY($1) ORDER BY c.id FOR UPDATE OF c",
        )
        .await?;
    let rows = client.query(&stmt, &[&ids]).await?;
    let now = match rows.first() {
        Some(r) => r.get(6),
        None => Timestamp::now(),
    };
    let locked = rows
        .iter()
        .map(|r| Locked {
            id: r.get(0),
            kind: ConversationKind::parse(r.get(1)),
            last_seq: r.get(2),
            members_version: r.get(3),
            first_sender_id: r.get(4),
            replied: r.get(5),
            blocks: {
                let key: Option<String> = r.get(7);
                let pair = key.as_deref().and_then(|k| {
                    let (a, b) = k.split_once(':')?;
                    Some((a.parse::<UserId>().ok()?, b.parse::<UserId>().ok()?))
                });
                match pair {
                    Some((low, high)) => [
                        (r.get::<_, bool>(8), (low, high)),
                        (r.get::<_, bool>(9), (high, low)),
                    ]
                    .into_iter()
                    .filter_map(|(blocked, p)| blocked.then_some(p))
                    .collect(),
                    None => Vec::new(),
                }
            },
            last_message_at: r.get(10),
            needs_block_lookup: {
                let key: Option<String> = r.get(7);
                key.is_none() && ConversationKind::parse(r.get(1)) == ConversationKind::Private
            },
        })
        .collect();
    Ok((locked, now))
}

/// Active members of each conversation in `ids`: `(conversation, user, role)`.
pub async fn active_members(
    client: &impl GenericClient,
    ids: &[ConversationId],
) -> Result<Vec<(ConversationId, UserId, Role)>> {
    let stmt = client
        .prepare_cached(
            "SELECT conversation_id, user_id, role FROM conversation_members
             WHERE conversation_id = ANY($1) AND left_at IS NULL",
        )
        .await?;
    let rows = client.query(&stmt, &[&ids]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let role: Option<String> = r.get(2);
            (
                r.get(0),
                r.get(1),
                role.as_deref()
                    .and_then(Role::parse)
                    .unwrap_or(Role::Member),
            )
        })
        .collect())
}

/// Members version and kind of one conversation (unlocked read), if it exists.
pub async fn version(
    client: &impl GenericClient,
    id: ConversationId,
) -> Result<Option<(i64, ConversationKind)>> {
    let stmt = client
        .prepare_cached(
            "SELECT members_version, conversation_type FROM conversations WHERE id = $1",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&id])
        .await?
        .map(|r| (r.get(0), ConversationKind::parse(r.get(1)))))
}

/// The new state of a conversation after a batch of sends.
#[derive(Debug, Clone)]
pub struct AfterSend {
    /// Conversation id.
    pub id: ConversationId,
    /// New highest seq.
    pub last_seq: i64,
    /// The newest message.
    pub last_message_id: MessageId,
    /// Its time.
    pub last_message_at: Timestamp,
    /// First-message limit state.
    pub first_sender_id: Option<UserId>,
    /// First-message limit state.
    pub replied: bool,
}
