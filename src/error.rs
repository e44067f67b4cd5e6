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

/// `text` read as an RFC 3339 time, with `T` and `Z` in either case as RFC 3339 allows; a
/// refusal names `field`.
pub fn rfc3339_time(field: &'static str, text: &str) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::parse(
        &text.to_ascii_uppercase(),
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|_| invalid(field, "must be an RFC 3339 time"))
}

/// Shorthand for an invalid field.
pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}

/// Characters `str::trim` removes (Unicode `White_Space`), as a regex class body.
const SPACE: &str =
    r"\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Characters [`is_displayable`] refuses, as a regex class body.
const HIDDEN: &str = r"\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb";

/// The pattern of what [`plain_text`] accepts with `min` to `max` characters
/// (`min` ≥ 1): any surrounding white space (trimmed), then `min` to `max` displayable
/// characters that start and end with a visible one. What the schema admits is exactly
/// what the server takes.
pub fn plain_text_pattern(min: usize, max: usize) -> String {
    let edge = format!("[^{SPACE}{HIDDEN}]");
    let inner = format!("[^{HIDDEN}]");
    let around = format!("[{SPACE}]*");
    if min <= 1 {
        format!(
            "^{around}{edge}(?:{inner}{{0,{}}}{edge})?{around}$",
            max - 2
        )
    } else {
        format!(
            "^{around}{edge}{inner}{{{},{}}}{edge}{around}$",
            min - 2,
            max - 2
        )
    }
}

/// The schema of a plain-text field of `min` to `max` characters, for the API document.
fn plain_text_schema(min: usize, max: usize) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(plain_text_pattern(min, max)))
        .description(Some(format!(
            "{min} to {max} characters (surrounding white space ignored); no control characters or invisible formatting"
        )))
        .into()
}

/// A name: 1 to 100 characters of plain text.
pub fn name_text() -> utoipa::openapi::schema::Schema {
    plain_text_schema(1, 100)
}

/// A written reason, note or statement: 10 to 1000 characters of plain text.
pub fn reason_text() -> utoipa::openapi::schema::Schema {
    plain_text_schema(10, 1000)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod plain_text_schema {
    use super::*;

    /// The stated pattern and the server's rule agree on texts at every edge.
    #[test]
    fn the_plain_text_pattern_is_the_servers_rule() {
        let pattern = regex::Regex::new(&plain_text_pattern(10, 1000)).unwrap();
        let cases = [
            "ten chars!",
            "  ten chars!  ",
            "\t\nten chars!\u{3000}",
            "nine char",
            "         x",
            "ten\u{202e}chars!",
            "ten\u{0}chars!!",
            "ten\tchars!!",
            "十个字符的一段理由文字",
            &"x".repeat(1000),
            &"x".repeat(1001),
            &format!("  {}  ", "y".repeat(1000)),
            "\u{feff}ten chars!",
            "ten chars!\u{a0}",
        ];
        for text in cases {
            let server = plain_text("t", text, 1000).is_ok_and(|t| t.chars().count() >= 10);
            assert_eq!(pattern.is_match(text), server, "{text:?}");
        }
    }
}
