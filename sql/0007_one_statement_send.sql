-- 0007: the one-statement send.
--
-- The writer now writes a batch whose conversations it knows (members, first-message state,
-- no block) as BEGIN + one statement + COMMIT, sent together in one round trip: the
-- statement bumps each conversation's counters, inserts the messages with the seqs and times
-- that follow, their idempotency keys and the senders' read cursors, and checks under the
-- row locks it takes that the node's view was right. When it was not (another node changed
-- the conversation, a client_msg_id was used before, a reply names a message of another
-- conversation) dinq_assert raises SQLSTATE DQ001, the transaction rolls back and the
-- writer runs the batch the careful way (row locks first, then the checks).
--
-- The foreign keys from messages and message_keys to conversations go: each cost a
-- key-share lock on the conversation row per inserted row (about 10 µs a message, measured),
-- and the send statement itself writes that row, so the reference cannot be missing.
-- Conversations are never deleted.

ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_conversation_id_fkey;
ALTER TABLE message_keys DROP CONSTRAINT IF EXISTS message_keys_conversation_id_fkey;

CREATE OR REPLACE FUNCTION dinq_assert(ok boolean, what text) RETURNS boolean
    LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION USING ERRCODE = 'DQ001', MESSAGE = what;
    END IF;
    RETURN TRUE;
END $$;
