//! Typed ids: one type per domain noun, from the HTTP edge down to the store, so a grant id
//! cannot be passed where a document id is expected.
//!
//! Each is a UUID everywhere it leaves the process — in JSON and paths as the hyphenated
//! text, in the store as the engine's UUID column (a 16-byte BLOB on SQLite, `uuid` on
//! PostgreSQL) — so the wire and the schema are unchanged by the types. Ids of things no
//! caller names across modules (sessions, ceremonies, invitations, credential rows, agency
//! key rows) stay plain `Uuid`s inside the module that owns them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Declares one id type.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A new random id.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The id of the thing whose UUID this is.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID underneath.
            pub const fn uuid(self) -> Uuid {
                self.0
            }

            /// Its 16 bytes, as bound into associated data.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::from_str(text).map(Self)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            Uuid: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <Uuid as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <Uuid as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            Uuid: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                <Uuid as sqlx::Decode<'r, DB>>::decode(value).map(Self)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            Uuid: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <Uuid as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
            }
        }
    };
}

id_type! {
    /// A registered citizen.
    CitizenId
}

id_type! {
    /// A document in a citizen's vault (all its versions share it).
    DocumentId
}

id_type! {
    /// A grant: one citizen's consent to one agency.
    GrantId
}

id_type! {
    /// An agency's access request to a citizen.
    AccessRequestId
}

id_type! {
    /// A registered agency.
    AgencyId
}

id_type! {
    /// An enrolled auditor.
    AuditorId
}

id_type! {
    /// A delegation: one citizen acting for another within a scope.
    DelegationId
}

id_type! {
    /// A guardianship declared by a guardianship authority.
    GuardianshipId
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::{DocumentId, GrantId};

    #[test]
    fn ids_read_and_write_as_plain_uuids() {
        let text = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let grant: GrantId = text.parse().expect("a UUID");
        assert_eq!(grant.to_string(), text);
        assert_eq!(
            serde_json::to_string(&grant).expect("serialises"),
            format!("\"{text}\"")
        );
        let back: GrantId = serde_json::from_str(&format!("\"{text}\"")).expect("parses");
        assert_eq!(back, grant);
        assert!("not-a-uuid".parse::<DocumentId>().is_err());
    }
}
