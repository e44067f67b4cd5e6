//! The server's keys (SPEC G5).
//!
//! * The **master key** is 32 random bytes in a file (64 hex digits, mode 0600), created
//!   on first start. It wraps only service keys, and is dropped from memory once they are
//!   unwrapped.
//! * **Service keys** (`grant-wrap`, `blind-index`) are random, stored in the database
//!   wrapped under the master key, and never derived from it: rotating the master key only
//!   re-wraps them, and every blind index stays valid.
//! * The **signing key** (Ed25519: audit checkpoints, consent receipts) lives in its own
//!   file beside the master key; its public half is recorded in `signing_keys`.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use custodia_crypto::sign::SigningKey;
use custodia_crypto::{Aad, BlindIndexKey, MasterKey, ServiceKey, SymmetricKey, digest, wrap};
use zeroize::Zeroizing;

use crate::store::service_keys::WrappedServiceKey;
use crate::store::{Store, StoreError};

/// Why the keys could not be loaded. Messages name files, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read or created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// A key file exists but does not hold a key.
    #[error("{0}: not a Custodia key file (expected 64 hex digits)")]
    Malformed(String),
    /// A key file is readable by other users.
    #[error("{0}: key file must not be readable by group or others (chmod 600)")]
    Permissions(String),
    /// The master key does not unwrap this database's service keys.
    #[error(
        "the master key does not match this database (service key '{0}' is wrapped under another master key)"
    )]
    WrongMasterKey(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The keys a running server holds.
pub struct Keyring {
    /// Fingerprint of the master key that wraps the service keys.
    pub master_key_id: String,
    /// Wraps every per-grant key.
    pub grant_wrap: ServiceKey,
    /// Keys the blind indexes (national ID lookup).
    pub blind_index: BlindIndexKey,
    /// Seals each citizen's national ID for the audited, reasoned reveal by an auditor.
    pub identity_escrow: ServiceKey,
    /// Signs checkpoints and receipts.
    pub signing: SigningKey,
    /// Fingerprint of the signing key's public half.
    pub signing_key_id: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("master_key_id", &self.master_key_id)
            .field("signing_key_id", &self.signing_key_id)
            .finish_non_exhaustive()
    }
}

/// Service key names.
pub const GRANT_WRAP: &str = "grant-wrap";
/// Service key names.
pub const BLIND_INDEX: &str = "blind-index";
/// Service key names.
pub const IDENTITY_ESCROW: &str = "identity-escrow";

impl Keyring {
    /// Loads (creating on first start) the master key, the signing key and the service
    /// keys.
    pub async fn load(
        store: &Store,
        master_key_file: &Path,
        signing_key_file: &Path,
        now_ms: i64,
    ) -> Result<Self, KeyError> {
        let master = MasterKey::from_bytes(load_or_create_secret(master_key_file)?);
        let master_key_id = master_key_id(&master);
        let grant_wrap: ServiceKey =
            load_service_key(store, &master, &master_key_id, GRANT_WRAP, now_ms).await?;
        let blind_index: BlindIndexKey =
            load_service_key(store, &master, &master_key_id, BLIND_INDEX, now_ms).await?;
        let identity_escrow: ServiceKey =
            load_service_key(store, &master, &master_key_id, IDENTITY_ESCROW, now_ms).await?;
        drop(master);

        let seed = Zeroizing::new(load_or_create_secret(signing_key_file)?);
        let signing = SigningKey::from_seed(seed.as_slice())
            .map_err(|_| KeyError::Malformed(signing_key_file.display().to_string()))?;
        let public = signing.verifying_key().to_bytes();
        let signing_key_id = key_fingerprint(&public);
        store
            .publish_signing_key(&signing_key_id, &public, now_ms)
            .await?;
        Ok(Self {
            master_key_id,
            grant_wrap,
            blind_index,
            identity_escrow,
            signing,
            signing_key_id,
        })
    }
}

/// A short public fingerprint of a key: 16 hex digits of SHA-256 under a label.
pub fn key_fingerprint(public: &[u8]) -> String {
    let mut input = b"custodia-key-id\0".to_vec();
    input.extend_from_slice(public);
    digest::hex(&digest::sha256(&input)[..8])
}

fn master_key_id(master: &MasterKey) -> String {
    // The fingerprint of a secret key must not help an attacker: hash a derived value.
    let check: ServiceKey = custodia_crypto::kdf::derive_subkey(master, "master-key-id");
    key_fingerprint(check.expose())
}

fn service_key_aad(name: &str) -> Aad {
    Aad::new("service-key").with("name", name)
}

async fn load_service_key<K: SymmetricKey>(
    store: &Store,
    master: &MasterKey,
    master_key_id: &str,
    name: &str,
    now_ms: i64,
) -> Result<K, KeyError> {
    if store.service_key(name).await?.is_none() {
        let fresh = K::generate();
        let row = WrappedServiceKey {
            name: name.to_owned(),
            wrapped: wrap::wrap_key(master, &fresh, &service_key_aad(name)),
            master_key_id: master_key_id.to_owned(),
        };
        // Another node may insert first; either way the stored row is the one to use.
        store.insert_service_key(&row, now_ms).await?;
    }
    let row = store
        .service_key(name)
        .await?
        .ok_or(KeyError::Store(StoreError::NotFound))?;
    wrap::unwrap_key(master, &row.wrapped, &service_key_aad(name))
        .map_err(|_| KeyError::WrongMasterKey(name.to_owned()))
}

/// Reads a 32-byte secret from a hex key file, creating the file (0600, with its
/// directory) with a fresh random secret if it does not exist.
fn load_or_create_secret(path: &Path) -> Result<[u8; 32], KeyError> {
    let shown = path.display().to_string();
    let io_err = |source| KeyError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(KeyError::Permissions(shown));
            }
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io_err)?);
            let bytes = Zeroizing::new(
                digest::hex_decode(text.trim())
                    .ok_or_else(|| KeyError::Malformed(shown.clone()))?,
            );
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Malformed(shown))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io_err)?;
            }
            let key = ServiceKey::generate();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io_err)?;
            let text = Zeroizing::new(format!("{}\n", digest::hex(key.expose())));
            file.write_all(text.as_bytes()).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            Ok(*key.expose())
        }
        Err(e) => Err(io_err(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let a = load_or_create_secret(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_secret(&path).unwrap(), a);
    }

    #[test]
    fn loose_permissions_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, "not hex").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_or_create_secret(&path),
            Err(KeyError::Malformed(_))
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create_secret(&path),
            Err(KeyError::Permissions(_))
        ));
    }
}
