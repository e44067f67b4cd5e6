//! The lives of grants and access requests: one enum each, with one string per state —
//! the same text is stored, sent in JSON and shown — and the one rule that time can end a
//! state before any sweeper writes it down. The tier a grant or request names lives here
//! too, for the same reason: a column, a JSON value and a word on a page, one name each.

use serde::{Deserialize, Serialize};

/// An enum whose every value has one name: `ALL`, `as_str`, `parse` and `Display`. Used for
/// statuses here and for audit actions and outcomes.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The name stored, sent and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// Parses a stored name.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use named_enum;

/// A [`named_enum!`] that is also a column and a JSON value: serde, OpenAPI and sqlx on
/// either engine, all through the one name.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        named_enum! {
            $(#[$meta])*
            #[derive(Serialize, Deserialize, utoipa::ToSchema)]
            #[serde(rename_all = "snake_case")]
            $name { $($(#[$vmeta])* $variant => $text,)+ }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<'r, DB>>::decode(value)?;
                Self::parse(&text).ok_or_else(|| {
                    format!("unknown {} {text:?} in the database", stringify!($name)).into()
                })
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            &'static str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'static str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }
    };
}

stored_enum! {
    /// Where a grant stands.
    GrantStatus {
        /// Reads may happen (within its time window and read limit).
        Active => "active",
        /// The citizen ended it.
        Revoked => "revoked",
        /// Its time ran out.
        Expired => "expired",
        /// Its last allowed read happened.
        Exhausted => "exhausted",
    }
}

stored_enum! {
    /// Where an agency's access request stands.
    RequestStatus {
        /// Waiting for the citizen.
        Pending => "pending",
        /// The citizen approved it (a grant answers it).
        Approved => "approved",
        /// The citizen said no.
        Denied => "denied",
        /// Nobody answered in time.
        Expired => "expired",
    }
}

stored_enum! {
    /// How much a grant reveals, ordered `verify` < `fields` < `full`. Stored as its name; a
    /// stored name that is none of these fails to load (500) rather than being read as some
    /// tier, so a damaged row can never widen what is shown.
    #[derive(PartialOrd, Ord)]
    Tier {
        /// Existence, type, issuer, dates, signature validity, digest.
        Verify => "verify",
        /// Only the named fields.
        Fields => "fields",
        /// Every field and the file.
        Full => "full",
    }
}

stored_enum! {
    /// Where a delegation stands.
    DelegationStatus {
        /// Appointed; the delegate has not accepted yet (she can do nothing yet).
        Pending => "pending",
        /// Accepted: the delegate may act within its scope until it expires.
        Active => "active",
        /// Either side ended it.
        Ended => "ended",
        /// Its time ran out.
        Expired => "expired",
    }
}

stored_enum! {
    /// What a delegate may do for her principal (documents only of the delegation's types).
    DelegatedAction {
        /// See the documents: list, open, download.
        View => "view",
        /// Add documents and new versions.
        Upload => "upload",
        /// Approve or deny agencies' access requests.
        AnswerRequests => "answer_requests",
        /// Give agencies grants.
        Grant => "grant",
        /// Revoke grants.
        Revoke => "revoke",
    }
}

impl DelegationStatus {
    /// The status now: a stored `pending` or `active` delegation past its end is `expired`.
    pub fn at(self, expires_at_ms: i64, now_ms: i64) -> Self {
        if matches!(self, Self::Pending | Self::Active) && expires_at_ms <= now_ms {
            Self::Expired
        } else {
            self
        }
    }
}

impl GrantStatus {
    /// The status now: a stored `active` grant past its end is `expired` even before the
    /// sweeper records it.
    pub fn at(self, expires_at_ms: i64, now_ms: i64) -> Self {
        if self == Self::Active && expires_at_ms <= now_ms {
            Self::Expired
        } else {
            self
        }
    }
}

impl RequestStatus {
    /// The status now: a stored `pending` request past its end is `expired`.
    pub fn at(self, expires_at_ms: i64, now_ms: i64) -> Self {
        if self == Self::Pending && expires_at_ms <= now_ms {
            Self::Expired
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_has_one_text_both_ways() {
        for s in GrantStatus::ALL {
            assert_eq!(GrantStatus::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        for s in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        assert_eq!(GrantStatus::parse("Active"), None);
    }

    #[test]
    fn time_ends_what_is_live() {
        assert_eq!(GrantStatus::Active.at(10, 10), GrantStatus::Expired);
        assert_eq!(GrantStatus::Active.at(11, 10), GrantStatus::Active);
        assert_eq!(GrantStatus::Revoked.at(1, 10), GrantStatus::Revoked);
        assert_eq!(RequestStatus::Pending.at(5, 10), RequestStatus::Expired);
        assert_eq!(RequestStatus::Denied.at(5, 10), RequestStatus::Denied);
    }
}
