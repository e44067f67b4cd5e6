//! The context every domain operation runs in: storage, keys, time, and the shared
//! limits on expensive work. The HTTP layer holds one `Context`; tests reach it too.

use std::sync::Arc;
use std::time::Duration;

use custodia_crypto::kdf::{Argon2Cost, PassphraseKdf};
use custodia_crypto::{KeyEncryptionKey, Passphrase};
use tokio::sync::Semaphore;

use crate::audit::{AuditLog, Trust};
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Error;
use crate::keyring::Keyring;
use crate::passkeys::Passkeys;
use crate::store::Store;
use crate::store::blob::BlobStore;

/// Everything domain code may use. Cheap to share behind an `Arc`.
pub struct Context {
    /// The configuration the server started with.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// Encrypted file bodies.
    pub blobs: BlobStore,
    /// Service keys and the signing key.
    pub keys: Keyring,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// WebAuthn relying party.
    pub passkeys: Passkeys,
    /// Bounded Argon2 work.
    pub kdf: KdfLimiter,
    /// Document types and purposes.
    pub catalog: Catalog,
    /// The audit trail every action is recorded in.
    pub audit: AuditLog,
    /// The national eID relying party, when registration is `oidc`.
    pub eid: Option<crate::eid::Eid>,
}

/// Runs Argon2id on blocking threads, at most `permits` at a time, so a flood of unlock
/// attempts cannot exhaust memory (64 MiB each) or starve other requests; and one at a
/// time per account, so one account's flood cannot take every permit from the others
/// (the permits are handed out in arrival order).
pub struct KdfLimiter {
    permits: Semaphore,
    /// Accounts with a derivation running on this node.
    running: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Cost of newly created passphrase wraps.
    pub cost: Argon2Cost,
}

/// An account's derivation in progress; ends it when dropped.
struct Running<'a> {
    limiter: &'a KdfLimiter,
    account: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.limiter.running().remove(&self.account);
    }
}

impl KdfLimiter {
    /// A limiter allowing `permits` concurrent derivations.
    pub fn new(permits: usize, cost: Argon2Cost) -> Self {
        Self {
            permits: Semaphore::new(permits),
            running: std::sync::Mutex::default(),
            cost,
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        // The set stays consistent even if a holder panicked: take it as it is.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Derives the key-encryption key of `passphrase` under `params` for `account`. A
    /// second derivation for an account whose first is still running is refused at once
    /// ([`Error::RateLimited`], retry after a second); otherwise it waits at most ten
    /// seconds for a permit, then answers [`Error::Busy`].
    pub async fn derive(
        &self,
        account: &str,
        params: &PassphraseKdf,
        passphrase: &Passphrase,
    ) -> Result<KeyEncryptionKey, Error> {
        if !self.running().insert(account.to_owned()) {
            return Err(Error::RateLimited { retry_after_s: 1 });
        }
        let _running = Running {
            limiter: self,
            account: account.to_owned(),
        };
        let _permit = tokio::time::timeout(Duration::from_secs(10), self.permits.acquire())
            .await
            .map_err(|_| Error::Busy)?
            .map_err(|_| Error::Busy)?;
        let params = params.clone();
        let passphrase = passphrase.clone();
        // A thread of its own at a lower CPU priority: a derivation is ~64 MiB and a few
        // hundred milliseconds of one core, and a flood of unlock attempts must not take
        // the cores from the requests being served (reads, listings, health). It still
        // runs at full speed whenever nothing else wants the core.
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("custodia-kdf".into())
            .spawn(move || {
                background_priority();
                // The receiver is gone only if the request was dropped; nothing to tell.
                let _ = done.send(params.derive(&passphrase));
            })
            .map_err(|e| Error::Internal(anyhow::anyhow!("passphrase KDF thread: {e}")))?;
        result
            .await
            .map_err(|_| Error::Internal(anyhow::anyhow!("passphrase KDF thread ended")))?
            .map_err(|e| Error::Internal(anyhow::anyhow!("passphrase KDF: {e}")))
    }
}

/// The nice value of a derivation's thread: it yields to request threads (nice 0) about
/// ten to one when both want a core.
const KDF_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`KDF_NICE`] (on Linux the nice value is
/// per thread). Where it cannot, the derivation runs at the usual priority.
fn background_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, KDF_NICE) {
        tracing::debug!(error = %e, "could not lower the KDF thread's priority");
    }
}

impl Context {
    /// A signer of audit checkpoints with this server's key and origin.
    pub fn log_signer(&self) -> Result<crate::audit::LogSigner, Error> {
        let key = custodia_crypto::sign::SigningKey::from_seed(self.keys.signing.seed().as_slice())
            .map_err(|e| Error::Internal(anyhow::anyhow!("signing key: {e}")))?;
        Ok(crate::audit::LogSigner {
            key,
            key_id: self.keys.signing_key_id.clone(),
            origin: self.config.audit_origin(),
            memory: Some(self.config.audit_memory_file()),
        })
    }

    /// What this deployment's audit trail is verified against: its origin and the signing
    /// keys pinned in the key directory — never the keys the database lists.
    /// With witnesses configured, it also names them and their quorum; what they hold is
    /// asked separately (`transparency::witnesses::ask_heads`).
    pub fn audit_trust(&self) -> Trust {
        let mut trust = Trust::new(self.config.audit_origin(), self.keys.pinned.clone());
        trust.witnesses = self
            .config
            .witnesses
            .iter()
            .map(|w| (w.key.name.clone(), w.key.key.clone()))
            .collect();
        trust.quorum = self.config.witness_quorum;
        trust.now_ms = self.clock.now_ms();
        trust
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod kdf_limits {
    use super::*;

    #[tokio::test]
    async fn an_account_derives_one_at_a_time_and_others_are_not_held_up() {
        // A cost large enough that the first derivation is still running.
        let cost = Argon2Cost {
            m_kib: 8 * 1024,
            t: 8,
            p: 1,
        };
        let limiter = KdfLimiter::new(2, cost);
        let params = PassphraseKdf::new(cost);
        let phrase = Passphrase::new("correct horse battery staple".into());
        let (first, second, other) = tokio::join!(
            limiter.derive("citizen-a", &params, &phrase),
            async {
                tokio::task::yield_now().await;
                limiter.derive("citizen-a", &params, &phrase).await
            },
            async {
                tokio::task::yield_now().await;
                limiter.derive("citizen-b", &params, &phrase).await
            },
        );
        assert!(first.is_ok());
        assert!(matches!(
            second,
            Err(Error::RateLimited { retry_after_s: 1 })
        ));
        assert!(other.is_ok());
        // Once it ended, the account may derive again.
        assert!(limiter.derive("citizen-a", &params, &phrase).await.is_ok());
    }
}
