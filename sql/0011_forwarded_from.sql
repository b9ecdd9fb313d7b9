-- 0010: forwarded messages (POST /messages/forward, issue 19 §3).
--
-- A forwarded message is an ordinary message of its target conversation (its own id, seq,
-- sender and time) that keeps the source's type, content and metadata and names where it
-- came from: the source message's id, sender and created_at. Three nullable columns, set
-- only on forwarded messages: adding them is a catalogue change (no rewrite of the
-- partitions), and a message that is not forwarded stores NULLs, as before, at no cost.
-- No index: nothing looks messages up by their source.

ALTER TABLE messages
    ADD COLUMN IF NOT EXISTS forwarded_message_id UUID,
    ADD COLUMN IF NOT EXISTS forwarded_sender_id UUID,
    ADD COLUMN IF NOT EXISTS forwarded_created_at TIMESTAMPTZ;
