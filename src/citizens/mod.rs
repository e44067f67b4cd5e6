//! Citizens: passkey accounts, the vault and its passphrase, the recovery code (SPEC G5).
//!
//! At registration a random vault key and an X25519 key pair are made. The private half
//! and the display name are sealed under the vault key. The vault key is wrapped twice:
//! under an Argon2id key from the passphrase, and under a key from a one-time recovery
//! code shown once. It is never wrapped under a server key. While a session is unlocked,
//! the session holds it wrapped under the cookie's secret (see [`crate::sessions`]).
//!
//! Decisions: registering a national ID that already has an account answers 409, and
//! signing in with an unknown one answers 422 saying so, both rate-limited per address — the
//! citizen must learn what to do, and the limits make enumeration slow. The agency API,
//! by contrast, never reveals who is registered.

mod national_id;

pub use national_id::NationalId;

use custodia_crypto::hpke_seal;
use custodia_crypto::kdf::PassphraseKdf;
use custodia_crypto::recovery::RecoveryCode;
use custodia_crypto::{
    Aad, Passphrase, SecretBytes, SymmetricKey, VaultKey, digest, envelope, wrap,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse,
};

use crate::context::Context;
use crate::error::{Error, invalid};
use crate::passkeys::{self, CeremonyKind};
use crate::ratelimit;
use crate::sessions::{self, Issued, Principal, Session};
use crate::store::citizens::{CitizenRow, CredentialRow};

/// Blind-index label of national ID numbers.
pub const NATIONAL_ID_LABEL: &str = "national-id";

/// A display name: 1 to 100 characters, no control characters.
#[derive(Clone, Serialize, Deserialize)]
pub struct DisplayName(String);

impl DisplayName {
    /// Validates a typed name.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let name = input.trim();
        let len = name.chars().count();
        if len == 0 || len > 100 {
            return Err(invalid("display_name", "must be 1 to 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid(
                "display_name",
                "must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }
}

impl std::fmt::Debug for DisplayName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DisplayName(<redacted>)")
    }
}

/// Refuses passphrases a guesser would find: zxcvbn score 3 ("safely unguessable") or
/// more, at least 10 characters, at most 1024.
pub fn check_strength(
    passphrase: &Passphrase,
    field: &'static str,
    context: &[&str],
) -> Result<(), Error> {
    let text = passphrase.expose();
    let chars = text.chars().count();
    if chars < 10 {
        return Err(invalid(
            field,
            "must be at least 10 characters; a few unrelated words work well",
        ));
    }
    if chars > 1024 {
        return Err(invalid(field, "must be at most 1024 characters"));
    }
    let estimate = zxcvbn::zxcvbn(text, context);
    if u8::from(estimate.score()) < 3 {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning().map(|w| format!(" ({w})")))
            .unwrap_or_default();
        return Err(invalid(
            field,
            format!("is too easy to guess{hint}; add more unrelated words"),
        ));
    }
    Ok(())
}

/// The blind index by which a national ID number is stored and found.
pub fn national_id_index(ctx: &Context, id: &NationalId) -> Vec<u8> {
    digest::blind_index(
        &ctx.keys.blind_index,
        NATIONAL_ID_LABEL,
        id.expose().as_bytes(),
    )
    .to_vec()
}

fn vault_wrap_aad(citizen: Uuid, by: &'static str) -> Aad {
    Aad::new("vault-key")
        .with("citizen", citizen.as_bytes())
        .with("by", by)
}

fn display_name_aad(citizen: Uuid) -> Aad {
    Aad::new("citizen-display-name").with("citizen", citizen.as_bytes())
}

fn auth_failed() -> Error {
    Error::Unauthenticated("The passkey could not be verified. Please try again.".into())
}

fn escrow_aad(citizen: Uuid) -> Aad {
    Aad::new("national-id-escrow").with("citizen", citizen.as_bytes())
}

/// The national ID behind a citizen, from its escrow (only for an auditor's reasoned and
/// recorded reveal; `None` for accounts made before escrow existed).
pub(crate) fn escrowed_national_id(
    ctx: &Context,
    row: &CitizenRow,
) -> Result<Option<String>, Error> {
    let Some(sealed) = row.national_id_escrow.as_deref() else {
        return Ok(None);
    };
    let bytes = envelope::open(&ctx.keys.identity_escrow, &escrow_aad(row.id), sealed)
        .map_err(|e| Error::Internal(anyhow::anyhow!("escrow of a citizen: {e}")))?;
    String::from_utf8(bytes.to_vec())
        .map(Some)
        .map_err(|e| Error::Internal(e.into()))
}

#[derive(Serialize, Deserialize)]
struct RegisterState {
    citizen_id: Uuid,
    national_id_index: Vec<u8>,
    #[serde(default)]
    national_id_escrow: Vec<u8>,
    display_name: DisplayName,
    registration: PasskeyRegistration,
}

#[derive(Serialize, Deserialize)]
struct LoginState {
    citizen_id: Uuid,
    authentication: PasskeyAuthentication,
}

#[derive(Serialize, Deserialize)]
struct AddPasskeyState {
    citizen_id: Uuid,
    registration: PasskeyRegistration,
}

/// What a finished registration hands back once.
#[derive(Debug)]
pub struct Registered {
    /// The new citizen.
    pub citizen_id: Uuid,
    /// The new (unlocked) session.
    pub session: Issued,
    /// The recovery code, shown once.
    pub recovery_code: String,
}

/// Starts registration: validates the number and name and returns WebAuthn creation
/// options with the ceremony token.
pub async fn register_start(
    ctx: &Context,
    national_id: &str,
    display_name: &str,
    client: &str,
) -> Result<(CreationChallengeResponse, String), Error> {
    ratelimit::check(ctx, ratelimit::REGISTER_PER_ADDR, client).await?;
    let national_id = NationalId::parse(national_id)?;
    let display_name = DisplayName::parse(display_name)?;
    let index = national_id_index(ctx, &national_id);
    if ctx.store.citizen_by_index(&index).await?.is_some() {
        return Err(Error::Conflict(
            "An account with this national ID number already exists. Sign in, or use your recovery code.".into(),
        ));
    }
    let citizen_id = Uuid::new_v4();
    let (options, registration) = ctx
        .passkeys
        .webauthn
        .start_passkey_registration(citizen_id, &display_name.0, &display_name.0, None)
        .map_err(|e| Error::Internal(anyhow::anyhow!("webauthn start: {e}")))?;
    let state = RegisterState {
        citizen_id,
        national_id_index: index,
        national_id_escrow: envelope::seal(
            &ctx.keys.identity_escrow,
            &escrow_aad(citizen_id),
            national_id.expose().as_bytes(),
        ),
        display_name,
        registration,
    };
    let token = passkeys::begin(
        &ctx.store,
        CeremonyKind::Register,
        &state,
        ctx.clock.now_ms(),
    )
    .await?;
    Ok((options, token))
}

/// Finishes registration: verifies the passkey, creates the vault and an unlocked session.
pub async fn register_finish(
    ctx: &Context,
    token: Option<&str>,
    credential: &RegisterPublicKeyCredential,
    passphrase: &Passphrase,
) -> Result<Registered, Error> {
    // Checked before the ceremony is consumed, so a weak passphrase can be corrected and
    // the same passkey response sent again.
    check_strength(passphrase, "passphrase", &[])?;
    let now = ctx.clock.now_ms();
    let state: RegisterState =
        passkeys::finish(&ctx.store, CeremonyKind::Register, token, now).await?;
    let passkey = ctx
        .passkeys
        .webauthn
        .finish_passkey_registration(credential, &state.registration)
        .map_err(|_| auth_failed())?;
    let citizen_id = state.citizen_id;

    let vault_key = VaultKey::generate();
    let (secret_key, public_key) = hpke_seal::generate_keypair();
    let kdf_params = PassphraseKdf::new(ctx.kdf.cost);
    let kek = ctx.kdf.derive(&kdf_params, passphrase).await?;
    let recovery = RecoveryCode::generate();
    let recovery_salt = SecretBytes::random(16);
    let row = CitizenRow {
        id: citizen_id,
        national_id_index: state.national_id_index,
        pseudonym: format!("p-{}", digest::hex(SecretBytes::random(8).expose())),
        display_name_enc: envelope::seal(
            &vault_key,
            &display_name_aad(citizen_id),
            state.display_name.0.as_bytes(),
        ),
        public_key: public_key.to_bytes(),
        secret_key_enc: envelope::seal(
            &vault_key,
            &crate::sealing::secret_key_aad(citizen_id),
            &secret_key.to_bytes(),
        ),
        passphrase_kdf: serde_json::to_string(&kdf_params)
            .map_err(|e| Error::Internal(e.into()))?,
        vault_key_passphrase: wrap::wrap_key(
            &kek,
            &vault_key,
            &vault_wrap_aad(citizen_id, "passphrase"),
        ),
        recovery_salt: recovery_salt.expose().to_vec(),
        vault_key_recovery: wrap::wrap_key(
            &recovery.kek(recovery_salt.expose()),
            &vault_key,
            &vault_wrap_aad(citizen_id, "recovery"),
        ),
        created_at: now,
        activity_seen_seq: 0,
        national_id_escrow: Some(state.national_id_escrow.clone()).filter(|e| !e.is_empty()),
    };
    let credential_row =
        credential_row(Principal::Citizen(citizen_id), &passkey, "Passkey 1", now)?;
    let mut tx = ctx.store.begin().await?;
    tx.insert_citizen(&row).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => {
            Error::Conflict("An account with this national ID number already exists.".into())
        }
        other => other.into(),
    })?;
    tx.insert_credential(&credential_row).await?;
    tx.commit().await?;
    tracing::info!(citizen = %citizen_id, "citizen registered");
    ctx.audit
        .record(crate::audit::citizen_event(&ctx.store, citizen_id, "citizen.register").await)
        .await;

    let session = sessions::create(ctx, Principal::Citizen(citizen_id), Some(&vault_key)).await?;
    Ok(Registered {
        citizen_id,
        session,
        recovery_code: recovery.display().to_string(),
    })
}

pub(crate) fn credential_row(
    owner: Principal,
    passkey: &Passkey,
    label: &str,
    now: i64,
) -> Result<CredentialRow, Error> {
    let (citizen_id, auditor_id) = match owner {
        Principal::Citizen(id) => (Some(id), None),
        Principal::Auditor(id) => (None, Some(id)),
    };
    Ok(CredentialRow {
        id: Uuid::new_v4(),
        citizen_id,
        auditor_id,
        credential_id: passkey.cred_id().to_vec(),
        passkey: serde_json::to_string(passkey).map_err(|e| Error::Internal(e.into()))?,
        label: label.to_owned(),
        created_at: now,
        last_used_at: None,
    })
}

pub(crate) fn stored_passkeys(rows: &[CredentialRow]) -> Result<Vec<Passkey>, Error> {
    rows.iter()
        .map(|r| serde_json::from_str(&r.passkey).map_err(|e| Error::Internal(e.into())))
        .collect()
}

/// Starts sign-in for the citizen with this national ID.
pub async fn login_start(
    ctx: &Context,
    national_id: &str,
    client: &str,
) -> Result<(RequestChallengeResponse, String), Error> {
    ratelimit::check(ctx, ratelimit::LOGIN_PER_ADDR, client).await?;
    let national_id = NationalId::parse(national_id)?;
    let index = national_id_index(ctx, &national_id);
    ratelimit::check(
        ctx,
        ratelimit::LOGIN_PER_ACCOUNT,
        &digest::hex(&index[..16]),
    )
    .await?;
    let citizen = ctx
        .store
        .citizen_by_index(&index)
        .await?
        .ok_or_else(|| Error::Invalid {
            field: "national_id",
            message: "no account uses this national ID number; register first".into(),
        })?;
    let creds = stored_passkeys(&ctx.store.citizen_credentials(citizen.id).await?)?;
    let (options, authentication) = ctx
        .passkeys
        .webauthn
        .start_passkey_authentication(&creds)
        .map_err(|e| Error::Internal(anyhow::anyhow!("webauthn start: {e}")))?;
    let state = LoginState {
        citizen_id: citizen.id,
        authentication,
    };
    let token =
        passkeys::begin(&ctx.store, CeremonyKind::Login, &state, ctx.clock.now_ms()).await?;
    Ok((options, token))
}

/// Finishes sign-in: verifies the assertion against this citizen's passkeys only, and
/// opens a locked session.
pub async fn login_finish(
    ctx: &Context,
    token: Option<&str>,
    credential: &PublicKeyCredential,
) -> Result<(Uuid, Issued), Error> {
    let now = ctx.clock.now_ms();
    let state: LoginState = passkeys::finish(&ctx.store, CeremonyKind::Login, token, now).await?;
    let rows = ctx.store.citizen_credentials(state.citizen_id).await?;
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
        let event = crate::audit::citizen_event(&ctx.store, state.citizen_id, "login")
            .await
            .outcome("failed")
            .detail("the passkey assertion did not verify");
        ctx.audit.record(event).await;
        return Err(auth_failed());
    }
    let issued = sessions::create(ctx, Principal::Citizen(state.citizen_id), None).await?;
    ctx.audit
        .record(crate::audit::citizen_event(&ctx.store, state.citizen_id, "login").await)
        .await;
    Ok((state.citizen_id, issued))
}

/// The per-account and per-address limits on guessing a vault secret. Only failures
/// count, so a citizen who types the secret right is never slowed down.
struct SecretLimits {
    account: (ratelimit::Limit, String),
    address: (ratelimit::Limit, String),
}

impl SecretLimits {
    fn unlock(citizen: Uuid, client: &str) -> Self {
        Self {
            account: (ratelimit::UNLOCK_PER_ACCOUNT, citizen.to_string()),
            address: (ratelimit::UNLOCK_PER_ADDR, client.to_owned()),
        }
    }

    fn recover(citizen: Uuid, client: &str) -> Self {
        Self {
            account: (ratelimit::RECOVER_PER_ACCOUNT, citizen.to_string()),
            address: (ratelimit::RECOVER_PER_ADDR, client.to_owned()),
        }
    }

    async fn guard(&self, ctx: &Context) -> Result<(), Error> {
        ratelimit::guard(ctx, self.address.0, &self.address.1).await?;
        ratelimit::guard(ctx, self.account.0, &self.account.1).await
    }

    async fn on_failure<T>(&self, ctx: &Context, result: Result<T, Error>) -> Result<T, Error> {
        if matches!(result, Err(Error::WrongSecret)) {
            ratelimit::record_failure(ctx, self.address.0, &self.address.1).await?;
            ratelimit::record_failure(ctx, self.account.0, &self.account.1).await?;
        }
        result
    }
}

async fn unwrap_with_passphrase(
    ctx: &Context,
    citizen: &CitizenRow,
    passphrase: &Passphrase,
) -> Result<VaultKey, Error> {
    let params: PassphraseKdf =
        serde_json::from_str(&citizen.passphrase_kdf).map_err(|e| Error::Internal(e.into()))?;
    let kek = ctx.kdf.derive(&params, passphrase).await?;
    wrap::unwrap_key(
        &kek,
        &citizen.vault_key_passphrase,
        &vault_wrap_aad(citizen.id, "passphrase"),
    )
    .map_err(|_| Error::WrongSecret)
}

/// Unlocks the vault in this session with the passphrase.
#[tracing::instrument(skip_all)]
pub async fn unlock(
    ctx: &Context,
    session: &mut Session,
    passphrase: &Passphrase,
    client: &str,
) -> Result<(), Error> {
    let citizen_id = session.citizen()?;
    let limits = SecretLimits::unlock(citizen_id, client);
    limits.guard(ctx).await?;
    let citizen = ctx.store.citizen(citizen_id).await?;
    let opened = unwrap_with_passphrase(ctx, &citizen, passphrase).await;
    let event = crate::audit::citizen_event(&ctx.store, citizen_id, "vault.unlock").await;
    let event = match &opened {
        Ok(_) => event,
        Err(_) => event.outcome("failed").detail("wrong passphrase"),
    };
    ctx.audit.record(event).await;
    let vault_key = limits.on_failure(ctx, opened).await?;
    session.unlock(ctx, &vault_key).await?;
    tracing::info!(citizen = %citizen_id, "vault unlocked");
    crate::sealing::pick_up_deposits(ctx, citizen_id, &vault_key).await?;
    Ok(())
}

/// Sets a new passphrase with the recovery code; the old passphrase wrap and the used
/// code are replaced, and a fresh recovery code is returned (shown once).
#[tracing::instrument(skip_all)]
pub async fn recover(
    ctx: &Context,
    session: &mut Session,
    recovery_code: &str,
    new_passphrase: &Passphrase,
    client: &str,
) -> Result<String, Error> {
    let citizen_id = session.citizen()?;
    let limits = SecretLimits::recover(citizen_id, client);
    limits.guard(ctx).await?;
    check_strength(new_passphrase, "new_passphrase", &[])?;
    let citizen = ctx.store.citizen(citizen_id).await?;
    let opened = RecoveryCode::parse(recovery_code)
        .and_then(|code| {
            wrap::unwrap_key::<VaultKey>(
                &code.kek(&citizen.recovery_salt),
                &citizen.vault_key_recovery,
                &vault_wrap_aad(citizen_id, "recovery"),
            )
        })
        .map_err(|_| Error::WrongSecret);
    let vault_key = limits.on_failure(ctx, opened).await?;
    let (kdf_json, passphrase_wrap) =
        passphrase_wrap(ctx, citizen_id, &vault_key, new_passphrase).await?;
    let fresh = RecoveryCode::generate();
    let salt = SecretBytes::random(16);
    let recovery_wrap = wrap::wrap_key(
        &fresh.kek(salt.expose()),
        &vault_key,
        &vault_wrap_aad(citizen_id, "recovery"),
    );
    let mut tx = ctx.store.begin().await?;
    tx.set_passphrase_wrap(citizen_id, &kdf_json, &passphrase_wrap)
        .await?;
    tx.set_recovery_wrap(citizen_id, salt.expose(), &recovery_wrap)
        .await?;
    tx.commit().await?;
    session.unlock(ctx, &vault_key).await?;
    tracing::info!(citizen = %citizen_id, "vault recovered with the recovery code");
    Ok(fresh.display().to_string())
}

async fn passphrase_wrap(
    ctx: &Context,
    citizen_id: Uuid,
    vault_key: &VaultKey,
    passphrase: &Passphrase,
) -> Result<(String, Vec<u8>), Error> {
    let params = PassphraseKdf::new(ctx.kdf.cost);
    let kek = ctx.kdf.derive(&params, passphrase).await?;
    let json = serde_json::to_string(&params).map_err(|e| Error::Internal(e.into()))?;
    Ok((
        json,
        wrap::wrap_key(&kek, vault_key, &vault_wrap_aad(citizen_id, "passphrase")),
    ))
}

/// Changes the passphrase: re-wraps the vault key; documents are not touched.
#[tracing::instrument(skip_all)]
pub async fn change_passphrase(
    ctx: &Context,
    session: &Session,
    current: &Passphrase,
    new: &Passphrase,
    client: &str,
) -> Result<(), Error> {
    let citizen_id = session.citizen()?;
    let limits = SecretLimits::unlock(citizen_id, client);
    limits.guard(ctx).await?;
    check_strength(new, "new_passphrase", &[])?;
    let citizen = ctx.store.citizen(citizen_id).await?;
    let vault_key = limits
        .on_failure(ctx, unwrap_with_passphrase(ctx, &citizen, current).await)
        .await?;
    let (kdf_json, wrap) = passphrase_wrap(ctx, citizen_id, &vault_key, new).await?;
    let mut tx = ctx.store.begin().await?;
    tx.set_passphrase_wrap(citizen_id, &kdf_json, &wrap).await?;
    tx.commit().await?;
    Ok(())
}

/// What a citizen sees of their own account.
#[derive(Debug, Serialize)]
pub struct Profile {
    /// The citizen's id.
    pub citizen_id: Uuid,
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

/// Starts adding another passkey to the signed-in citizen.
pub async fn add_passkey_start(
    ctx: &Context,
    session: &Session,
) -> Result<(CreationChallengeResponse, String), Error> {
    let citizen_id = session.citizen()?;
    let rows = ctx.store.citizen_credentials(citizen_id).await?;
    let exclude = stored_passkeys(&rows)?
        .iter()
        .map(|p| p.cred_id().clone())
        .collect();
    let (options, registration) = ctx
        .passkeys
        .webauthn
        .start_passkey_registration(citizen_id, "Custodia", "Custodia", Some(exclude))
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
        Some(l) if l.chars().count() <= 60 && !l.chars().any(char::is_control) => l.to_owned(),
        Some(_) => return Err(invalid("label", "must be at most 60 characters")),
        None => format!("Passkey {}", count + 1),
    };
    let row = credential_row(Principal::Citizen(citizen_id), &passkey, &label, now)?;
    let mut tx = ctx.store.begin().await?;
    tx.insert_credential(&row).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => {
            Error::Conflict("This passkey is already registered.".into())
        }
        other => other.into(),
    })?;
    tx.commit().await?;
    Ok(row.id)
}

/// Removes one of the citizen's passkeys; the last one cannot be removed.
#[tracing::instrument(skip_all, fields(passkey = %id))]
pub async fn remove_passkey(ctx: &Context, session: &Session, id: Uuid) -> Result<(), Error> {
    let citizen_id = session.citizen()?;
    let mut tx = ctx.store.begin().await?;
    if tx.count_citizen_credentials(citizen_id).await? <= 1 {
        return Err(Error::Conflict(
            "This is your only passkey; add another before removing it.".into(),
        ));
    }
    tx.delete_citizen_credential(citizen_id, id).await?;
    tx.commit().await?;
    Ok(())
}
