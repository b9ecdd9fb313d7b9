//! Typed ids of the things that cross modules: [`UserId`], [`ConversationId`] and
//! [`MessageId`]. Each is a UUID underneath (`#[repr(transparent)]`), and looks like one
//! everywhere outside Rust: JSON strings (serde transparent), PostgreSQL `uuid` (so a
//! `Vec<UserId>` binds as `uuid[]`), text in logs and Redis keys. What the type adds is
//! that a user id cannot be passed where a conversation id is wanted.

use std::fmt;
use std::str::FromStr;

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use uuid::Uuid;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        #[repr(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// The id of this UUID.
            pub const fn from_uuid(id: Uuid) -> Self {
                $name(id)
            }

            /// The UUID underneath.
            pub const fn as_uuid(self) -> Uuid {
                self.0
            }

            /// A new random (v4) id.
            pub fn new_v4() -> Self {
                $name(Uuid::new_v4())
            }

            /// A new time-ordered (v7) id.
            pub fn now_v7() -> Self {
                $name(Uuid::now_v7())
            }

            /// The all-zero id.
            pub const fn nil() -> Self {
                $name(Uuid::nil())
            }

            /// The UUID as a number (for sharding by id).
            pub const fn as_u128(&self) -> u128 {
                self.0.as_u128()
            }

            /// True for the all-zero id.
            pub const fn is_nil(&self) -> bool {
                self.0.is_nil()
            }

            /// The 16 bytes of the UUID.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// The id of 16 UUID bytes.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                $name(Uuid::from_bytes(bytes))
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                $name(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map($name)
            }
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(
                ty: &Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                Uuid::from_sql(ty, raw).map($name)
            }

            fn accepts(ty: &Type) -> bool {
                <Uuid as FromSql>::accepts(ty)
            }
        }

        impl ToSql for $name {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut BytesMut,
            ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.0.to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <Uuid as ToSql>::accepts(ty)
            }

            to_sql_checked!();
        }
    };
}

id! {
    /// A user (the `user_id` claim of a token).
    UserId
}

id! {
    /// A conversation, private or group.
    ConversationId
}

id! {
    /// A message: UUIDv7 for new messages, UUIDv4 for rows of the original service.
    MessageId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_like_a_uuid_everywhere() {
        let u = Uuid::new_v4();
        let id = UserId::from_uuid(u);
        assert_eq!(id.to_string(), u.to_string());
        assert_eq!(format!("{id:?}"), format!("{u:?}"));
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
        assert!("nope".parse::<UserId>().is_err());
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            serde_json::to_value(u).unwrap()
        );
        let back: UserId = serde_json::from_value(serde_json::json!(u.to_string())).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn binds_as_uuid_and_uuid_array() {
        let ids = vec![ConversationId::new_v4(), ConversationId::new_v4()];
        let mut one = BytesMut::new();
        ids[0].to_sql_checked(&Type::UUID, &mut one).unwrap();
        assert_eq!(ConversationId::from_sql(&Type::UUID, &one).unwrap(), ids[0]);
        let mut array = BytesMut::new();
        ids.to_sql_checked(&Type::UUID_ARRAY, &mut array).unwrap();
        let uuids: Vec<Uuid> = ids.iter().map(|c| c.as_uuid()).collect();
        let mut expected = BytesMut::new();
        uuids
            .to_sql_checked(&Type::UUID_ARRAY, &mut expected)
            .unwrap();
        assert_eq!(array, expected);
        assert_eq!(
            Vec::<ConversationId>::from_sql(&Type::UUID_ARRAY, &array).unwrap(),
            ids
        );
        assert!(
            ids[0]
                .to_sql_checked(&Type::TEXT, &mut BytesMut::new())
                .is_err()
        );
    }
}
