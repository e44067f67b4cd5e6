//! Refused agency reads: each one recorded (with a bounded reason label for the metrics and
//! its words in the trail) before the refusal is answered.

use super::reads::Caller;
use crate::context::Context;
use crate::error::Error;
use crate::status::GrantStatus;
use crate::store::grants::GrantRow;

/// Records a refusal and returns the error to answer with (or 503 if even the refusal
/// could not be recorded).
pub(super) async fn refuse(
    ctx: &Context,
    caller: &Caller<'_>,
    action: crate::audit::Action,
    grant: Option<&GrantRow>,
    objects: Vec<String>,
    why: Refusal,
    answer: Error,
) -> Error {
    metrics::counter!("custodia_refusals_total", "reason" => why.label()).increment(1);
    let pseudonym = match grant {
        Some(g) => ctx
            .store
            .citizen(g.citizen_id)
            .await
            .ok()
            .map(|c| c.pseudonym),
        None => None,
    };
    let event = caller
        .event(action)
        .outcome(crate::audit::Outcome::Refused)
        .detail(why.detail())
        .citizen(pseudonym.as_deref())
        .grant(grant.map(|g| g.id))
        .objects(objects);
    match ctx.audit.append(event).await {
        Ok(_) => answer,
        Err(e) => e,
    }
}

/// Why a read was refused: its metric label (bounded) and its words in the trail.
pub(super) enum Refusal {
    NoGrant,
    NotLive(GrantStatus),
    NotYetValid,
    NotCovered,
    FieldNotGranted(String),
    TierTooLow,
    NoFile,
}

impl Refusal {
    fn label(&self) -> &'static str {
        match self {
            Self::NoGrant => "no-grant",
            Self::NotLive(_) | Self::NotYetValid => "grant-not-live",
            Self::NotCovered => "not-covered",
            Self::FieldNotGranted(_) => "field-not-granted",
            Self::TierTooLow => "tier-too-low",
            Self::NoFile => "other",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::NoGrant => "no such grant for this agency".into(),
            Self::NotLive(status) => format!("the grant is {status}"),
            Self::NotYetValid => "the grant is not valid yet".into(),
            Self::NotCovered => "the grant does not cover this document".into(),
            Self::FieldNotGranted(f) => format!("field '{f}' is not granted"),
            Self::TierTooLow => "the grant's tier does not include files".into(),
            Self::NoFile => "the document has no file".into(),
        }
    }
}

pub(super) fn ended(status: impl std::fmt::Display) -> Error {
    Error::Forbidden(format!(
        "This grant is {status}; nothing can be read under it."
    ))
}
