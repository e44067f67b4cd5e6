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

mod account;
pub mod eid;
mod enrolment;
mod national_id;
mod vault;

pub use enrolment::{ENROLMENT_DAYS, Enroller, EnrolmentCode, enrol};

pub use account::{
    PasskeyInfo, Profile, add_passkey_finish, add_passkey_start, end_all_sessions, profile,
    remove_passkey, step_up_finish, step_up_start,
};
pub use vault::{change_passphrase, recover, unlock};

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

use crate::config::Registration;
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::ids::CitizenId;
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
        if !name.chars().all(crate::error::is_displayable) {
            return Err(invalid(
                "display_name",
                "must not contain control characters or invisible formatting",
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

fn vault_wrap_aad(citizen: CitizenId, by: &'static str) -> Aad {
    Aad::new("vault-key")
        .with("citizen", citizen.as_bytes())
        .with("by", by)
}

fn display_name_aad(citizen: CitizenId) -> Aad {
    Aad::new("citizen-display-name").with("citizen", citizen.as_bytes())
}

/// A citizen's display name, opened with her vault key.
pub fn display_name(row: &CitizenRow, vault_key: &VaultKey) -> Result<String, Error> {
    let bytes = envelope::open(vault_key, &display_name_aad(row.id), &row.display_name_enc)
        .map_err(|e| Error::Internal(anyhow::anyhow!("display name: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn auth_failed() -> Error {
    Error::Unauthenticated("The passkey could not be verified. Please try again.".into())
}

fn escrow_aad(citizen: CitizenId) -> Aad {
    Aad::new("national-id-escrow").with("citizen", citizen.as_bytes())
}

/// Opens a national ID from the old escrow under the `identity-escrow` service key: only
/// to move it to the oversight key when that key is set up (`custodia audit
/// oversight-key`), after which no escrow remains.
pub(crate) fn open_escrow(
    ctx: &Context,
    citizen: CitizenId,
    sealed: &[u8],
) -> Result<String, Error> {
    let bytes = envelope::open(&ctx.keys.identity_escrow, &escrow_aad(citizen), sealed)
        .map_err(|e| Error::Internal(anyhow::anyhow!("escrow of a citizen: {e}")))?;
    String::from_utf8(bytes.to_vec()).map_err(|e| Error::Internal(e.into()))
}

#[derive(Serialize, Deserialize)]
struct RegisterState {
    citizen_id: CitizenId,
    national_id_index: Vec<u8>,
    /// The national ID sealed to the oversight key current at start, and that key's id.
    #[serde(default)]
    national_id_sealed: Option<(Uuid, Vec<u8>)>,
    display_name: DisplayName,
    registration: PasskeyRegistration,
    /// The enrolment code this registration will use up.
    #[serde(default)]
    enrolment: Option<Uuid>,
}

#[derive(Serialize, Deserialize)]
struct LoginState {
    /// `None` for a national ID without an account (a decoy ceremony that never verifies).
    citizen_id: Option<CitizenId>,
    authentication: PasskeyAuthentication,
}

#[derive(Serialize, Deserialize)]
struct AddPasskeyState {
    citizen_id: CitizenId,
    registration: PasskeyRegistration,
}

/// What a finished registration hands back once.
#[derive(Debug)]
pub struct Registered {
    /// The new citizen.
    pub citizen_id: CitizenId,
    /// The new session: unlocked for a new account, and for a re-enrolment whose
    /// passphrase was right.
    pub session: Issued,
    /// The recovery code, shown once (a new account only).
    pub recovery_code: Option<String>,
    /// Whether the session's vault is open.
    pub unlocked: bool,
}

/// Starts registration: validates the number, the name and the enrolment code, and returns
/// WebAuthn creation options with the ceremony token.
///
/// With an enrolment code for a national ID that already has an account, this is a
/// re-enrolment: the citizen lost every passkey, and finishing replaces them all.
#[tracing::instrument(skip_all)]
pub async fn register_start(
    ctx: &Context,
    national_id: &str,
    display_name: &str,
    enrolment_code: Option<&str>,
    client: &str,
) -> Result<(CreationChallengeResponse, String), Error> {
    ratelimit::check(ctx, ratelimit::REGISTER_PER_ADDR, client).await?;
    let national_id = NationalId::parse(national_id)?;
    let display_name = DisplayName::parse(display_name)?;
    let index = national_id_index(ctx, &national_id);
    let existing = ctx.store.citizen_by_index(&index).await?;
    let typed = enrolment_code.map(str::trim).filter(|c| !c.is_empty());
    let enrolment = match (&existing, typed) {
        // Without a code, whether the ID has an account is not told: the same answer
        // either way (only `open` registration, for demonstrations, says so).
        (_, None) if ctx.config.registration == Registration::Enrolment => {
            return Err(invalid(
                "enrolment_code",
                "is required: registration needs the one-time code issued for your national ID \
                 number (by letter, at a service counter, or by an enrolling agency)",
            ));
        }
        (_, None) if ctx.config.registration == Registration::Oidc => {
            return Err(invalid(
                "enrolment_code",
                "is required: sign in with your national eID first (GET /auth/oidc/start), \
                 or give the one-time code issued for your national ID number",
            ));
        }
        (Some(_), None) => {
            return Err(Error::Conflict(
                "An account with this national ID number already exists. Sign in, use your \
                 recovery code, or — if you have lost every passkey — ask for an enrolment code."
                    .into(),
            ));
        }
        (_, Some(code)) => Some(enrolment::live(ctx, &index, code).await?),
        (None, None) => None,
    };
    let (citizen_id, kind) = match &existing {
        None => (CitizenId::random(), CeremonyKind::Register),
        Some(citizen) => (citizen.id, CeremonyKind::Reenrol),
    };
    let (options, registration) = ctx
        .passkeys
        .webauthn
        .start_passkey_registration(citizen_id.uuid(), &display_name.0, &display_name.0, None)
        .map_err(|e| Error::Internal(anyhow::anyhow!("webauthn start: {e}")))?;
    let state = RegisterState {
        citizen_id,
        national_id_index: index,
        national_id_sealed: match (kind, ctx.store.current_oversight_key().await?) {
            (CeremonyKind::Register, Some(key)) => Some((
                key.id,
                crate::sealing::seal_national_id(
                    &key.public_key,
                    key.id,
                    citizen_id,
                    national_id.expose(),
                )?,
            )),
            _ => None,
        },
        display_name,
        registration,
        enrolment,
    };
    let token = passkeys::begin(&ctx.store, kind, &state, ctx.clock.now_ms()).await?;
    Ok((options, token))
}

/// Finishes registration: verifies the passkey, creates the vault and an unlocked session.
#[tracing::instrument(skip_all)]
pub async fn register_finish(
    ctx: &Context,
    token: Option<&str>,
    credential: &RegisterPublicKeyCredential,
    passphrase: Option<&Passphrase>,
    client: &str,
) -> Result<Registered, Error> {
    if passkeys::is_kind(&ctx.store, CeremonyKind::Reenrol, token).await? {
        return reenrol_finish(ctx, token, credential, passphrase, client).await;
    }
    // Checked before the ceremony is consumed, so a weak passphrase can be corrected and
    // the same passkey response sent again.
    let passphrase =
        passphrase.ok_or_else(|| invalid("passphrase", "is required for a new account"))?;
    check_strength(passphrase, "passphrase", &[])?;
    let now = ctx.clock.now_ms();
    let (state, passkey) =
        registration_finish(ctx, CeremonyKind::Register, token, credential).await?;
    let citizen_id = state.citizen_id;

    let kdf_params = PassphraseKdf::new(ctx.kdf.cost);
    let kek = ctx
        .kdf
        .derive(&citizen_id.to_string(), &kdf_params, passphrase)
        .await?;
    let (row, vault_key, recovery) = new_vault_row(
        citizen_id,
        state.national_id_index,
        &state.display_name,
        &kdf_params,
        &kek,
        now,
    )?;
    let credential_row =
        credential_row(Principal::Citizen(citizen_id), &passkey, "Passkey 1", now)?;
    let mut tx = ctx.store.begin().await?;
    if let Some(code) = state.enrolment
        && !tx.use_enrolment(code, now).await?
    {
        return Err(enrolment::spent());
    }
    tx.insert_citizen(&row).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => {
            Error::Conflict("An account with this national ID number already exists.".into())
        }
        other => other.into(),
    })?;
    tx.insert_credential(&credential_row).await?;
    if let Some((key, sealed)) = &state.national_id_sealed {
        tx.set_sealed_national_id(citizen_id, *key, sealed).await?;
    }
    // The account, its first session and its record commit together.
    let session = sessions::create(
        ctx,
        &mut tx,
        Principal::Citizen(citizen_id),
        Some(&vault_key),
    )
    .await?;
    let event = crate::audit::by_citizen(&row.pseudonym, crate::audit::Action::CitizenRegister);
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    tracing::info!(citizen = %citizen_id, "citizen registered");
    Ok(Registered {
        citizen_id,
        session,
        recovery_code: Some(recovery.display().to_string()),
        unlocked: true,
    })
}

/// A new citizen's row: a fresh vault key sealing her name and X25519 private key,
/// wrapped under `passphrase_kek` (what `kdf_params` derive from her passphrase) and under a
/// fresh recovery code, returned with the row.
fn new_vault_row(
    citizen_id: CitizenId,
    national_id_index: Vec<u8>,
    display_name: &DisplayName,
    kdf_params: &PassphraseKdf,
    passphrase_kek: &custodia_crypto::KeyEncryptionKey,
    now: i64,
) -> Result<(CitizenRow, VaultKey, RecoveryCode), Error> {
    let vault_key = VaultKey::generate();
    let (secret_key, public_key) = hpke_seal::generate_keypair();
    let recovery = RecoveryCode::generate();
    let recovery_salt = SecretBytes::random(16);
    let row = CitizenRow {
        id: citizen_id,
        national_id_index,
        pseudonym: format!("p-{}", digest::hex(SecretBytes::random(8).expose())),
        display_name_enc: envelope::seal(
            &vault_key,
            &display_name_aad(citizen_id),
            display_name.0.as_bytes(),
        ),
        public_key: public_key.to_bytes(),
        secret_key_enc: envelope::seal(
            &vault_key,
            &crate::sealing::secret_key_aad(citizen_id),
            &secret_key.to_bytes(),
        ),
        passphrase_kdf: serde_json::to_string(kdf_params).map_err(|e| Error::Internal(e.into()))?,
        vault_key_passphrase: wrap::wrap_key(
            passphrase_kek,
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
        national_id_escrow: None,
    };
    Ok((row, vault_key, recovery))
}

/// An account made for a ward who has none, held by her guardian until she comes of age
/// (`delegations::guardianship`). It has no passkey, so nobody signs in to it; its vault
/// key is wrapped under a random key nobody keeps (no passphrase opens it) and under a
/// hand-over code, which is sealed to the guardian. At majority the ward enrols a passkey
/// with an enrolment code issued to her in person (a re-enrolment) and recovers her vault
/// with the hand-over code: a recorded step that rotates the vault key.
pub struct HeldAccount {
    /// The new citizen row (insert it in the guardianship's transaction).
    pub row: CitizenRow,
    /// Its vault key, to key the guardian's delegation now.
    pub vault_key: VaultKey,
    /// The one-time hand-over code (the account's recovery code).
    pub handover: RecoveryCode,
    /// The national ID sealed to the oversight key, with that key's id, if one is set up.
    pub national_id_sealed: Option<(Uuid, Vec<u8>)>,
}

/// Makes (does not store) an account for a ward without one.
pub async fn held_account(
    ctx: &Context,
    national_id: &NationalId,
    display_name: &str,
) -> Result<HeldAccount, Error> {
    let display_name = DisplayName::parse(display_name)
        .map_err(|_| invalid("ward_display_name", "must be 1 to 100 characters"))?;
    let citizen_id = CitizenId::random();
    // Valid parameters, but the key they would derive is random and dropped: no
    // passphrase opens this vault until the ward sets one by recovering it.
    let unknown: custodia_crypto::KeyEncryptionKey = custodia_crypto::SymmetricKey::generate();
    let (row, vault_key, handover) = new_vault_row(
        citizen_id,
        national_id_index(ctx, national_id),
        &display_name,
        &PassphraseKdf::new(ctx.kdf.cost),
        &unknown,
        ctx.clock.now_ms(),
    )?;
    let national_id_sealed = match ctx.store.current_oversight_key().await? {
        Some(key) => Some((
            key.id,
            crate::sealing::seal_national_id(
                &key.public_key,
                key.id,
                citizen_id,
                national_id.expose(),
            )?,
        )),
        None => None,
    };
    Ok(HeldAccount {
        row,
        vault_key,
        handover,
        national_id_sealed,
    })
}

/// Finishes a re-enrolment: the code is used up, every earlier passkey removed and every
/// session ended (whoever holds a lost passkey or an old cookie is out), and the new
/// passkey stored. The vault opens only with the passphrase, when it is sent and right.
async fn reenrol_finish(
    ctx: &Context,
    token: Option<&str>,
    credential: &RegisterPublicKeyCredential,
    passphrase: Option<&Passphrase>,
    client: &str,
) -> Result<Registered, Error> {
    let now = ctx.clock.now_ms();
    let (state, passkey) =
        registration_finish(ctx, CeremonyKind::Reenrol, token, credential).await?;
    let citizen_id = state.citizen_id;
    let code = state
        .enrolment
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("a re-enrolment without its code")))?;
    let row = credential_row(
        Principal::Citizen(citizen_id),
        &passkey,
        "Passkey (re-enrolled)",
        now,
    )?;
    let event =
        crate::audit::citizen_event(&ctx.store, citizen_id, crate::audit::Action::CitizenReenrol)
            .await
            .objects([code.to_string()])
            .detail("every earlier passkey removed and every session ended");
    let mut tx = ctx.store.begin().await?;
    if !tx.use_enrolment(code, now).await? {
        return Err(enrolment::spent());
    }
    tx.clear_citizen_access(citizen_id).await?;
    tx.insert_credential(&row).await?;
    let session = sessions::create(ctx, &mut tx, Principal::Citizen(citizen_id), None).await?;
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    tracing::info!(citizen = %citizen_id, "citizen re-enrolled");
    let mut unlocked = false;
    if let Some(passphrase) = passphrase {
        let mut opened = sessions::authenticate(ctx, Some(&session.cookie)).await?;
        match unlock(ctx, &mut opened, passphrase, client).await {
            Ok(()) => unlocked = true,
            // The passkey is enrolled either way; the citizen can unlock or recover next.
            Err(Error::WrongSecret | Error::RateLimited { .. } | Error::Busy) => {}
            Err(other) => return Err(other),
        }
    }
    Ok(Registered {
        citizen_id,
        session,
        recovery_code: None,
        unlocked,
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

/// WebAuthn request options for this citizen's passkeys, and the state to check the answer.
async fn authentication_start(
    ctx: &Context,
    citizen: CitizenId,
) -> Result<(RequestChallengeResponse, PasskeyAuthentication), Error> {
    let creds = stored_passkeys(&ctx.store.citizen_credentials(citizen).await?)?;
    ctx.passkeys
        .webauthn
        .start_passkey_authentication(&creds)
        .map_err(|e| Error::Internal(anyhow::anyhow!("webauthn start: {e}")))
}

/// Takes a registration ceremony of `kind` and verifies the new passkey against it.
async fn registration_finish(
    ctx: &Context,
    kind: CeremonyKind,
    token: Option<&str>,
    credential: &RegisterPublicKeyCredential,
) -> Result<(RegisterState, Passkey), Error> {
    let state: RegisterState =
        passkeys::finish(&ctx.store, kind, token, ctx.clock.now_ms()).await?;
    let passkey = ctx
        .passkeys
        .webauthn
        .finish_passkey_registration(credential, &state.registration)
        .map_err(|_| auth_failed())?;
    Ok((state, passkey))
}

pub(crate) fn stored_passkeys(rows: &[CredentialRow]) -> Result<Vec<Passkey>, Error> {
    rows.iter()
        .map(|r| serde_json::from_str(&r.passkey).map_err(|e| Error::Internal(e.into())))
        .collect()
}

/// Starts sign-in for the citizen with this national ID.
///
/// Limited per client address only. A per-account limit on sign-in protects nothing a
/// passkey needs (an assertion cannot be guessed) and lets anyone who knows a national ID —
/// every agency holding a grant does — lock its owner out of revoking that grant.
///
/// No oracle: a national ID without an account gets options of the same shape, naming a
/// credential derived from the ID (stable across starts, as a real one is), and its finish
/// fails like a wrong passkey.
#[tracing::instrument(skip_all)]
pub async fn login_start(
    ctx: &Context,
    national_id: &str,
    client: &str,
) -> Result<(RequestChallengeResponse, String), Error> {
    ratelimit::check(ctx, ratelimit::LOGIN_PER_ADDR, client).await?;
    let national_id = NationalId::parse(national_id)?;
    let index = national_id_index(ctx, &national_id);
    let (citizen_id, (options, authentication)) = match ctx.store.citizen_by_index(&index).await? {
        Some(citizen) => (
            Some(citizen.id),
            authentication_start(ctx, citizen.id).await?,
        ),
        None => {
            // The same passkey read a real account makes (it finds nothing), so the
            // decoy answer takes as long as a real one (BENCHMARKS.md, "No oracle").
            ctx.store.citizen_credentials(CitizenId::random()).await?;
            (
                None,
                ctx.passkeys
                    .webauthn
                    .start_passkey_authentication(&[ctx.passkeys.decoy_for(&index)?])
                    .map_err(|e| Error::Internal(anyhow::anyhow!("webauthn start: {e}")))?,
            )
        }
    };
    let state = LoginState {
        citizen_id,
        authentication,
    };
    let token =
        passkeys::begin(&ctx.store, CeremonyKind::Login, &state, ctx.clock.now_ms()).await?;
    Ok((options, token))
}

/// Finishes sign-in: verifies the assertion against this citizen's passkeys only, and
/// opens a locked session.
#[tracing::instrument(skip_all)]
pub async fn login_finish(
    ctx: &Context,
    token: Option<&str>,
    credential: &PublicKeyCredential,
) -> Result<(CitizenId, Issued), Error> {
    let now = ctx.clock.now_ms();
    let state: LoginState = passkeys::finish(&ctx.store, CeremonyKind::Login, token, now).await?;
    let Some(citizen_id) = state.citizen_id else {
        return Err(auth_failed());
    };
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
    if !verified {
        let event =
            crate::audit::citizen_event(&ctx.store, citizen_id, crate::audit::Action::Login)
                .await
                .outcome(crate::audit::Outcome::Failed)
                .detail("the passkey assertion did not verify");
        ctx.audit.record(event).await;
        return Err(auth_failed());
    }
    let event =
        crate::audit::citizen_event(&ctx.store, citizen_id, crate::audit::Action::Login).await;
    let issued = sessions::sign_in(ctx, Principal::Citizen(citizen_id), event).await?;
    Ok((citizen_id, issued))
}
