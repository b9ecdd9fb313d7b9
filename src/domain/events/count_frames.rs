//! `conversation_update` and `unread_count_update` from a template: serialized once per
//! event on a node, then each recipient's unread count is put in, byte for byte what serde
//! gives (the test below compares them).

use bytes::Bytes;

use super::{conversation_update, unread_count_update};
use crate::model::{ConversationId, Timestamp};

/// `conversation_update` and `unread_count_update` for the recipients of one event, which
/// differ only by the unread count, their last field. Each is serialized once with serde
/// (count 0) and cut before the number; a recipient's frame is that prefix, its number and
/// `}}`, byte for byte what [`conversation_update`] and [`unread_count_update`] give.
/// Frames already made are kept for a few counts, since recipients often share one.
pub struct CountFrames {
    conversation_update: Template,
    unread_count_update: Template,
}

impl CountFrames {
    /// The templates for a conversation whose last message is as given.
    pub fn new(
        conversation_id: ConversationId,
        last_message_time: Option<Timestamp>,
        last_message_text: Option<&str>,
    ) -> CountFrames {
        CountFrames {
            conversation_update: Template::new(conversation_update(
                conversation_id,
                last_message_time,
                last_message_text,
                0,
            )),
            unread_count_update: Template::new(unread_count_update(conversation_id, 0)),
        }
    }

    /// `conversation_update` with `unread_count`.
    pub fn conversation_update(&mut self, unread_count: i64) -> Bytes {
        self.conversation_update.render(unread_count)
    }

    /// `unread_count_update` with `unread_count`.
    pub fn unread_count_update(&mut self, unread_count: i64) -> Bytes {
        self.unread_count_update.render(unread_count)
    }
}

/// Frames kept per template.
const RENDERED_KEPT: usize = 8;

/// A frame whose last field is a number: the bytes before it, and frames made so far.
struct Template {
    prefix: Vec<u8>,
    rendered: Vec<(i64, Bytes)>,
}

impl Template {
    /// From the frame serialized with 0 as its last field, which therefore ends `0}}`.
    fn new(zero: Bytes) -> Template {
        let prefix = zero
            .strip_suffix(b"0}}")
            .expect("the count is the frame's last field")
            .to_vec();
        Template {
            prefix,
            rendered: Vec::new(),
        }
    }

    fn render(&mut self, n: i64) -> Bytes {
        if let Some((_, frame)) = self.rendered.iter().find(|(m, _)| *m == n) {
            return frame.clone();
        }
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n).as_bytes();
        let mut frame = Vec::with_capacity(self.prefix.len() + digits.len() + 2);
        frame.extend_from_slice(&self.prefix);
        frame.extend_from_slice(digits);
        frame.extend_from_slice(b"}}");
        let frame = Bytes::from(frame);
        if self.rendered.len() < RENDERED_KEPT {
            self.rendered.push((n, frame.clone()));
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_frames_are_byte_identical_to_serde() {
        let conv = ConversationId::new_v4();
        let texts = [
            None,
            Some(""),
            Some("plain"),
            Some("quote \" backslash \\ slash / newline \n tab \t"),
            Some("control \u{1} \u{1f} del \u{7f} nul \u{0}"),
            Some("中文 emoji 😀 and [图片]"),
            Some("</script> & <b>"),
        ];
        let times = [None, Some(Timestamp(0)), Some(Timestamp(1_700_000_000_123))];
        let counts = [0, 1, 9, 10, 99, 12345, i64::MAX, -1, i64::MIN];
        for text in texts {
            for time in times {
                let mut t = CountFrames::new(conv, time, text);
                // Twice over, so the kept frames are checked too.
                for n in counts.iter().chain(counts.iter()) {
                    assert_eq!(
                        t.conversation_update(*n),
                        conversation_update(conv, time, text, *n),
                        "{text:?} {time:?} {n}"
                    );
                    assert_eq!(t.unread_count_update(*n), unread_count_update(conv, *n));
                }
            }
        }
    }
}
