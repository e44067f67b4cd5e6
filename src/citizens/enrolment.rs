//! Enrolment codes: the proof of identity that registration requires (SPEC §4,
//! `custodia citizen enrol`).
//!
//! A code is issued for one national ID — by the operator at a counter, or by an agency
//! registered as an enroller (a service hall) — and delivered out of band: a letter, a
//! counter, a text message. It is valid for [`ENROLMENT_DAYS`] and for one registration.
//! Only a fingerprint bound to the ID's blind index is stored, so a code is worthless for
//! any other ID and a database copy yields no code. Issuing a new code for an ID supersedes
//! every older one. Every issue is an audit event naming who issued it.
//!
//! A code is also the way back in for a citizen who has lost every passkey: registering
//! with a code for an ID that has an account replaces all of its passkeys and ends all of
//! its sessions (see [`super::register_start`]). The vault still opens only with the
//! passphrase or the recovery code.

use custodia_crypto::recovery::RecoveryCode;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{NationalId, national_id_index};
use crate::audit::{Action, ActorKind, Event};
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::ids::AgencyId;
use crate::store::enrolment::EnrolmentRow;

/// How long an enrolment code stays valid.
pub const ENROLMENT_DAYS: i64 = 14;

const FINGERPRINT_LABEL: &str = "custodia enrolment code";

/// Who issues a code.
#[derive(Debug, Clone, Copy)]
pub enum Enroller {
    /// The operator, through `custodia citizen enrol`.
    Operator,
    /// An agency registered as an enroller, through the agency API.
    Agency(AgencyId),
    /// The national eID, right after it proved the ID (valid minutes, not days).
    Eid,
}

impl Enroller {
    fn stored(self) -> String {
        match self {
            Self::Operator => "operator".to_owned(),
            Self::Agency(id) => format!("agency:{id}"),
            Self::Eid => "eid".to_owned(),
        }
    }
}

/// A freshly issued code: shown once, to be handed to the citizen.
pub struct EnrolmentCode {
    /// The code as the citizen types it.
    pub code: Zeroizing<String>,
    /// When it stops being valid (Unix milliseconds).
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for EnrolmentCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrolmentCode")
            .field("code", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

fn fingerprint(code: &RecoveryCode, index: &[u8]) -> Vec<u8> {
    code.fingerprint(FINGERPRINT_LABEL, index).to_vec()
}

/// Issues a one-time code for `national_id`, valid [`ENROLMENT_DAYS`], superseding any
/// earlier one.
#[tracing::instrument(skip_all)]
pub async fn enrol(ctx: &Context, national_id: &str, by: Enroller) -> Result<EnrolmentCode, Error> {
    let national_id = NationalId::parse(national_id)?;
    issue(ctx, &national_id, by, ENROLMENT_DAYS * 86_400_000).await
}

/// Issues a one-time code for `national_id`, valid `valid_ms`, superseding any earlier one.
pub(super) async fn issue(
    ctx: &Context,
    national_id: &NationalId,
    by: Enroller,
    valid_ms: i64,
) -> Result<EnrolmentCode, Error> {
    let index = national_id_index(ctx, national_id);
    let code = RecoveryCode::generate();
    let now = ctx.clock.now_ms();
    let row = EnrolmentRow {
        id: Uuid::new_v4(),
        code_hash: fingerprint(&code, &index),
        national_id_index: index,
        issued_by: by.stored(),
        created_at: now,
        expires_at: now + valid_ms,
        used_at: None,
        superseded_at: None,
    };
    let pseudonym = ctx
        .store
        .citizen_by_index(&row.national_id_index)
        .await?
        .map(|c| c.pseudonym);
    let event = match by {
        Enroller::Operator => Event::new(ActorKind::Operator, None, Action::CitizenEnrol),
        Enroller::Agency(id) => Event::new(
            ActorKind::Agency,
            Some(id.to_string()),
            Action::CitizenEnrol,
        ),
        Enroller::Eid => Event::new(
            ActorKind::System,
            Some("eid".to_owned()),
            Action::CitizenEnrol,
        )
        .detail("identity proven by the national eID"),
    };
    let event = event
        .citizen(pseudonym.as_deref())
        .objects([row.id.to_string()]);
    // The code exists only with its record.
    let mut tx = ctx.store.begin().await?;
    tx.insert_enrolment(&row).await?;
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(EnrolmentCode {
        code: code.display(),
        expires_at_ms: row.expires_at,
    })
}

fn not_valid() -> Error {
    invalid(
        "enrolment_code",
        "is not valid for this national ID number: it was used, has expired, was replaced by a \
         newer code, or was never issued. Ask for a new one where you got it.",
    )
}

/// The live code `typed` for the ID with blind index `index`, or why not.
pub(super) async fn live(ctx: &Context, index: &[u8], typed: &str) -> Result<Uuid, Error> {
    let code = RecoveryCode::parse(typed).map_err(|_| {
        invalid(
            "enrolment_code",
            "is not an enrolment code: check it against the letter or message (28 letters and \
             digits, dashes optional)",
        )
    })?;
    ctx.store
        .live_enrolment(&fingerprint(&code, index), ctx.clock.now_ms())
        .await?
        .map(|row| row.id)
        .ok_or_else(not_valid)
}

/// What registration answers when the code was used up between start and finish.
pub(super) fn spent() -> Error {
    not_valid()
}
