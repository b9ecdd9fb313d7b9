-- 0008: search indexing from a stored high-water mark, by one indexer for the cluster.
--
-- Until now every node queued its own committed messages for message_search and wrote
-- them about 100 ms later, and every node swept the last minutes every 30 s for what a
-- crashed node had missed. Now one node at a time (a transaction-level advisory lock)
-- copies into message_search every message created in (indexed_until, a safe bound] and
-- moves indexed_until in the same transaction; search reads message_search up to
-- indexed_until and the messages table itself after it, so a message is searchable as
-- soon as it is committed. swept_at paces the rare straggler sweep (README "Search").
--
-- Starting point: a minute back, so that messages the previous nodes were still indexing
-- are taken again (rows already there are left alone); swept_at in the past, so the first
-- indexer also runs the straggler sweep over the ten minutes before that.

CREATE TABLE IF NOT EXISTS search_progress (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    indexed_until TIMESTAMPTZ NOT NULL,
    swept_at TIMESTAMPTZ NOT NULL
);

INSERT INTO search_progress (indexed_until, swept_at)
VALUES (now() - interval '1 minute', '-infinity')
ON CONFLICT DO NOTHING;
