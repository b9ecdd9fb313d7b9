//! Conversation export (issue 19 §6): every message of a conversation, oldest first, as
//! NDJSON (one history item per line, recalled ones without their content), streamed.
//!
//! Constant memory: a task reads one page of [`PAGE`] messages at a time by seq (keyset,
//! so a page deep in a long conversation costs what the first does), turns it into one
//! chunk of lines and hands it to a channel of [`CHUNKS_AHEAD`]; it waits there while the
//! client is slow, holding no PostgreSQL connection between pages. A client that goes
//! away drops the channel and the task stops at its next chunk. The export ends at the
//! conversation's last seq when it started, so a busy conversation cannot keep it going;
//! membership is checked then, on the primary, and the pages are read where history pages
//! are (the read replica when there is one). A page that comes back short of that last
//! seq is read again from the primary, so a lagging replica cannot end an export early
//! with its tail missing.

use bytes::Bytes;
use tokio::sync::mpsc;

use super::Services;
use super::events::MessageObject;
use crate::error::{Error, Result};
use crate::model::{ConversationId, Message, UserId};
use crate::store::{self, Store};

/// Messages read per query, and per chunk of the answer.
pub const PAGE: i64 = 500;

/// Chunks ready ahead of the client.
pub const CHUNKS_AHEAD: usize = 1;

/// The lines of `messages`: each a history item and a newline.
pub fn lines(messages: &[Message]) -> Bytes {
    let mut out = Vec::with_capacity(messages.len() * 256);
    for m in messages {
        serde_json::to_writer(&mut out, &MessageObject::from(m)).expect("a message serializes");
        out.push(b'\n');
    }
    Bytes::from(out)
}

impl Services {
    /// `GET /conversations/:id/export[?after_seq=]`: for an active member (`not_member`
    /// otherwise), the messages after `after_seq` up to the conversation's last seq now, as
    /// chunks of NDJSON. A failure after the first chunk arrives as an `Err` chunk.
    pub async fn export_conversation(
        &self,
        user: UserId,
        conversation: ConversationId,
        after_seq: i64,
    ) -> Result<mpsc::Receiver<Result<Bytes>>> {
        let last_seq = {
            let db = self.store.conn().await?;
            store::listing::member_last_seq(&db, conversation, user).await?
        }
        .ok_or_else(Error::not_member)?;
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        tokio::spawn(produce(
            [self.reader.clone(), self.store.clone()],
            conversation,
            after_seq,
            last_seq,
            tx,
        ));
        Ok(rx)
    }
}

/// One page of an export: from `reader`, or when that comes back short of `upto` (a
/// replica behind the primary), from `primary`.
async fn page(
    [reader, primary]: &[Store; 2],
    conversation: ConversationId,
    after: i64,
    upto: i64,
) -> Result<Vec<Message>> {
    let read = |from: &Store| {
        let from = from.clone();
        async move {
            let db = from.conn().await?;
            store::messages::range(&db, conversation, after, upto, PAGE).await
        }
    };
    let messages = read(reader).await?;
    let reached = messages.last().map_or(after, |m| m.seq);
    if (messages.len() as i64) < PAGE && reached < upto {
        return read(primary).await;
    }
    Ok(messages)
}

/// Reads and sends the pages of one export until the end, an error, or the client leaving.
async fn produce(
    stores: [Store; 2],
    conversation: ConversationId,
    mut after: i64,
    upto: i64,
    tx: mpsc::Sender<Result<Bytes>>,
) {
    while after < upto {
        let page = page(&stores, conversation, after, upto).await;
        let messages = match page {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(%conversation, after, error = %e, "export cut short");
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let Some(last) = messages.last() else {
            return;
        };
        after = last.seq;
        metrics::counter!(crate::metrics::EXPORTED_MESSAGES).increment(messages.len() as u64);
        if tx.send(Ok(lines(&messages))).await.is_err() {
            return; // the client went away
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MessageId, Timestamp};

    #[test]
    fn one_history_item_per_line() {
        let conversation = ConversationId::new_v4();
        let message = |seq: i64, recalled: bool| Message {
            id: MessageId::new_v4(),
            conversation_id: conversation,
            seq,
            sender_id: UserId::new_v4(),
            message_type: "text".into(),
            content: Some(format!("line\n{seq}")),
            metadata: None,
            reply_to_message_id: None,
            is_recalled: recalled,
            recalled_at: recalled.then_some(Timestamp(5)),
            edited_at: None,
            created_at: Timestamp(1),
            client_msg_id: None,
            forwarded_from: None,
        };
        let messages = [message(1, false), message(2, true)];
        let out = lines(&messages);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.ends_with('\n'));
        let items: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(items.len(), 2, "a newline in content stays inside its line");
        for (item, m) in items.iter().zip(&messages) {
            assert_eq!(*item, serde_json::to_value(MessageObject::from(m)).unwrap());
        }
        assert_eq!(items[0]["content"], "line\n1");
        assert!(items[1].get("content").is_none());
        assert_eq!(items[1]["is_recalled"], true);
    }
}
