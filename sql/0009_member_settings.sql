-- 0009: per-member conversation settings and when a member joined, by seq.
--
--  * conversation_members.is_pinned: the member pinned the conversation (POST
--    /conversations/:id/pin and /unpin); pinned conversations come first in the member's
--    list. is_muted (the original's column, never changed by any route until now) is set
--    by /mute and /unmute; muted conversations stay out of the list's total_unread.
--  * conversation_members.joined_seq: the conversation's last_seq when the member joined,
--    so a message belongs to the member's time in the conversation exactly when its seq is
--    greater (group read status leaves out members who joined after a message). Rows that
--    exist before this migration keep NULL and are judged by joined_at against the
--    message's created_at. New rows of new conversations get 0 from the default; members
--    added to a group later are given the seq explicitly.
--
-- Neither is written by the send path, and neither is indexed: the list reads a member's
-- rows by user already, and an index on a member column would cost the hot path its HOT
-- updates of read and delivery cursors (0004).

ALTER TABLE conversation_members
    ADD COLUMN IF NOT EXISTS is_pinned BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN IF NOT EXISTS joined_seq BIGINT;

ALTER TABLE conversation_members ALTER COLUMN joined_seq SET DEFAULT 0;
