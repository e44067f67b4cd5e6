//! Registration and sign-in with the national eID (`CUSTODIA_REGISTRATION=oidc`).
//!
//! The citizen leaves for the eID provider and comes back with an authorization code
//! ([`crate::eid`] speaks the protocol). What the proven national ID then allows:
//!
//! - **It has an account**: a session, locked as after a passkey sign-in (the vault opens
//!   with the passphrase), recorded as a sign-in by the national eID. Step-up for account
//!   changes still needs a passkey.
//! - **It has none yet**, or the citizen asked to **re-enrol** (every passkey lost): a
//!   one-time enrolment code for that ID, issued by the eID and valid for
//!   [`PROOF_MS`], which the registration that follows uses up like a code from a letter.
//!   The code goes to the browser in an HttpOnly cookie only.
//!
//! The flow's state, nonce and PKCE verifier are kept as a sealed ceremony (any node can
//! take the callback; a callback replayed or swapped into another browser finds nothing).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::enrolment::{self, Enroller};
use super::{NationalId, national_id_index};
use crate::context::Context;
use crate::eid::{Callback, Eid, EidError, FlowSecrets};
use crate::error::Error;
use crate::ids::CitizenId;
use crate::passkeys::{self, CeremonyKind};
use crate::ratelimit;
use crate::sessions::{self, Issued, Principal};

/// How long the proof of an eID sign-in stays good for finishing a registration.
pub const PROOF_MS: i64 = 10 * 60 * 1000;

/// What the citizen set out to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    /// Sign in, or register when the ID has no account yet.
    Signin,
    /// Enrol a new passkey because every earlier one is lost.
    Reenrol,
}

#[derive(Serialize, Deserialize)]
struct FlowState {
    intent: Intent,
    secrets: FlowSecrets,
}

/// Where an eID sign-in leads.
pub enum Proven {
    /// A registration (or re-enrolment) may go on for this ID with this one-time code.
    Enrol {
        /// The proven national ID, for the registration form.
        national_id: NationalId,
        /// The one-time enrolment code the registration will use up.
        code: Zeroizing<String>,
        /// Whether the ID has an account (then registering replaces its passkeys).
        has_account: bool,
    },
    /// The citizen is signed in.
    SignedIn {
        /// Who.
        citizen_id: CitizenId,
        /// The new (locked) session.
        session: Issued,
    },
}

fn configured(ctx: &Context) -> Result<&Eid, Error> {
    ctx.eid.as_ref().ok_or(Error::NotFound)
}

fn unavailable(e: EidError) -> Error {
    match e {
        EidError::Unavailable(reason) => {
            tracing::warn!(%reason, "national eID provider unavailable");
            Error::Upstream(
                "The national eID service cannot be reached just now. Please try again in a \
                 few minutes."
                    .into(),
            )
        }
        EidError::Refused(reason) => {
            tracing::info!(%reason, "national eID sign-in refused by the provider");
            Error::Unauthenticated(
                "The national eID sign-in was cancelled or refused. You can start again.".into(),
            )
        }
        EidError::Invalid(reason) => {
            tracing::warn!(%reason, "national eID answer refused");
            Error::Unauthenticated(
                "The answer from the national eID could not be verified, so nobody was signed \
                 in. Please start again."
                    .into(),
            )
        }
    }
}

/// Starts an eID sign-in: the provider's address to send the browser to, and the flow
/// token the callback must bring back (in a cookie).
#[tracing::instrument(skip_all)]
pub async fn start(
    ctx: &Context,
    intent: Intent,
    client: &str,
) -> Result<(url::Url, String), Error> {
    let eid = configured(ctx)?;
    ratelimit::check(ctx, ratelimit::LOGIN_PER_ADDR, client).await?;
    let (url, secrets) = eid.authorize().await.map_err(unavailable)?;
    let token = passkeys::begin(
        &ctx.store,
        CeremonyKind::Eid,
        &FlowState { intent, secrets },
        ctx.clock.now_ms(),
    )
    .await?;
    Ok((url, token))
}

/// Finishes an eID sign-in from the provider's callback.
#[tracing::instrument(skip_all)]
pub async fn finish(
    ctx: &Context,
    token: Option<&str>,
    callback: &Callback,
) -> Result<Proven, Error> {
    let eid = configured(ctx)?;
    let now = ctx.clock.now_ms();
    // Taken first: whatever the answer, this flow is spent.
    let flow: FlowState = passkeys::finish(&ctx.store, CeremonyKind::Eid, token, now).await?;
    let claimed = eid
        .redeem(callback, &flow.secrets, now)
        .await
        .map_err(unavailable)?;
    let national_id = NationalId::parse(&claimed).map_err(|_| {
        tracing::warn!("the national eID's claim is not a national ID number");
        Error::Unauthenticated(
            "The national eID did not give a national ID number this service can use.".into(),
        )
    })?;
    let index = national_id_index(ctx, &national_id);
    let existing = ctx.store.citizen_by_index(&index).await?;
    match (flow.intent, existing) {
        (Intent::Signin, Some(citizen)) => {
            let event = crate::audit::by_citizen(&citizen.pseudonym, crate::audit::Action::Login)
                .detail("with the national eID");
            let session = sessions::sign_in(ctx, Principal::Citizen(citizen.id), event).await?;
            Ok(Proven::SignedIn {
                citizen_id: citizen.id,
                session,
            })
        }
        (_, existing) => {
            let code = enrolment::issue(ctx, &national_id, Enroller::Eid, PROOF_MS).await?;
            Ok(Proven::Enrol {
                national_id,
                code: code.code,
                has_account: existing.is_some(),
            })
        }
    }
}
