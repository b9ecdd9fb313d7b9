-- 0005: message search gets its own table, filled asynchronously.
--
-- A trigram GIN index on messages made every send pay for search: at a few thousand
-- messages per second its maintenance (or its pending-list flushes, which stall the
-- inserting transaction) dominated PostgreSQL's time and the send latency's tail.
-- message_search holds the searchable text of each message, with the trigram index;
-- nodes fill it in batches shortly after the commit, and a periodic sweep adds any row a
-- crashed node did not write. Search therefore lags sends by about a second.

CREATE TABLE IF NOT EXISTS message_search (
    message_id UUID PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    conversation_id UUID NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    content TEXT NOT NULL
);

INSERT INTO message_search (message_id, conversation_id, created_at, content)
SELECT id, conversation_id, created_at, content FROM messages
WHERE content IS NOT NULL AND content <> ''
ON CONFLICT DO NOTHING;

CREATE INDEX IF NOT EXISTS idx_message_search_trgm ON message_search USING GIN (content gin_trgm_ops);
CREATE INDEX IF NOT EXISTS idx_message_search_conversation ON message_search (conversation_id, created_at DESC);
DROP INDEX IF EXISTS idx_msg_content_trgm;

-- The sweep finds recent messages cheaply: created_at follows insertion order.
CREATE INDEX IF NOT EXISTS idx_msg_created_brin ON messages USING BRIN (created_at);
