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
    // A passphrase tried is recorded, right or wrong; one refused before it was tried is not.
    if matches!(opened, Ok(_) | Err(Error::WrongSecret)) {
        let event =
            crate::audit::citizen_event(&ctx.store, citizen_id, crate::audit::Action::VaultUnlock)
                .await;
        let event = match &opened {
            Ok(_) => event,
            Err(_) => event
                .outcome(crate::audit::Outcome::Failed)
                .detail("wrong passphrase"),
        };
        ctx.audit.record(event).await;
    }
    let vault_key = SecretLimits::settle(ctx, taken, opened).await?;
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
    let vault_key = SecretLimits::settle(ctx, taken, opened).await?;
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
    check_strength(new, "new_passphrase", &[])?;
    let taken = SecretLimits::unlock(citizen_id, client)
        .reserve(ctx)
        .await?;
    let citizen = ctx.store.citizen(citizen_id).await?;
    let opened = unwrap_with_passphrase(ctx, &citizen, current).await;
    let vault_key = SecretLimits::settle(ctx, taken, opened).await?;
    let (kdf_json, wrap) = passphrase_wrap(ctx, citizen_id, &vault_key, new).await?;
    let mut tx = ctx.store.begin().await?;
    tx.set_passphrase_wrap(citizen_id, &kdf_json, &wrap).await?;
    tx.commit().await?;
    Ok(())
}
