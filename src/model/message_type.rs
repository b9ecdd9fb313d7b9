//! The type of a message: `text`, `image`, `video` or `emoji`. A send must use one of
//! these; rows written by the original service may hold any string, which is read into
//! [`MessageType::Other`] and served back as it was stored.

use std::fmt;

use bytes::BytesMut;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// A message's type; stored and sent on the wire as its string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `text`: `content` required.
    Text,
    /// `image`: `metadata.url` (or `image_url`) required.
    Image,
    /// `video`: `metadata.url` (or `video_url`) required, size within the setting.
    Video,
    /// `emoji`: content or metadata.
    Emoji,
    /// Any other string: never accepted on a send, carried through reads of old rows.
    Other(String),
}

impl MessageType {
    /// The types a send may use.
    pub const KNOWN: [MessageType; 4] = [
        MessageType::Text,
        MessageType::Image,
        MessageType::Video,
        MessageType::Emoji,
    ];

    /// The type named `s` (`Other` for an unknown name).
    pub fn parse(s: &str) -> Self {
        match s {
            "text" => MessageType::Text,
            "image" => MessageType::Image,
            "video" => MessageType::Video,
            "emoji" => MessageType::Emoji,
            other => MessageType::Other(other.to_string()),
        }
    }

    /// The type's name, as stored and on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            MessageType::Text => "text",
            MessageType::Image => "image",
            MessageType::Video => "video",
            MessageType::Emoji => "emoji",
            MessageType::Other(s) => s,
        }
    }

    /// One of the four types a send may use.
    pub fn is_known(&self) -> bool {
        !matches!(self, MessageType::Other(_))
    }
}

/// The empty type: what a send that names none has, refused like any unknown type.
impl Default for MessageType {
    fn default() -> Self {
        MessageType::Other(String::new())
    }
}

impl From<&str> for MessageType {
    fn from(s: &str) -> Self {
        MessageType::parse(s)
    }
}

impl From<String> for MessageType {
    fn from(s: String) -> Self {
        match MessageType::parse(&s) {
            MessageType::Other(_) => MessageType::Other(s),
            known => known,
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MessageType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MessageType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(MessageType::from)
    }
}

impl<'a> FromSql<'a> for MessageType {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        <&str as FromSql>::from_sql(ty, raw).map(MessageType::parse)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as FromSql>::accepts(ty)
    }
}

impl ToSql for MessageType {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &Type) -> bool {
        <&str as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_kept() {
        for t in MessageType::KNOWN {
            assert_eq!(MessageType::parse(t.as_str()), t);
            assert!(t.is_known());
        }
        let old = MessageType::parse("file");
        assert_eq!(old, MessageType::Other("file".into()));
        assert_eq!(old.as_str(), "file");
        assert!(!old.is_known());
        assert_eq!(serde_json::to_value(&old).unwrap(), "file");
        let read: MessageType = serde_json::from_value("image".into()).unwrap();
        assert_eq!(read, MessageType::Image);
        assert!(!MessageType::default().is_known());
    }

    #[test]
    fn stored_as_text() {
        let mut buf = BytesMut::new();
        MessageType::Other("voice".into())
            .to_sql_checked(&Type::VARCHAR, &mut buf)
            .unwrap();
        assert_eq!(&buf[..], b"voice");
        assert_eq!(
            MessageType::from_sql(&Type::VARCHAR, &buf).unwrap(),
            MessageType::Other("voice".into())
        );
        assert_eq!(
            MessageType::from_sql(&Type::TEXT, b"emoji").unwrap(),
            MessageType::Emoji
        );
    }
}
