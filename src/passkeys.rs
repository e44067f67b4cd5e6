//! Passkeys (WebAuthn) and the server-side state of their ceremonies.
//!
//! Ceremony state lives in the database so any node can finish what another started. The
//! client holds a ceremony token (`id ‖ secret`, in a short-lived cookie); the state is
//! sealed under a key derived from the secret, so the database alone cannot read it. A
//! ceremony expires after five minutes and is deleted as it is finished: a replayed or
//! swapped finish finds nothing and is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia_crypto::{Aad, KeyEncryptionKey, SecretBytes, envelope, kdf};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use webauthn_rs::prelude::{Passkey, Url};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::error::Error;
use crate::store::Store;
use crate::store::sessions::CeremonyRow;

/// How long a ceremony may take.
pub const CEREMONY_TTL_MS: i64 = 5 * 60 * 1000;

/// The relying party.
pub struct Passkeys {
    /// The configured webauthn-rs relying party.
    pub webauthn: Webauthn,
    /// The origin browsers use.
    pub origin: Url,
    /// A real passkey made at start and never stored, whose public half stands in for the
    /// passkeys of a national ID that has no account (see [`Passkeys::decoy_for`]).
    decoy: serde_json::Value,
}

impl Passkeys {
    /// A relying party for `origin` (its host is the RP id).
    pub fn new(origin: &Url) -> anyhow::Result<Self> {
        let rp_id = origin
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("public URL has no host"))?;
        let webauthn = WebauthnBuilder::new(rp_id, origin)?
            .rp_name("Custodia")
            .build()?;
        let decoy = make_decoy(&webauthn, origin)?;
        Ok(Self {
            webauthn,
            origin: origin.clone(),
            decoy,
        })
    }

    /// A passkey for a national ID without an account: the decoy with a credential id
    /// derived from `seed` (the ID's blind index), so sign-in options for an unknown ID look
    /// like — and stay as stable as — a real account's, and sign-in start is no oracle for
    /// who is registered. No assertion can ever verify against it.
    pub fn decoy_for(&self, seed: &[u8]) -> Result<Passkey, Error> {
        let id = custodia_crypto::digest::sha256(
            &[b"custodia decoy credential".as_slice(), seed].concat(),
        );
        let mut json = self.decoy.clone();
        let slot = json
            .get_mut("cred")
            .and_then(|c| c.get_mut("cred_id"))
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("decoy passkey has no cred_id")))?;
        *slot = serde_json::Value::String(URL_SAFE_NO_PAD.encode(&id[..16]));
        serde_json::from_value(json).map_err(|e| Error::Internal(e.into()))
    }
}

/// Registers a software passkey with `webauthn` once, in memory, for [`Passkeys::decoy_for`].
fn make_decoy(webauthn: &Webauthn, origin: &Url) -> anyhow::Result<serde_json::Value> {
    use webauthn_authenticator_rs::WebauthnAuthenticator;
    use webauthn_authenticator_rs::softpasskey::SoftPasskey;
    let (options, state) =
        webauthn.start_passkey_registration(Uuid::new_v4(), "decoy", "decoy", None)?;
    let credential = SoftPasskey::new(true)
        .do_registration(origin.clone(), options)
        .map_err(|e| anyhow::anyhow!("decoy passkey: {e:?}"))?;
    let passkey = webauthn.finish_passkey_registration(&credential, &state)?;
    Ok(serde_json::to_value(passkey)?)
}

/// Kinds of ceremony; a token of one kind never finishes another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    /// A new citizen's first passkey.
    Register,
    /// A citizen who lost every passkey enrolling a new one with an enrolment code.
    Reenrol,
    /// A citizen logging in.
    Login,
    /// A logged-in citizen adding a passkey.
    AddPasskey,
    /// A signed-in citizen confirming an account change with a passkey.
    StepUp,
    /// An auditor enrolling from an invite.
    AuditorEnrol,
    /// An auditor logging in.
    AuditorLogin,
    /// A citizen away at the national eID provider (state, nonce and PKCE verifier).
    Eid,
}

impl CeremonyKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Reenrol => "reenrol",
            Self::Login => "login",
            Self::AddPasskey => "add-passkey",
            Self::StepUp => "step-up",
            Self::AuditorEnrol => "auditor-enrol",
            Self::AuditorLogin => "auditor-login",
            Self::Eid => "eid",
        }
    }
}

fn state_key(secret: &[u8]) -> KeyEncryptionKey {
    kdf::derive_from_bytes(secret, "ceremony-state")
}

fn state_aad(id: Uuid, kind: CeremonyKind) -> Aad {
    Aad::new("ceremony")
        .with("id", id.as_bytes())
        .with("kind", kind.as_str())
}

/// Stores sealed ceremony state and returns the token the client must present to finish.
pub async fn begin<T: Serialize>(
    store: &Store,
    kind: CeremonyKind,
    state: &T,
    now_ms: i64,
) -> Result<String, Error> {
    let id = Uuid::new_v4();
    let secret = SecretBytes::random(32);
    let json =
        zeroize::Zeroizing::new(serde_json::to_vec(state).map_err(|e| Error::Internal(e.into()))?);
    let sealed = envelope::seal(&state_key(secret.expose()), &state_aad(id, kind), &json);
    store
        .insert_ceremony(&CeremonyRow {
            id,
            kind: kind.as_str().to_owned(),
            state: URL_SAFE_NO_PAD.encode(sealed),
            subject: None,
            created_at: now_ms,
            expires_at: now_ms + CEREMONY_TTL_MS,
        })
        .await?;
    let mut token = id.as_bytes().to_vec();
    token.extend_from_slice(secret.expose());
    Ok(URL_SAFE_NO_PAD.encode(token))
}

/// Whether `token` names an open ceremony of `kind` (nothing is taken). Lets a finish that
/// serves two kinds check what it needs before the ceremony is spent.
pub async fn is_kind(
    store: &Store,
    kind: CeremonyKind,
    token: Option<&str>,
) -> Result<bool, Error> {
    let Some(id) = token
        .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
        .filter(|t| t.len() == 48)
        .and_then(|t| Uuid::from_slice(t.get(..16)?).ok())
    else {
        return Ok(false);
    };
    Ok(store.ceremony_kind(id).await?.as_deref() == Some(kind.as_str()))
}

/// Takes (deletes) the ceremony named by `token` and opens its state. Missing, expired,
/// already finished, of another kind, or tampered: all refused alike.
pub async fn finish<T: DeserializeOwned>(
    store: &Store,
    kind: CeremonyKind,
    token: Option<&str>,
    now_ms: i64,
) -> Result<T, Error> {
    let refused = || {
        Error::Unauthenticated(
            "This sign-in attempt has expired or was already used; please start again.".into(),
        )
    };
    let raw = token
        .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
        .filter(|t| t.len() == 48)
        .ok_or_else(refused)?;
    let raw = SecretBytes::new(raw);
    let (id_bytes, secret) = raw.expose().split_at(16);
    let id = Uuid::from_slice(id_bytes).map_err(|_| refused())?;
    let row = store.take_ceremony(id).await?.ok_or_else(refused)?;
    if row.kind != kind.as_str() || row.expires_at <= now_ms {
        return Err(refused());
    }
    let sealed = URL_SAFE_NO_PAD.decode(&row.state).map_err(|_| refused())?;
    let json =
        envelope::open(&state_key(secret), &state_aad(id, kind), &sealed).map_err(|_| refused())?;
    serde_json::from_slice(&json).map_err(|e| Error::Internal(e.into()))
}

/// Checks a sign-in assertion against `owner_rows` (that principal's passkeys only) and
/// records the credential's new counter. `false` when it does not verify.
pub async fn verify_assertion(
    passkeys: &Passkeys,
    store: &Store,
    authentication: &webauthn_rs::prelude::PasskeyAuthentication,
    credential: &webauthn_rs::prelude::PublicKeyCredential,
    owner_rows: &[crate::store::citizens::CredentialRow],
    now_ms: i64,
) -> Result<bool, Error> {
    let Ok(result) = passkeys
        .webauthn
        .finish_passkey_authentication(credential, authentication)
    else {
        return Ok(false);
    };
    let Some(row) = owner_rows
        .iter()
        .find(|r| r.credential_id.as_slice() == result.cred_id().as_slice())
    else {
        return Ok(false);
    };
    let mut passkey: webauthn_rs::prelude::Passkey =
        serde_json::from_str(&row.passkey).map_err(|e| Error::Internal(e.into()))?;
    passkey.update_credential(&result);
    let json = serde_json::to_string(&passkey).map_err(|e| Error::Internal(e.into()))?;
    store
        .touch_credential(&row.credential_id, &json, now_ms)
        .await?;
    Ok(true)
}
