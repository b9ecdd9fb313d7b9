-- 0010: a message's sender may edit its text (issue 19 §5).
--
-- messages.edited_at: when the text was last edited, NULL for a message never edited.
-- The edit rewrites content in place (one row, found by id and bucket like a recall) and,
-- in the same transaction, the message's row of message_search, so search finds the new
-- words and no longer the old ones. Nothing is written on the send path: the column is
-- nullable without a default, so adding it rewrites no partition and an insert that does
-- not name it stores NULL.

ALTER TABLE messages ADD COLUMN IF NOT EXISTS edited_at TIMESTAMPTZ;
