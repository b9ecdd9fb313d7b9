//! Plain value types shared by every layer: timestamps, typed ids ([`UserId`],
//! [`ConversationId`], [`MessageId`]), the [`MessageType`], and small records (a stored
//! message, what lists read, profiles, templates).
//!
//! [`Timestamp`] is microseconds since the Unix epoch; it maps to PostgreSQL `timestamptz`
//! without a date library and serializes as RFC 3339 UTC (`2026-01-02T03:04:05.123456Z`,
//! trailing zeros of the fraction trimmed, as the original's Go `RFC3339Nano`).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use serde::{Serialize, Serializer};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, accepts, to_sql_checked};

mod ids;
mod listing;
mod message_type;
mod profile;
mod template;

pub use ids::{ConversationId, MessageId, UserId};
pub use listing::{ConversationRow, LastMessage, MemberRow, Page};
pub use message_type::MessageType;
pub use profile::Profile;
pub use template::Template;

/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A point in time with microsecond precision, always UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_micros() as i64)
    }

    /// Microseconds since the Unix epoch.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }
}

/// Days since 1970-01-01 to a (year, month, day) civil date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, mo, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        )?;
        if micros != 0 {
            let mut frac = format!("{micros:06}");
            while frac.ends_with('0') {
                frac.pop();
            }
            write!(f, ".{frac}")?;
        }
        f.write_str("Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'a> FromSql<'a> for Timestamp {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into().map_err(|_| "invalid timestamp length")?;
        Ok(Timestamp(
            i64::from_be_bytes(bytes).saturating_add(PG_EPOCH_OFFSET_MICROS),
        ))
    }

    accepts!(TIMESTAMPTZ, TIMESTAMP);
}

impl ToSql for Timestamp {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&(self.0 - PG_EPOCH_OFFSET_MICROS).to_be_bytes());
        Ok(IsNull::No)
    }

    accepts!(TIMESTAMPTZ, TIMESTAMP);
    to_sql_checked!();
}

/// The two kinds of conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// Two users, one conversation per pair.
    Private,
    /// A named group with roles.
    Group,
}

impl ConversationKind {
    /// The `conversation_type` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Private => "private",
            ConversationKind::Group => "group",
        }
    }

    /// Parses a `conversation_type` value (anything but `group` is private, as stored).
    pub fn parse(s: &str) -> Self {
        if s == "group" {
            ConversationKind::Group
        } else {
            ConversationKind::Private
        }
    }
}

/// A member's role in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Plain member.
    Member,
    /// May add and remove members.
    Admin,
    /// One per group; may change roles.
    Owner,
}

impl Role {
    /// The `role` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses a role name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A stored message, as read from `messages`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// UUIDv7 for new messages (UUIDv4 for rows of the original service).
    pub id: MessageId,
    /// Its conversation.
    pub conversation_id: ConversationId,
    /// Position in the conversation, from 1.
    pub seq: i64,
    /// Who sent it.
    pub sender_id: UserId,
    /// `text`, `image`, `video` or `emoji` (old rows may hold anything).
    pub message_type: MessageType,
    /// Text, if any.
    pub content: Option<String>,
    /// Free JSON object, if any.
    pub metadata: Option<serde_json::Value>,
    /// Message being replied to.
    pub reply_to_message_id: Option<MessageId>,
    /// Recalled by its sender.
    pub is_recalled: bool,
    /// When it was recalled.
    pub recalled_at: Option<Timestamp>,
    /// When its text was last edited by its sender.
    pub edited_at: Option<Timestamp>,
    /// Commit time.
    pub created_at: Timestamp,
    /// The sender's idempotency key, if it gave one.
    pub client_msg_id: Option<String>,
    /// The message this one was forwarded from, if it was.
    pub forwarded_from: Option<ForwardedFrom>,
}

/// Where a forwarded message came from: the source message's id, sender and time
/// (`forwarded_from` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ForwardedFrom {
    /// The source message.
    pub message_id: MessageId,
    /// Its sender.
    pub sender_id: UserId,
    /// When it was sent.
    pub created_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp(1_700_000_000_123_450).to_string(),
            "2023-11-14T22:13:20.12345Z"
        );
        assert_eq!(
            Timestamp(951_782_400_000_001).to_string(),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999999Z");
    }

    #[test]
    fn sql_round_trip() {
        let t = Timestamp(1_764_000_000_654_321);
        let mut buf = BytesMut::new();
        t.to_sql(&Type::TIMESTAMPTZ, &mut buf).unwrap();
        assert_eq!(Timestamp::from_sql(&Type::TIMESTAMPTZ, &buf).unwrap(), t);
    }
}
