//! The vault key: unlocking with the passphrase, recovery with the one-time code, and
//! changing the passphrase — each limited per account and per address, Argon2 bounded.

use super::*;
use crate::ids::CitizenId;

/// The per-account and per-address limits on guessing a vault secret. An attempt is taken
/// from both before the secret is tried (Argon2 runs only within the limit, however many
/// attempts arrive at once) and given back when the secret was right, so only failures
/// count and a citizen who types it right is never slowed down.
struct SecretLimits {
    account: (ratelimit::Limit, String),
    address: (ratelimit::Limit, String),
}

impl SecretLimits {
    fn unlock(citizen: CitizenId, client: &str) -> Self {
        Self {
            account: (ratelimit::UNLOCK_PER_ACCOUNT, citizen.to_string()),
            address: (ratelimit::UNLOCK_PER_ADDR, client.to_owned()),
        }
    }

    fn recover(citizen: CitizenId, client: &str) -> Self {
        Self {
            account: (ratelimit::RECOVER_PER_ACCOUNT, citizen.to_string()),
            address: (ratelimit::RECOVER_PER_ADDR, client.to_owned()),
        }
    }

    async fn reserve(&self, ctx: &Context) -> Result<[ratelimit::Reservation; 2], Error> {
        // An account or address already used up is refused before anything is written (a
        // flood of refused guesses costs reads only).
        ratelimit::refuse_if_over(ctx, self.account.0, &self.account.1).await?;
        ratelimit::refuse_if_over(ctx, self.address.0, &self.address.1).await?;
        let address = ratelimit::reserve(ctx, self.address.0, &self.address.1).await?;
        match ratelimit::reserve(ctx, self.account.0, &self.account.1).await {
            Ok(account) => Ok([address, account]),
            Err(refused) => {
                ratelimit::release(ctx, address).await?;
                Err(refused)
            }
        }
    }

    /// Keeps the attempts counted if the secret was wrong, gives them back otherwise (it was
    /// right, or never tried: refused as busy, or already being tried for this account).
    async fn settle<T>(
        ctx: &Context,
        taken: [ratelimit::Reservation; 2],
        result: Result<T, Error>,
    ) -> Result<T, Error> {
        if !matches!(result, Err(Error::WrongSecret)) {
            for attempt in taken {
                ratelimit::release(ctx, attempt).await?;
            }
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
    let kek = ctx
        .kdf
        .derive(&citizen.id.to_string(), &params, passphrase)
        .await?;
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
    let taken = SecretLimits::unlock(citizen_id, client)
        .reserve(ctx)
        .await?;
    let citizen = ctx.store.citizen(citizen_id).await?;
    let opened = unwrap_with_passphrase(ctx, &citizen, passphrase).await;
    // A passphrase tried is recorded, right or wrong (a right one with the unlock, below);
    // one refused before it was tried is not.
    if matches!(opened, Err(Error::WrongSecret)) {
        let event = crate::audit::by_citizen(&citizen.pseudonym, crate::audit::Action::VaultUnlock)
            .outcome(crate::audit::Outcome::Failed)
            .detail("wrong passphrase");
        ctx.audit.record(event).await;
    }
    let vault_key = SecretLimits::settle(ctx, taken, opened).await?;
    // The unlock and its record commit together.
    let event = crate::audit::by_citizen(&citizen.pseudonym, crate::audit::Action::VaultUnlock);
    let mut tx = ctx.store.begin().await?;
    let unlocked = session.unlock(&mut tx, &vault_key).await?;
    crate::audit::stage(&mut tx, event, ctx.clock.now_ms()).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    session.unlocked(unlocked);
    tracing::info!(citizen = %citizen_id, "vault unlocked");
    crate::sealing::pick_up_deposits(ctx, citizen_id, &vault_key).await?;
    // Guardianships declared while she was away get their keys now.
    crate::sealing::key_waiting_delegations(
        ctx,
        citizen_id,
        &vault_key,
        &super::display_name(&citizen, &vault_key)?,
    )
    .await?;
    Ok(())
}

/// Sets a new passphrase with the recovery code. The vault key is rotated (see
/// [`rotate_vault_key`]), every other session ends, and a fresh recovery code is returned
/// (shown once): what someone may have learnt before — the old passphrase, the used code,
/// an old copy of the database — opens nothing added from now on.
#[tracing::instrument(skip_all)]
pub async fn recover(
    ctx: &Context,
    session: &mut Session,
    recovery_code: &str,
    new_passphrase: &Passphrase,
    client: &str,
) -> Result<String, Error> {
    let citizen_id = session.citizen()?;
    check_strength(new_passphrase, "new_passphrase", &[])?;
    let taken = SecretLimits::recover(citizen_id, client)
        .reserve(ctx)
        .await?;
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
    let old_key = SecretLimits::settle(ctx, taken, opened).await?;
    let event = crate::audit::by_citizen(&citizen.pseudonym, crate::audit::Action::VaultRecover);
    let fresh = rekey(
        ctx,
        session,
        &citizen,
        &old_key,
        new_passphrase,
        true,
        event,
    )
    .await?;
    tracing::info!(citizen = %citizen_id, "vault recovered with the recovery code");
    Ok(fresh.display().to_string())
}

async fn passphrase_wrap(
    ctx: &Context,
    citizen_id: CitizenId,
    vault_key: &VaultKey,
    passphrase: &Passphrase,
) -> Result<(String, Vec<u8>), Error> {
    let params = PassphraseKdf::new(ctx.kdf.cost);
    let kek = ctx
        .kdf
        .derive(&citizen_id.to_string(), &params, passphrase)
        .await?;
    let json = serde_json::to_string(&params).map_err(|e| Error::Internal(e.into()))?;
    Ok((
        json,
        wrap::wrap_key(&kek, vault_key, &vault_wrap_aad(citizen_id, "passphrase")),
    ))
}

/// Replaces a citizen's vault key (see [`rotate_vault_key`]) and ends every other session,
/// in one transaction with its record `event`; this session keeps the new key if
/// `keep_unlocked`. Returns the fresh recovery code.
async fn rekey(
    ctx: &Context,
    session: &mut Session,
    citizen: &CitizenRow,
    old: &VaultKey,
    passphrase: &Passphrase,
    keep_unlocked: bool,
    event: crate::audit::Event,
) -> Result<RecoveryCode, Error> {
    let mut tx = ctx.store.begin().await?;
    let (vault_key, fresh) = rotate_vault_key(ctx, &mut tx, citizen, old, passphrase).await?;
    tx.delete_other_citizen_sessions(citizen.id, &session.id_hash)
        .await?;
    let unlocked = match keep_unlocked {
        true => Some(session.unlock(&mut tx, &vault_key).await?),
        false => None,
    };
    crate::audit::stage(&mut tx, event, ctx.clock.now_ms()).await?;
    tx.commit().await?;
    // The wraps under the old vault key are overwritten; make that hold on disk too.
    ctx.store.scrub().await;
    ctx.audit.flush().await;
    if let Some(unlocked) = unlocked {
        session.unlocked(unlocked);
    }
    Ok(fresh)
}

/// Replaces a citizen's vault key by a new one in `tx`: every data key, the display name
/// and the deposit private key re-wrapped under it, a new passphrase wrap, and a new
/// recovery code (the old code wrapped the old key, and the server never holds a code to
/// wrap the new one with). Grant and delegation wraps are under their own keys and stay as
/// they are; only the delegation keys' wraps for the principal are re-wrapped.
async fn rotate_vault_key(
    ctx: &Context,
    tx: &mut crate::store::Tx,
    citizen: &CitizenRow,
    old: &VaultKey,
    passphrase: &Passphrase,
) -> Result<(VaultKey, RecoveryCode), Error> {
    let id = citizen.id;
    let new = VaultKey::generate();
    let (kdf_json, passphrase_wrap) = passphrase_wrap(ctx, id, &new, passphrase).await?;
    let fresh = RecoveryCode::generate();
    let salt = SecretBytes::random(16);
    let recovery_wrap = wrap::wrap_key(
        &fresh.kek(salt.expose()),
        &new,
        &vault_wrap_aad(id, "recovery"),
    );
    let internal = |what: &str| Error::Internal(anyhow::anyhow!("rotating a vault key: {what}"));
    let name = envelope::open(old, &display_name_aad(id), &citizen.display_name_enc)
        .map_err(|_| internal("display name"))?;
    let secret = envelope::open(
        old,
        &crate::sealing::secret_key_aad(id),
        &citizen.secret_key_enc,
    )
    .map_err(|_| internal("private key"))?;
    for (document, version, wrapped) in tx.vault_data_key_wraps(id).await? {
        let data_key = crate::sealing::unwrap_data_key(old, &wrapped, document, version, id)?;
        let aad = crate::sealing::document_aad("data-key", document, version, id);
        tx.set_data_key_wrap(document, version, &wrap::wrap_key(&new, &data_key, &aad))
            .await?;
    }
    // Delegation keys wrapped for the principal follow her vault key.
    for (delegation, wrapped) in tx.principal_delegation_keys(id).await? {
        let aad = crate::sealing::delegation_key_aad(delegation, "principal");
        let key: custodia_crypto::DelegationKey =
            wrap::unwrap_key(old, &wrapped, &aad).map_err(|_| internal("delegation key"))?;
        tx.set_delegation_principal_key(delegation, &wrap::wrap_key(&new, &key, &aad))
            .await?;
    }
    tx.set_vault_sealed(
        id,
        &envelope::seal(&new, &display_name_aad(id), &name),
        &envelope::seal(&new, &crate::sealing::secret_key_aad(id), &secret),
    )
    .await?;
    tx.set_passphrase_wrap(id, &kdf_json, &passphrase_wrap)
        .await?;
    tx.set_recovery_wrap(id, salt.expose(), &recovery_wrap)
        .await?;
    Ok((new, fresh))
}

/// Changes the passphrase (needs a fresh step-up and the current passphrase). Like
/// recovery, it rotates the vault key, ends every other session and returns a fresh
/// recovery code, shown once.
#[tracing::instrument(skip_all)]
pub async fn change_passphrase(
    ctx: &Context,
    session: &mut Session,
    current: &Passphrase,
    new: &Passphrase,
    client: &str,
) -> Result<String, Error> {
    let citizen_id = session.citizen()?;
    session.require_fresh(ctx)?;
    check_strength(new, "new_passphrase", &[])?;
    let taken = SecretLimits::unlock(citizen_id, client)
        .reserve(ctx)
        .await?;
    let citizen = ctx.store.citizen(citizen_id).await?;
    let opened = unwrap_with_passphrase(ctx, &citizen, current).await;
    let old_key = SecretLimits::settle(ctx, taken, opened).await?;
    let event =
        crate::audit::by_citizen(&citizen.pseudonym, crate::audit::Action::PassphraseChange);
    let keep_unlocked = session.is_unlocked();
    let fresh = rekey(ctx, session, &citizen, &old_key, new, keep_unlocked, event).await?;
    Ok(fresh.display().to_string())
}
