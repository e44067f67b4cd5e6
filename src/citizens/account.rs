//! The account as its owner sees it: profile, and the passkeys that sign in to it.

use super::*;
use crate::audit::Action;
use crate::ids::CitizenId;

/// What a citizen sees of their own account.
#[derive(Debug, Serialize)]
pub struct Profile {
    /// The citizen's id.
    pub citizen_id: CitizenId,
    /// Whether this session's vault is unlocked.
    pub unlocked: bool,
    /// The display name (only while unlocked: it is sealed in the vault).
    pub display_name: Option<String>,
    /// The citizen's passkeys.
    pub passkeys: Vec<PasskeyInfo>,
}

/// A passkey as listed in settings.
#[derive(Debug, Serialize)]
pub struct PasskeyInfo {
    /// Its id (for removal).
    pub id: Uuid,
    /// Its label.
    pub label: String,
    /// When it was added (ms since epoch).
    pub created_at: i64,
    /// When it was last used (ms since epoch).
    pub last_used_at: Option<i64>,
}

/// The signed-in citizen's profile.
#[tracing::instrument(skip_all)]
pub async fn profile(ctx: &Context, session: &Session) -> Result<Profile, Error> {
    let citizen_id = session.citizen()?;
    let citizen = ctx.store.citizen(citizen_id).await?;
    let display_name = match session.vault_key() {
        Ok(key) => {
            let bytes = envelope::open(
                &key,
                &display_name_aad(citizen_id),
                &citizen.display_name_enc,
            )
            .map_err(|e| Error::Internal(anyhow::anyhow!("display name: {e}")))?;
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        Err(_) => None,
    };
    let passkeys = ctx
        .store
        .citizen_credentials(citizen_id)
        .await?
        .into_iter()
        .map(|r| PasskeyInfo {
            id: r.id,
            label: r.label,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        })
        .collect();
    Ok(Profile {
        citizen_id,
        unlocked: session.is_unlocked(),
        display_name,
        passkeys,
    })
}

#[derive(Serialize, Deserialize)]
struct StepUpState {
    citizen_id: CitizenId,
    /// The session the confirmation is for: it counts in no other.
    session: Vec<u8>,
    authentication: PasskeyAuthentication,
}

/// Starts a step-up: WebAuthn request options for the signed-in citizen's passkeys.
#[tracing::instrument(skip_all)]
pub async fn step_up_start(
    ctx: &Context,
    session: &Session,
) -> Result<(RequestChallengeResponse, String), Error> {
    let citizen_id = session.citizen()?;
    let (options, authentication) = authentication_start(ctx, citizen_id).await?;
    let state = StepUpState {
        citizen_id,
        session: session.id_hash.clone(),
        authentication,
    };
    let token =
        passkeys::begin(&ctx.store, CeremonyKind::StepUp, &state, ctx.clock.now_ms()).await?;
    Ok((options, token))
}

/// Finishes a step-up: the assertion must verify against this citizen's passkeys, for
/// this session. Returns until when account changes are allowed (ms since epoch).
#[tracing::instrument(skip_all)]
pub async fn step_up_finish(
    ctx: &Context,
    session: &mut Session,
    token: Option<&str>,
    credential: &PublicKeyCredential,
) -> Result<i64, Error> {
    let citizen_id = session.citizen()?;
    let now = ctx.clock.now_ms();
    let state: StepUpState = passkeys::finish(&ctx.store, CeremonyKind::StepUp, token, now).await?;
    if state.citizen_id != citizen_id || state.session != session.id_hash {
        return Err(auth_failed());
    }
    let rows = ctx.store.citizen_credentials(citizen_id).await?;
    let verified = passkeys::verify_assertion(
        &ctx.passkeys,
        &ctx.store,
        &state.authentication,
        credential,
        &rows,
        now,
    )
    .await?;
    let event = crate::audit::citizen_event(&ctx.store, citizen_id, Action::CitizenStepUp).await;
    if !verified {
        ctx.audit
            .record(
                event
                    .outcome(crate::audit::Outcome::Failed)
                    .detail("the passkey assertion did not verify"),
            )
            .await;
        return Err(auth_failed());
    }
    session.mark_verified(ctx, event).await
}

/// Starts adding another passkey to the signed-in citizen (needs a fresh step-up).
#[tracing::instrument(skip_all)]
pub async fn add_passkey_start(
    ctx: &Context,
    session: &Session,
) -> Result<(CreationChallengeResponse, String), Error> {
    let citizen_id = session.citizen()?;
    session.require_fresh(ctx)?;
    let rows = ctx.store.citizen_credentials(citizen_id).await?;
    let exclude = stored_passkeys(&rows)?
        .iter()
        .map(|p| p.cred_id().clone())
        .collect();
    let (options, registration) = ctx
        .passkeys
        .webauthn
        .start_passkey_registration(citizen_id.uuid(), "Custodia", "Custodia", Some(exclude))
        .map_err(|e| Error::Internal(anyhow::anyhow!("webauthn start: {e}")))?;
    let state = AddPasskeyState {
        citizen_id,
        registration,
    };
    let token = passkeys::begin(
        &ctx.store,
        CeremonyKind::AddPasskey,
        &state,
        ctx.clock.now_ms(),
    )
    .await?;
    Ok((options, token))
}

/// Finishes adding a passkey.
#[tracing::instrument(skip_all)]
pub async fn add_passkey_finish(
    ctx: &Context,
    session: &Session,
    token: Option<&str>,
    credential: &RegisterPublicKeyCredential,
    label: Option<&str>,
) -> Result<Uuid, Error> {
    let citizen_id = session.citizen()?;
    let now = ctx.clock.now_ms();
    let state: AddPasskeyState =
        passkeys::finish(&ctx.store, CeremonyKind::AddPasskey, token, now).await?;
    if state.citizen_id != citizen_id {
        return Err(auth_failed());
    }
    let passkey = ctx
        .passkeys
        .webauthn
        .finish_passkey_registration(credential, &state.registration)
        .map_err(|_| auth_failed())?;
    let count = ctx.store.citizen_credentials(citizen_id).await?.len();
    let label = match label.map(str::trim).filter(|l| !l.is_empty()) {
        Some(l) => crate::error::plain_text("label", l, 60)?.to_owned(),
        None => format!("Passkey {}", count + 1),
    };
    let row = credential_row(Principal::Citizen(citizen_id), &passkey, &label, now)?;
    let event = crate::audit::citizen_event(&ctx.store, citizen_id, Action::PasskeyAdd)
        .await
        .objects([row.id.to_string()]);
    let mut tx = ctx.store.begin().await?;
    tx.insert_credential(&row).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => {
            Error::Conflict("This passkey is already registered.".into())
        }
        other => other.into(),
    })?;
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(row.id)
}

/// Removes one of the citizen's passkeys; the last one cannot be removed.
#[tracing::instrument(skip_all, fields(passkey = %id))]
pub async fn remove_passkey(ctx: &Context, session: &Session, id: Uuid) -> Result<(), Error> {
    let citizen_id = session.citizen()?;
    session.require_fresh(ctx)?;
    // Someone else's passkey, or none at all: not found, before anything about this
    // account's own passkeys is said.
    if !ctx
        .store
        .citizen_credentials(citizen_id)
        .await?
        .iter()
        .any(|c| c.id == id)
    {
        return Err(Error::NotFound);
    }
    let event = crate::audit::citizen_event(&ctx.store, citizen_id, Action::PasskeyRemove)
        .await
        .objects([id.to_string()]);
    let mut tx = ctx.store.begin().await?;
    if tx.count_citizen_credentials(citizen_id).await? <= 1 {
        return Err(Error::Conflict(
            "This is your only passkey; add another before removing it.".into(),
        ));
    }
    tx.delete_citizen_credential(citizen_id, id).await?;
    crate::audit::stage(&mut tx, event, ctx.clock.now_ms()).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(())
}

/// Signs out every session of the citizen, this one included (needs a fresh step-up).
#[tracing::instrument(skip_all)]
pub async fn end_all_sessions(ctx: &Context, session: &Session) -> Result<u64, Error> {
    let citizen_id = session.citizen()?;
    session.require_fresh(ctx)?;
    let event = crate::audit::citizen_event(&ctx.store, citizen_id, Action::SessionsEnd).await;
    let mut tx = ctx.store.begin().await?;
    let ended = tx.delete_citizen_sessions(citizen_id).await?;
    crate::audit::stage(&mut tx, event, ctx.clock.now_ms()).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(ended)
}
