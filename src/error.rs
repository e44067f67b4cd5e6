//! The domain's error: what went wrong in terms a citizen, agency or auditor can act on.
//! The HTTP layer maps each variant to a status and problem type in one place.

use crate::store::StoreError;

/// A domain failure. Messages are safe to show: they never hold secrets or personal data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the request is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why, in plain words.
        message: String,
    },
    /// Nothing by that id that the caller may see.
    #[error("not found")]
    NotFound,
    /// It exists already, or the state does not allow it.
    #[error("{0}")]
    Conflict(String),
    /// No valid session or credential.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The vault passphrase or recovery code is wrong.
    #[error("the passphrase or recovery code is not correct")]
    WrongSecret,
    /// An account change needs a passkey proved in the last five minutes.
    #[error("confirm with your passkey first")]
    StepUpRequired,
    /// The vault is locked: unlock it with the passphrase first.
    #[error("the vault is locked")]
    Locked,
    /// Too many attempts.
    #[error("too many attempts")]
    RateLimited {
        /// Seconds until another attempt is accepted.
        retry_after_s: u64,
    },
    /// The request body or file is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The file is not of an accepted kind.
    #[error("{0}")]
    UnsupportedMedia(String),
    /// The server is at capacity for expensive work; nothing was done.
    #[error("busy")]
    Busy,
    /// A service outside Custodia that this request needs (the national eID provider)
    /// could not be reached or answered nonsense; nothing was done.
    #[error("{0}")]
    Upstream(String),
    /// The audit record could not be committed, so the action was not carried out (G2).
    #[error("the audit trail is unavailable")]
    AuditUnavailable,
    /// Storage failed.
    #[error(transparent)]
    Store(StoreError),
    /// Anything else; logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound,
            other => Self::Store(other),
        }
    }
}

/// Shorthand for an invalid field.
pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}
