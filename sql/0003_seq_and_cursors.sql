-- 0003: what DESIGN.md needs on top of the original schema.
--
--  * messages.seq: a per-conversation counter, unique with conversation_id; the conversation
--    row holds last_seq and hands out the next numbers in the sending transaction.
--  * conversation_members.read_seq: unread = conversations.last_seq - read_seq (derived,
--    never counted). delivered_seq: the offline-delivery cursor. hidden_seq: the member hid
--    the conversation at that seq; it stays hidden while hidden_seq >= last_seq.
--  * conversations.private_key: "<low uuid>:<high uuid>" for private conversations, unique,
--    so concurrent first messages make exactly one conversation.
--  * conversations.first_sender_id / replied: the first-message limit in O(1).
--  * conversations.members_version: bumped by every membership change, so a node knows
--    when its cached member list is stale.
--  * messages.client_msg_id: unique per sender; a retried send returns the original.
--
-- The original columns conversation_members.unread_count and is_hidden are kept for
-- schema compatibility but no longer maintained: their meaning moved to read_seq and
-- hidden_seq (backfilled below so old unread counts and hidden flags carry over).

ALTER TABLE conversations
    ADD COLUMN IF NOT EXISTS last_seq BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS members_version BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS private_key TEXT,
    ADD COLUMN IF NOT EXISTS first_sender_id UUID,
    ADD COLUMN IF NOT EXISTS replied BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE messages
    ADD COLUMN IF NOT EXISTS seq BIGINT,
    ADD COLUMN IF NOT EXISTS client_msg_id VARCHAR(64);

ALTER TABLE conversation_members
    ADD COLUMN IF NOT EXISTS read_seq BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS delivered_seq BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS hidden_seq BIGINT;

-- Backfill seq in created_at order (id breaks ties).
WITH numbered AS (
    SELECT id, row_number() OVER (PARTITION BY conversation_id ORDER BY created_at, id) AS n
    FROM messages
)
UPDATE messages m SET seq = numbered.n FROM numbered WHERE m.id = numbered.id;

ALTER TABLE messages ALTER COLUMN seq SET NOT NULL;
ALTER TABLE messages ADD CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS messages_sender_client_msg_id_key
    ON messages(sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;

UPDATE conversations c SET last_seq = s.last_seq
FROM (SELECT conversation_id, max(seq) AS last_seq FROM messages GROUP BY conversation_id) s
WHERE c.id = s.conversation_id;

-- Old unread counts become read cursors; everything old counts as delivered (the
-- original's offline queue lived in Redis and is not carried over).
UPDATE conversation_members cm SET
    read_seq = GREATEST(0, c.last_seq - COALESCE(cm.unread_count, 0)),
    delivered_seq = c.last_seq,
    hidden_seq = CASE WHEN cm.is_hidden THEN c.last_seq END
FROM conversations c
WHERE c.id = cm.conversation_id;

-- First-message limit state of existing private conversations.
UPDATE conversations c SET first_sender_id = f.sender_id
FROM (
    SELECT DISTINCT ON (conversation_id) conversation_id, sender_id
    FROM messages ORDER BY conversation_id, seq
) f
WHERE c.id = f.conversation_id AND c.conversation_type = 'private';

UPDATE conversations c SET replied = TRUE
WHERE c.conversation_type = 'private'
  AND EXISTS (
      SELECT 1 FROM messages m
      WHERE m.conversation_id = c.id AND m.sender_id <> c.first_sender_id
  );

-- One private conversation per pair. The original had no such constraint, so an old
-- database may hold duplicates: the oldest keeps the key, the others stay readable by id.
WITH pairs AS (
    SELECT c.id, c.created_at,
           min(cm.user_id::text) || ':' || max(cm.user_id::text) AS key
    FROM conversations c
    JOIN conversation_members cm ON cm.conversation_id = c.id
    WHERE c.conversation_type = 'private'
    GROUP BY c.id, c.created_at
    HAVING count(*) = 2 AND count(DISTINCT cm.user_id) = 2
), ranked AS (
    SELECT id, key, row_number() OVER (PARTITION BY key ORDER BY created_at, id) AS n FROM pairs
)
UPDATE conversations c SET private_key = ranked.key
FROM ranked WHERE c.id = ranked.id AND ranked.n = 1;

ALTER TABLE conversations ADD CONSTRAINT conversations_private_key_key UNIQUE (private_key);

-- Message search: trigram index so ILIKE '%term%' works for Chinese and English alike.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX IF NOT EXISTS idx_msg_content_trgm ON messages USING GIN (content gin_trgm_ops)
    WHERE is_recalled = FALSE;

-- The offline drain and the conversation list read a user's active memberships.
CREATE INDEX IF NOT EXISTS idx_member_user_active_cursor
    ON conversation_members(user_id) INCLUDE (conversation_id, read_seq, delivered_seq, hidden_seq)
    WHERE left_at IS NULL;

-- The original ignored enable_block_feature (seeded 'false') and always enforced blocks.
-- dinq-message honours the setting, so an upgraded database keeps blocks enforced.
UPDATE system_settings SET setting_value = 'true', updated_at = now()
WHERE setting_key = 'enable_block_feature' AND setting_value = 'false';
