//! Auditors: oversight staff who review access trails — metadata of everyone, never
//! document contents (SPEC §1). Accounts come only from `custodia auditor invite`: a
//! one-time link, valid 72 hours, whose holder enrols a passkey. Every query an auditor
//! makes is itself recorded in the trail, and revealing the national ID behind a
//! pseudonym needs a written case reason and is recorded with it.
//!
//! Accounts (invite, enrolment, sign-in) here; what auditors look at in [`oversight`];
//! the patterns the console flags in [`flags`].

mod flags;
mod oversight;
mod oversight_key;

pub use flags::{
    EMERGENCY_REVIEW_DUE_MS, FLAG_WINDOW_MS, Flag, MANY_CITIZENS_PER_HOUR, REFUSALS_PER_BURST,
    flags,
};
pub use oversight::{
    Query, confirm_identity, export, recent_flags, search, shown, verify_chain, volume,
};
pub use oversight_key::{OversightKey, create_oversight_key, reveal_with_key};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia_crypto::{SecretBytes, digest};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse,
};
use zeroize::Zeroizing;

use crate::audit::{ActorKind, Event};
use crate::citizens::{credential_row, stored_passkeys};
use crate::context::Context;
use crate::error::Error;
use crate::ids::AuditorId;
use crate::passkeys::{self, CeremonyKind};
use crate::sessions::{self, Issued, Principal, Session};
use crate::store::auditors::{AuditorRow, InviteRow};

/// How long an enrolment link stays valid.
pub const INVITE_HOURS: i64 = 72;

fn token_hash(token: &str) -> Vec<u8> {
    let mut input = b"auditor-invite\0".to_vec();
    input.extend_from_slice(token.as_bytes());
    digest::sha256(&input).to_vec()
}

fn refused() -> Error {
    Error::Unauthenticated(
        "This enrolment link is not valid: it was used, has expired, or was never issued.".into(),
    )
}

/// Creates an invite for `name` and returns the one-time enrolment link.
#[tracing::instrument(skip_all)]
pub async fn invite(ctx: &Context, name: &str) -> Result<String, Error> {
    let name = crate::error::plain_text("name", name, 100)?;
    if ctx.store.auditor_by_name(name).await?.is_some() {
        return Err(Error::Conflict(
            "An auditor with this name exists already.".into(),
        ));
    }
    let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(SecretBytes::random(32).expose()));
    let now = ctx.clock.now_ms();
    let id = Uuid::new_v4();
    let event = Event::new(
        ActorKind::Operator,
        None,
        crate::audit::Action::AuditorInvite,
    )
    .objects([id.to_string()]);
    let mut tx = ctx.store.begin().await?;
    tx.insert_invite(&InviteRow {
        id,
        token_hash: token_hash(&token),
        name: name.to_owned(),
        created_at: now,
        expires_at: now + INVITE_HOURS * 3_600_000,
        used_at: None,
        auditor_id: None,
    })
    .await?;
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    let base = ctx.config.public_url.as_str().trim_end_matches('/');
    Ok(format!("{base}/audit/enrol?token={}", token.as_str()))
}

#[derive(Serialize, Deserialize)]
struct EnrolState {
    invite_id: Uuid,
    auditor_id: AuditorId,
    name: String,
    registration: PasskeyRegistration,
}

#[derive(Serialize, Deserialize)]
struct LoginState {
    /// `None` for a name no enabled auditor has (a decoy ceremony that never verifies).
    auditor_id: Option<AuditorId>,
    authentication: PasskeyAuthentication,
}

async fn live_invite(ctx: &Context, token: &str) -> Result<InviteRow, Error> {
    let invite = ctx
        .store
        .invite_by_hash(&token_hash(token))
        .await?
        .ok_or_else(refused)?;
    if invite.used_at.is_some() || invite.expires_at <= ctx.clock.now_ms() {
        return Err(refused());
    }
    Ok(invite)
}

/// The name an invite is for (to greet the holder), if it is still valid.
#[tracing::instrument(skip_all)]
pub async fn invite_name(ctx: &Context, token: &str) -> Result<String, Error> {
    Ok(live_invite(ctx, token).await?.name)
}

/// Starts enrolment from an invite.
#[tracing::instrument(skip_all)]
pub async fn enrol_start(
    ctx: &Context,
    token: &str,
) -> Result<(CreationChallengeResponse, String), Error> {
    let invite = live_invite(ctx, token).await?;
    let auditor_id = AuditorId::random();
    let (options, registration) = ctx
        .passkeys
        .webauthn
        .start_passkey_registration(auditor_id.uuid(), &invite.name, &invite.name, None)
        .map_err(|e| Error::Internal(anyhow::anyhow!("webauthn start: {e}")))?;
    let state = EnrolState {
        invite_id: invite.id,
        auditor_id,
        name: invite.name,
        registration,
    };
    let ceremony = passkeys::begin(
        &ctx.store,
        CeremonyKind::AuditorEnrol,
        &state,
        ctx.clock.now_ms(),
    )
    .await?;
    Ok((options, ceremony))
}

/// Finishes enrolment: the invite is used (once), the auditor and passkey are stored, and
/// a session opens.
#[tracing::instrument(skip_all)]
pub async fn enrol_finish(
    ctx: &Context,
    ceremony: Option<&str>,
    credential: &RegisterPublicKeyCredential,
) -> Result<(AuditorId, Issued), Error> {
    let now = ctx.clock.now_ms();
    let state: EnrolState =
        passkeys::finish(&ctx.store, CeremonyKind::AuditorEnrol, ceremony, now).await?;
    let passkey = ctx
        .passkeys
        .webauthn
        .finish_passkey_registration(credential, &state.registration)
        .map_err(|_| Error::Unauthenticated("The passkey could not be verified.".into()))?;
    let mut tx = ctx.store.begin().await?;
    tx.insert_auditor(&AuditorRow {
        id: state.auditor_id,
        name: state.name.clone(),
        created_at: now,
        disabled_at: None,
    })
    .await
    .map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => {
            Error::Conflict("An auditor with this name exists already.".into())
        }
        other => other.into(),
    })?;
    // Single use: a second finish from the same link changes nothing (the transaction,
    // with the auditor just inserted, is rolled back).
    if !tx
        .use_invite(state.invite_id, state.auditor_id, now)
        .await?
    {
        return Err(refused());
    }
    tx.insert_credential(&credential_row(
        Principal::Auditor(state.auditor_id),
        &passkey,
        "Passkey 1",
        now,
    )?)
    .await?;
    let issued = sessions::create(ctx, &mut tx, Principal::Auditor(state.auditor_id), None).await?;
    let event = Event::new(
        ActorKind::Auditor,
        Some(state.auditor_id.to_string()),
        crate::audit::Action::AuditorEnrol,
    );
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok((state.auditor_id, issued))
}

/// Disables an auditor (`custodia auditor disable ID`): every session of theirs ends now,
/// and neither their passkeys nor a ceremony started before opens a new one.
#[tracing::instrument(skip_all, fields(auditor = %id))]
pub async fn disable(ctx: &Context, id: AuditorId) -> Result<(), Error> {
    ctx.store.auditor(id).await?;
    let now = ctx.clock.now_ms();
    let mut tx = ctx.store.begin().await?;
    if !tx.disable_auditor(id, now).await? {
        return Err(Error::Conflict("This auditor is already disabled.".into()));
    }
    let event = Event::new(
        ActorKind::Operator,
        None,
        crate::audit::Action::AuditorDisable,
    )
    .objects([id.to_string()]);
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(())
}

/// Starts an auditor's sign-in by name. Limited per client address, and the same answer
/// for a name no enabled auditor has (options naming a stable decoy credential), so the
/// route tells nobody which names exist.
#[tracing::instrument(skip_all)]
pub async fn login_start(
    ctx: &Context,
    name: &str,
    client: &str,
) -> Result<(RequestChallengeResponse, String), Error> {
    crate::ratelimit::check(ctx, crate::ratelimit::LOGIN_PER_ADDR, client).await?;
    // Held to the rule every invited name met, so a name no auditor can have (control,
    // direction or invisible characters, too long) is refused as such, whoever asks.
    let name = crate::error::plain_text("name", name, 100)?;
    let auditor = ctx.store.auditor_by_name(name).await?;
    let creds: Vec<Passkey> = match &auditor {
        Some(a) => stored_passkeys(&ctx.store.auditor_credentials(a.id).await?)?,
        None => {
            let seed = custodia_crypto::digest::blind_index(
                &ctx.keys.blind_index,
                "auditor-name",
                name.as_bytes(),
            );
            vec![ctx.passkeys.decoy_for(&seed)?]
        }
    };
    let (options, authentication) = ctx
        .passkeys
        .webauthn
        .start_passkey_authentication(&creds)
        .map_err(|e| Error::Internal(anyhow::anyhow!("webauthn start: {e}")))?;
    let state = LoginState {
        auditor_id: auditor.map(|a| a.id),
        authentication,
    };
    let ceremony = passkeys::begin(
        &ctx.store,
        CeremonyKind::AuditorLogin,
        &state,
        ctx.clock.now_ms(),
    )
    .await?;
    Ok((options, ceremony))
}

/// Finishes an auditor's sign-in.
#[tracing::instrument(skip_all)]
pub async fn login_finish(
    ctx: &Context,
    ceremony: Option<&str>,
    credential: &PublicKeyCredential,
) -> Result<(AuditorId, Issued), Error> {
    let now = ctx.clock.now_ms();
    let state: LoginState =
        passkeys::finish(&ctx.store, CeremonyKind::AuditorLogin, ceremony, now).await?;
    let refused = || Error::Unauthenticated("The passkey could not be verified.".into());
    let Some(auditor_id) = state.auditor_id else {
        return Err(refused());
    };
    // Disabled since the ceremony started: refused like a wrong passkey.
    if ctx.store.auditor(auditor_id).await?.disabled_at.is_some() {
        return Err(refused());
    }
    let event = Event::new(
        ActorKind::Auditor,
        Some(auditor_id.to_string()),
        crate::audit::Action::Login,
    );
    let rows = ctx.store.auditor_credentials(auditor_id).await?;
    let verified = passkeys::verify_assertion(
        &ctx.passkeys,
        &ctx.store,
        &state.authentication,
        credential,
        &rows,
        now,
    )
    .await?;
    if !verified {
        ctx.audit
            .record(event.outcome(crate::audit::Outcome::Failed))
            .await;
        return Err(refused());
    }
    let issued = sessions::sign_in(ctx, Principal::Auditor(auditor_id), event).await?;
    Ok((auditor_id, issued))
}

/// The auditor a session belongs to; citizens are refused.
pub fn auditor_of(session: &Session) -> Result<AuditorId, Error> {
    match session.principal {
        Principal::Auditor(id) => Ok(id),
        Principal::Citizen(_) => Err(Error::Forbidden("This is for auditors only.".into())),
    }
}
