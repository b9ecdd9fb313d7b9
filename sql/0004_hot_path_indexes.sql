-- 0004: indexes for the way dinq-message reads, so that writes stay cheap.
--
-- The send path updates conversations (last_seq, last_message_*) and members' cursors
-- (read_seq, delivered_seq) for every batch. PostgreSQL can update a row in place (a HOT
-- update, no index writes) only when no indexed column changes and the page has room.
-- So: no index on a column the hot path changes, and fillfactor leaves room on each page.
-- Messages keep the indexes dinq-message reads through: (conversation_id, seq) for history
-- and delivery, the trigram index for search, the client_msg_id key and the primary key.
-- The original's other message indexes served queries dinq-message does not make
-- (ILIKE never used the tsvector index; seq orders a conversation).

DROP INDEX IF EXISTS idx_member_user_active_cursor;
DROP INDEX IF EXISTS idx_member_conv;
DROP INDEX IF EXISTS idx_member_user_not_hidden;
DROP INDEX IF EXISTS idx_conv_last_message_at;
DROP INDEX IF EXISTS idx_msg_search;
DROP INDEX IF EXISTS idx_msg_created;
DROP INDEX IF EXISTS idx_msg_conversation;
DROP INDEX IF EXISTS idx_msg_conversation_covering;
DROP INDEX IF EXISTS idx_msg_recall_check;
DROP INDEX IF EXISTS idx_msg_sender;

ALTER TABLE conversations SET (fillfactor = 70);
ALTER TABLE conversation_members SET (fillfactor = 70);
