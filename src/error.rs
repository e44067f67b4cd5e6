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

/// Whether `c` may stand in text that people read: no control characters (C0, C1, DEL)
/// and no invisible formatting that reorders or hides what is shown — bidirectional
/// embeddings, overrides, isolates and marks, zero-width characters, word joiners and the
/// byte-order mark. A purpose that reads one way on the citizen's page and another in the
/// auditor's export is a spoof, so such text is refused where it enters.
pub fn is_displayable(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `value` trimmed, if it is a person-readable text of 1 to `max` characters (see
/// [`is_displayable`]).
pub fn plain_text<'a>(field: &'static str, value: &'a str, max: usize) -> Result<&'a str, Error> {
    let value = value.trim();
    let len = value.chars().count();
    if len == 0 || len > max {
        return Err(invalid(field, format!("must be 1 to {max} characters")));
    }
    if !value.chars().all(is_displayable) {
        return Err(invalid(
            field,
            "must not contain control characters or invisible formatting (such as bidirectional overrides)",
        ));
    }
    Ok(value)
}

/// Shorthand for an invalid field.
pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}
