//! The oversight key: the national ID behind each pseudonym is sealed (HPKE) to a public
//! key whose private half the oversight office holds off the server (SPEC G5). Nobody on
//! the server side — not the operator with the database and `master.key` — can learn who
//! is behind a pseudonym; the office reveals one with `custodia audit reveal`, recorded
//! before it prints. The console can only confirm or refute a candidate
//! ([`super::confirm_identity`]).

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia_crypto::hpke_seal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::audit::{Action, ActorKind, Event, Outcome};
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::store::oversight::OversightKeyRow;

/// What the private key file holds.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    custodia_oversight_key: u8,
    id: Uuid,
    secret_key: Zeroizing<String>,
}

/// A new oversight key.
#[derive(Debug)]
pub struct OversightKey {
    /// Its id (named in every sealed national ID).
    pub id: Uuid,
    /// National IDs moved from the old escrow to it.
    pub moved: usize,
}

/// Creates an oversight key pair: the private half is written to `out` (created new,
/// mode 0600, never overwritten) for the office to take away; the public half becomes
/// current, and every national ID still in the old escrow under a server key is sealed
/// to it and the escrow cleared, in one transaction.
#[tracing::instrument(skip_all)]
pub async fn create_oversight_key(ctx: &Context, out: &Path) -> Result<OversightKey, Error> {
    let (secret, public) = hpke_seal::generate_keypair();
    let id = Uuid::new_v4();
    let file = KeyFile {
        custodia_oversight_key: 1,
        id,
        secret_key: Zeroizing::new(URL_SAFE_NO_PAD.encode(secret.to_bytes().as_slice())),
    };
    let json =
        Zeroizing::new(serde_json::to_vec_pretty(&file).map_err(|e| Error::Internal(e.into()))?);
    write_new_private(out, &json).map_err(|e| {
        invalid(
            "out",
            format!("cannot create {} ({e}); name a new file", out.display()),
        )
    })?;
    let row = OversightKeyRow {
        id,
        public_key: public.to_bytes(),
        created_at: ctx.clock.now_ms(),
        retired_at: None,
    };
    let mut tx = ctx.store.begin().await?;
    tx.insert_oversight_key(&row).await?;
    let escrowed = tx.escrowed_national_ids().await?;
    for citizen in &escrowed {
        let national_id = Zeroizing::new(crate::citizens::open_escrow(
            ctx,
            citizen.id,
            &citizen.national_id_escrow,
        )?);
        let sealed =
            crate::sealing::seal_national_id(&row.public_key, id, citizen.id, &national_id)?;
        tx.set_sealed_national_id(citizen.id, id, &sealed).await?;
    }
    let event = Event::new(ActorKind::Operator, None, Action::AuditOversightKey)
        .objects([id.to_string()])
        .detail(format!(
            "new oversight key; {} national IDs moved from escrow to it",
            escrowed.len()
        ));
    crate::audit::stage(&mut tx, event, row.created_at).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(OversightKey {
        id,
        moved: escrowed.len(),
    })
}

fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn read_key_file(path: &Path) -> Result<(Uuid, hpke_seal::HpkeSecretKey), Error> {
    let bad = |why: String| invalid("key", format!("{}: {why}", path.display()));
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| bad(e.to_string()))?);
    let file: KeyFile =
        serde_json::from_slice(&text).map_err(|_| bad("not an oversight key file".into()))?;
    let bytes = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(file.secret_key.as_bytes())
            .map_err(|_| bad("not an oversight key file".into()))?,
    );
    let secret = hpke_seal::HpkeSecretKey::from_bytes(&bytes)
        .map_err(|_| bad("not an oversight key file".into()))?;
    Ok((file.id, secret))
}

/// Reveals the national ID behind `pseudonym` with the office's private key file, for a
/// written case reason. The reveal is recorded (who, whom, why) before the ID is returned;
/// if it cannot be recorded, nothing is revealed.
#[tracing::instrument(skip_all)]
pub async fn reveal_with_key(
    ctx: &Context,
    key_file: &Path,
    pseudonym: &str,
    reason: &str,
) -> Result<String, Error> {
    let reason = super::oversight::case_reason(reason)?;
    let (key_id, secret) = read_key_file(key_file)?;
    let event = Event::new(
        ActorKind::Operator,
        Some(format!("oversight-key:{key_id}")),
        Action::AuditReveal,
    );
    let Some(citizen) = ctx.store.citizen_by_pseudonym(pseudonym.trim()).await? else {
        ctx.audit
            .append(
                event
                    .outcome(Outcome::Refused)
                    .detail(format!("no such pseudonym; reason given: {reason}")),
            )
            .await?;
        return Err(Error::NotFound);
    };
    let sealed = ctx.store.sealed_national_id(citizen.id).await?;
    let (Some(bytes), Some(sealed_to)) = (sealed.national_id_sealed, sealed.oversight_key_id)
    else {
        return Err(Error::Conflict(
            "No national ID is sealed for this account: it registered before any oversight key \
             existed and held no escrow."
                .into(),
        ));
    };
    if sealed_to != key_id {
        return Err(Error::Conflict(format!(
            "This account's national ID is sealed to oversight key {sealed_to}, not to {key_id}."
        )));
    }
    ctx.audit
        .append(
            event
                .citizen(Some(&citizen.pseudonym))
                .detail(reason.to_owned()),
        )
        .await?;
    crate::sealing::open_national_id(&secret, key_id, citizen.id, &bytes).ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "a sealed national ID does not open with its key"
        ))
    })
}
