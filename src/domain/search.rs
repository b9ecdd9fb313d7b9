//! Message search (PROTOCOL.md §3.4, DECISIONS.md "search"): a case-insensitive substring
//! of the content, with `%`, `_` and `\` in the term taken literally, only in
//! conversations the caller is an active member of, recalled messages left out.

use super::Services;
use crate::error::{Error, Result};
use crate::model::Message;
use crate::model::{ConversationId, UserId};
use crate::store;

/// The `ILIKE` pattern matching `term` anywhere, its wildcards escaped with `\`.
pub fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for ch in term.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

impl Services {
    /// `GET /messages/search`: newest first; `conversation` narrows it to one conversation
    /// the caller must be an active member of.
    pub async fn search_messages(
        &self,
        user: UserId,
        term: &str,
        conversation: Option<ConversationId>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Message>> {
        if let Some(c) = conversation {
            let db = self.store.conn().await?;
            if !store::search::is_active_member(&db, c, user).await? {
                return Err(Error::caller_not_member());
            }
        }
        // The search itself may run on the read replica (see README "PostgreSQL growth").
        let db = self.reader.conn().await?;
        // Under 3 characters the trigram index cannot help: a bounded scan of the newest
        // messages (store::search::SHORT_TERM_SCAN_PER_CONVERSATION), not a 400, since
        // two-character words are common in Chinese.
        let short = term.chars().count() < 3;
        store::search::messages(
            &db,
            user,
            &like_pattern(term),
            conversation,
            limit,
            offset,
            short,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcards_are_literal() {
        assert_eq!(super::like_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
        assert_eq!(super::like_pattern("你好"), "%你好%");
    }
}
