-- 0006: messages becomes a partitioned table, ready to grow past one table's comfort.
--
-- Partition key: `bucket`, the last byte of the conversation id (0-255), in 4 ranges of
-- 64 buckets each (messages_p00 .. messages_p03). Why by conversation and not by time:
--   * every hot query names one conversation (send, history pages, offline delivery, gap
--     repair, read cursors, the last-message join), so each touches one partition; by time,
--     the history of an old conversation would span every partition and (conversation_id,
--     seq) could not stay unique without the time column;
--   * chat history is kept, not expired, so time partitions would not be dropped anyway;
--   * conversation ids (UUIDv4 from the original, UUIDv7 from dinq-message) end in random
--     bits, so buckets fill evenly; ranges of buckets can later be split (or moved to
--     another server) without rehashing rows.
-- Why 4 and not more: on PostgreSQL 15 every statement pays per partition it may touch
-- (a batched insert opens each partition its rows go to; a cached plan locks every
-- partition and index before pruning). Measured on the 2-core box with pgbench, against
-- the unpartitioned table: 1 partition -0% inserts / -10% point reads, 4 partitions -7% /
-- -32%, 16 partitions -24% / -56%. Split a range when one partition grows too big for
-- comfortable vacuum and index maintenance (README "PostgreSQL growth").
-- Message ids carry their bucket: a new message id is a UUIDv7 whose last byte is its
-- conversation's bucket, so the lookups by message id alone (recall, the first-message
-- reply check) go to one partition too. Ids written before this migration do not; lookups
-- fall back to every partition when the id's own bucket does not hold it.
--
-- Unique constraints on a partitioned table must contain the partition key, so the
-- primary key becomes (id, bucket) and (conversation_id, seq) becomes
-- (conversation_id, seq, bucket) (the same uniqueness: bucket follows from the
-- conversation). The per-sender client_msg_id key cannot be enforced across partitions,
-- so it moves to its own table, message_keys, written in the same statement as the
-- message. message_search referenced messages(id) and keeps no foreign key now: a
-- reference to conversations would take a key-share lock on the conversation row for
-- every indexed message, and the writer holds those rows FOR UPDATE (measured: deadlocks
-- and a throughput collapse under load). Search joins messages, so a search row whose
-- message is gone is never returned.
--
-- The conversion copies the table (an exclusive lock for its duration; see README
-- "PostgreSQL growth" for the rate and for doing it ahead of time on a large database).

CREATE OR REPLACE FUNCTION msg_bucket(uuid) RETURNS smallint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT get_byte(uuid_send($1), 15)::smallint $$;

ALTER TABLE message_search DROP CONSTRAINT IF EXISTS message_search_message_id_fkey;

ALTER TABLE messages RENAME TO messages_unpartitioned;
ALTER TABLE messages_unpartitioned RENAME CONSTRAINT messages_pkey TO messages_unpartitioned_pkey;
ALTER TABLE messages_unpartitioned
    RENAME CONSTRAINT messages_conversation_seq_key TO messages_unpartitioned_conversation_seq_key;
ALTER TABLE messages_unpartitioned
    RENAME CONSTRAINT messages_conversation_id_fkey TO messages_unpartitioned_conversation_id_fkey;
ALTER INDEX idx_msg_created_brin RENAME TO idx_msg_unpartitioned_created_brin;

CREATE TABLE messages (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    sender_id UUID NOT NULL,
    message_type VARCHAR(20) NOT NULL,
    content TEXT,
    metadata JSONB,
    status VARCHAR(20) DEFAULT 'sent',
    reply_to_message_id UUID,
    is_recalled BOOLEAN DEFAULT FALSE,
    recalled_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ DEFAULT now(),
    seq BIGINT NOT NULL,
    client_msg_id VARCHAR(64),
    bucket SMALLINT NOT NULL,
    CONSTRAINT messages_bucket_check CHECK (bucket = msg_bucket(conversation_id)),
    CONSTRAINT messages_pkey PRIMARY KEY (id, bucket),
    CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq, bucket)
) PARTITION BY RANGE (bucket);

DO $$
BEGIN
    FOR i IN 0..3 LOOP
        EXECUTE format('CREATE TABLE messages_p%s PARTITION OF messages FOR VALUES FROM (%s) TO (%s)',
                       lpad(i::text, 2, '0'), i * 64, i * 64 + 64);
    END LOOP;
END $$;

CREATE INDEX idx_msg_created_brin ON messages USING BRIN (created_at);

INSERT INTO messages (id, conversation_id, sender_id, message_type, content, metadata, status,
                      reply_to_message_id, is_recalled, recalled_at, created_at, seq,
                      client_msg_id, bucket)
SELECT id, conversation_id, sender_id, message_type, content, metadata, status,
       reply_to_message_id, is_recalled, recalled_at, created_at, seq, client_msg_id,
       msg_bucket(conversation_id)
FROM messages_unpartitioned;

-- Idempotency keys: one per (sender, client_msg_id), pointing at the stored message.
CREATE TABLE message_keys (
    sender_id UUID NOT NULL,
    client_msg_id VARCHAR(64) NOT NULL,
    message_id UUID NOT NULL,
    conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    PRIMARY KEY (sender_id, client_msg_id)
);

INSERT INTO message_keys (sender_id, client_msg_id, message_id, conversation_id)
SELECT sender_id, client_msg_id, id, conversation_id
FROM messages_unpartitioned WHERE client_msg_id IS NOT NULL
ON CONFLICT DO NOTHING;

DROP TABLE messages_unpartitioned;
