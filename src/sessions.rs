//! Sessions, kept in the database so any node can serve them (SPEC §5).
//!
//! The cookie holds a 256-bit secret. The database keeps only `SHA-256("session" ‖ secret)`
//! as the row key; while the vault is unlocked, the vault key is wrapped under a key that
//! HKDF derives from the secret, so the database alone cannot unwrap it (SPEC G5). The
//! CSRF token is another HKDF output of the same secret, so it needs no storage and any
//! node can check it. Sessions end after 15 minutes idle or 12 hours in all.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia_crypto::{
    Aad, KeyEncryptionKey, SecretBytes, SymmetricKey, VaultKey, ct_eq, digest, kdf, wrap,
};

use crate::audit::Event;
use crate::context::Context;
use crate::error::Error;
use crate::ids::{AuditorId, CitizenId, DelegationId};
use crate::status::DelegatedAction;
use crate::store::Tx;
use crate::store::sessions::SessionRow;

/// A vault key wrapped for a session by an unlock that has not committed yet.
#[must_use = "apply it with Session::unlocked once the transaction commits"]
pub struct Unlocked(Vec<u8>);

/// Idle timeout.
pub const IDLE_MS: i64 = 15 * 60 * 1000;
/// Absolute lifetime.
pub const ABSOLUTE_MS: i64 = 12 * 60 * 60 * 1000;
/// How long a passkey proof counts for account changes (step-up).
pub const STEP_UP_MS: i64 = 5 * 60 * 1000;
/// Activity is recorded at most this often, to keep reads cheap.
const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// Who a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// A citizen.
    Citizen(CitizenId),
    /// An auditor.
    Auditor(AuditorId),
}

/// An authenticated session, with the cookie secret that proves it.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who is signed in.
    pub principal: Principal,
    /// Row key.
    pub id_hash: Vec<u8>,
    secret: SecretBytes,
    vault_key_wrap: Option<Vec<u8>>,
    verified_at: Option<i64>,
    acting: Option<Acting>,
}

/// A delegate acting for her principal on this request (`X-Acting-For`), as the live
/// delegation stood in the database when the request arrived (SPEC §6).
#[derive(Debug, Clone)]
pub struct Acting {
    /// The delegation she acts under.
    pub delegation: DelegationId,
    /// Whose documents, requests and grants are acted on.
    pub principal: CitizenId,
    /// The document types in scope.
    pub document_types: Vec<String>,
    /// What she may do.
    pub actions: Vec<DelegatedAction>,
    /// The delegation key sealed to her (none until the principal's vault gave it keys).
    pub key_for_delegate: Option<Vec<u8>>,
    /// The principal's name sealed to her (for the pages' banner).
    pub principal_name: Option<Vec<u8>>,
}

/// A new session's cookie value and CSRF token, handed to the client once.
#[derive(Debug)]
pub struct Issued {
    /// The cookie value.
    pub cookie: String,
    /// The value every state-changing request repeats in `X-CSRF-Token`.
    pub csrf_token: String,
}

fn id_hash(secret: &[u8]) -> Vec<u8> {
    let mut input = b"session\0".to_vec();
    input.extend_from_slice(secret);
    digest::sha256(&input).to_vec()
}

fn vault_kek(secret: &[u8]) -> KeyEncryptionKey {
    kdf::derive_from_bytes(secret, "session-vault-key")
}

fn vault_aad(id_hash: &[u8]) -> Aad {
    Aad::new("session-vault-key").with("session", id_hash)
}

fn csrf_for(secret: &[u8]) -> String {
    let key: KeyEncryptionKey = kdf::derive_from_bytes(secret, "csrf-token");
    URL_SAFE_NO_PAD.encode(key.expose())
}

/// Deletes ended sessions, expired ceremonies and stale rate counters. Safe to run on
/// every node at once: each statement is an idempotent delete.
#[tracing::instrument(skip_all)]
pub async fn sweep(ctx: &Context) -> Result<(), Error> {
    let now = ctx.clock.now_ms();
    const DAY_MS: i64 = 24 * 60 * 60 * 1000;
    ctx.store
        .sweep_expired(now, now - IDLE_MS, now - DAY_MS)
        .await?;
    Ok(())
}

/// Opens a session for `principal` in the caller's transaction `tx`, unlocked if a vault
/// key is given: the session exists only if what opened it (a registration, an
/// enrolment) commits, together with its record.
pub async fn create(
    ctx: &Context,
    tx: &mut Tx,
    principal: Principal,
    vault_key: Option<&VaultKey>,
) -> Result<Issued, Error> {
    let secret = SecretBytes::random(32);
    let id_hash = id_hash(secret.expose());
    let now = ctx.clock.now_ms();
    let (citizen_id, auditor_id) = match principal {
        Principal::Citizen(id) => (Some(id), None),
        Principal::Auditor(id) => (None, Some(id)),
    };
    let csrf_token = csrf_for(secret.expose());
    tx.insert_session(&SessionRow {
        vault_key_wrap: vault_key
            .map(|k| wrap::wrap_key(&vault_kek(secret.expose()), k, &vault_aad(&id_hash))),
        id_hash,
        citizen_id,
        auditor_id,
        csrf_hash: digest::sha256(csrf_token.as_bytes()).to_vec(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + ABSOLUTE_MS,
        // Every session starts from a passkey just proved (sign-in, registration).
        verified_at: Some(now),
    })
    .await?;
    Ok(Issued {
        cookie: URL_SAFE_NO_PAD.encode(secret.expose()),
        csrf_token,
    })
}

/// Signs `principal` in: a new, locked session that commits with its record `event`, or
/// not at all (SPEC G2).
#[tracing::instrument(skip_all)]
pub async fn sign_in(ctx: &Context, principal: Principal, event: Event) -> Result<Issued, Error> {
    let now = ctx.clock.now_ms();
    let mut tx = ctx.store.begin().await?;
    let issued = create(ctx, &mut tx, principal, None).await?;
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(issued)
}

/// The live session a cookie names, or `Unauthenticated`. Expired sessions are deleted.
#[tracing::instrument(skip_all)]
pub async fn authenticate(ctx: &Context, cookie: Option<&str>) -> Result<Session, Error> {
    let signed_out = || Error::Unauthenticated("Please sign in.".into());
    let secret = cookie
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .filter(|s| s.len() == 32)
        .map(SecretBytes::new)
        .ok_or_else(signed_out)?;
    let id_hash = id_hash(secret.expose());
    let row = ctx.store.session(&id_hash).await?.ok_or_else(signed_out)?;
    let now = ctx.clock.now_ms();
    if row.expires_at <= now || row.last_seen_at + IDLE_MS <= now {
        ctx.store.delete_session(&id_hash).await?;
        return Err(Error::Unauthenticated(
            "Your session has ended; please sign in again.".into(),
        ));
    }
    if now - row.last_seen_at >= TOUCH_EVERY_MS {
        ctx.store.touch_session(&id_hash, now).await?;
    }
    let principal = match (row.citizen_id, row.auditor_id) {
        (Some(c), None) => Principal::Citizen(c),
        (None, Some(a)) => Principal::Auditor(a),
        _ => return Err(signed_out()),
    };
    Ok(Session {
        principal,
        id_hash,
        secret,
        vault_key_wrap: row.vault_key_wrap,
        verified_at: row.verified_at,
        acting: None,
    })
}

impl Session {
    /// Checks the `X-CSRF-Token` value of a state-changing request (constant time).
    pub fn check_csrf(&self, header: Option<&str>) -> Result<(), Error> {
        let expected = csrf_for(self.secret.expose());
        match header {
            Some(given) if ct_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
            _ => Err(Error::Forbidden(
                "The request lacks a valid X-CSRF-Token header; reload the page and try again."
                    .into(),
            )),
        }
    }

    /// This session's CSRF token (for pages rendered to it).
    pub fn csrf_token(&self) -> String {
        csrf_for(self.secret.expose())
    }

    /// The citizen whose vault this request works on: the one signed in or, while she
    /// acts for someone, her principal. `Forbidden` for other principals.
    pub fn citizen(&self) -> Result<CitizenId, Error> {
        match (&self.acting, self.principal) {
            (Some(acting), Principal::Citizen(_)) => Ok(acting.principal),
            (None, Principal::Citizen(id)) => Ok(id),
            (_, Principal::Auditor(_)) => {
                Err(Error::Forbidden("This is for citizens only.".into()))
            }
        }
    }

    /// The citizen signed in (the delegate, while she acts for someone).
    pub fn own_citizen(&self) -> Result<CitizenId, Error> {
        match self.principal {
            Principal::Citizen(id) => Ok(id),
            Principal::Auditor(_) => Err(Error::Forbidden("This is for citizens only.".into())),
        }
    }

    /// The delegation this request acts under, if any.
    pub fn acting(&self) -> Option<&Acting> {
        self.acting.as_ref()
    }

    /// Makes this request act for `acting.principal` (after the delegation was found live).
    pub fn act_for(&mut self, acting: Acting) {
        self.acting = Some(acting);
    }

    /// Refuses with `Forbidden` unless the signed-in citizen may do `action` here: always
    /// for herself; for her principal only within the delegation's actions and, when a
    /// document type is concerned, its types.
    pub fn may(&self, action: DelegatedAction, doc_type: Option<&str>) -> Result<(), Error> {
        let Some(acting) = &self.acting else {
            return Ok(());
        };
        if !acting.actions.contains(&action) {
            return Err(Error::Forbidden(format!(
                "Your delegation does not include '{action}'."
            )));
        }
        if let Some(t) = doc_type
            && !acting.document_types.iter().any(|d| d == t)
        {
            return Err(Error::Forbidden(format!(
                "Your delegation does not cover documents of type '{t}'."
            )));
        }
        Ok(())
    }

    /// The start of the record of something done here to the citizen's vault: by her, or
    /// by her delegate (actor `delegate` with the delegate's pseudonym; the event's citizen
    /// is the principal's), so both pseudonyms are on every delegated act.
    pub async fn event(&self, ctx: &Context, action: crate::audit::Action) -> Result<Event, Error> {
        let citizen = ctx.store.citizen(self.citizen()?).await?;
        if self.acting.is_none() {
            return Ok(crate::audit::by_citizen(&citizen.pseudonym, action));
        }
        let delegate = ctx.store.citizen(self.own_citizen()?).await?;
        Ok(Event::new(
            crate::audit::ActorKind::Delegate,
            Some(delegate.pseudonym),
            action,
        )
        .citizen(Some(&citizen.pseudonym)))
    }

    /// Whether documents of `doc_type` are in view here (always for oneself).
    pub fn covers(&self, doc_type: &str) -> bool {
        self.acting
            .as_ref()
            .is_none_or(|a| a.document_types.iter().any(|d| d == doc_type))
    }

    /// Refuses with [`Error::StepUpRequired`] unless a passkey was proved in this session
    /// within [`STEP_UP_MS`]: account changes need the person, not only the cookie.
    pub fn require_fresh(&self, ctx: &Context) -> Result<(), Error> {
        match self.verified_at {
            Some(at) if ctx.clock.now_ms() - at <= STEP_UP_MS => Ok(()),
            _ => Err(Error::StepUpRequired),
        }
    }

    /// Records a passkey proved now (a finished step-up), with its record `event`.
    pub async fn mark_verified(&mut self, ctx: &Context, event: Event) -> Result<i64, Error> {
        let now = ctx.clock.now_ms();
        let mut tx = ctx.store.begin().await?;
        tx.set_session_verified(&self.id_hash, now).await?;
        crate::audit::stage(&mut tx, event, now).await?;
        tx.commit().await?;
        ctx.audit.flush().await;
        self.verified_at = Some(now);
        Ok(now + STEP_UP_MS)
    }

    /// Whether the vault is unlocked in this session.
    pub fn is_unlocked(&self) -> bool {
        self.vault_key_wrap.is_some()
    }

    /// The unlocked vault key, or [`Error::Locked`]. Refused while acting for someone: a
    /// delegate never holds her principal's vault key, and opens what is delegated with
    /// the delegation's key instead (`sealing::Opener`).
    pub fn vault_key(&self) -> Result<VaultKey, Error> {
        if self.acting.is_some() {
            return Err(Error::Forbidden(
                "Only the account holder can do this, not someone acting for her.".into(),
            ));
        }
        self.own_vault_key()
    }

    /// The signed-in citizen's own unlocked vault key (a delegate's, while she acts for
    /// someone), or [`Error::Locked`].
    pub fn own_vault_key(&self) -> Result<VaultKey, Error> {
        let wrapped = self.vault_key_wrap.as_deref().ok_or(Error::Locked)?;
        wrap::unwrap_key(
            &vault_kek(self.secret.expose()),
            wrapped,
            &vault_aad(&self.id_hash),
        )
        .map_err(|_| Error::Locked)
    }

    /// Keeps `vault_key` wrapped in this session (unlock), in the caller's transaction
    /// `tx`; takes effect here once it commits ([`Session::unlocked`]).
    pub async fn unlock(&self, tx: &mut Tx, vault_key: &VaultKey) -> Result<Unlocked, Error> {
        let wrapped = wrap::wrap_key(
            &vault_kek(self.secret.expose()),
            vault_key,
            &vault_aad(&self.id_hash),
        );
        tx.set_session_vault(&self.id_hash, Some(&wrapped)).await?;
        Ok(Unlocked(wrapped))
    }

    /// What an unlock staged has committed: the session holds the vault key from now on.
    pub fn unlocked(&mut self, unlocked: Unlocked) {
        self.vault_key_wrap = Some(unlocked.0);
    }

    /// Forgets the vault key (lock) without signing out.
    pub async fn lock(&mut self, ctx: &Context) -> Result<(), Error> {
        let mut tx = ctx.store.begin().await?;
        tx.set_session_vault(&self.id_hash, None).await?;
        tx.commit().await?;
        self.vault_key_wrap = None;
        Ok(())
    }

    /// Ends this session.
    pub async fn end(self, ctx: &Context) -> Result<(), Error> {
        ctx.store.delete_session(&self.id_hash).await?;
        Ok(())
    }
}
