//! The server's keys (SPEC G5).
//!
//! * The **master key** is 32 random bytes in a file (64 hex digits, mode 0600), created
//!   on first start. It wraps only service keys, and is dropped from memory once they are
//!   unwrapped.
//! * **Service keys** (`grant-wrap`, `blind-index`, `identity-escrow`, `emergency-wrap`)
//!   are random, stored in the database wrapped under the master key, and never derived
//!   from it: rotating the master key only re-wraps them, and every blind index stays valid.
//! * The **signing key** (Ed25519: audit checkpoints, consent receipts) lives in its own
//!   file beside the master key; its public half is recorded in `signing_keys` and
//!   **pinned** in the key directory (`audit-keys/<key id>.pub` beside the key files), which
//!   only ever grows: a rotation adds the new key and keeps every old one. Verifiers trust
//!   the key directory (and keys given on the command line), never the database, so a key
//!   inserted into `signing_keys` signs nothing anyone accepts.

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    /// The rotation's audit record could not be made, so the rotation did not complete.
    #[error("the rotation could not be recorded in the audit trail; nothing was installed")]
    Unrecorded,
}

/// What a rotation stages as its audit record: the outbox JSON for the event, made from
/// the rotation's own detail (`None` when it cannot be made, which stops the rotation).
pub type Record<'a> = &'a (dyn Fn(String) -> Option<String> + Sync);

/// The keys a running server holds.
pub struct Keyring {
    /// Fingerprint of the master key that wraps the service keys.
    pub master_key_id: String,
    /// Fingerprint of the next master key (`master.key.next`) when this node started with
    /// one: what `/readyz` shows while a rotation is being prepared across nodes.
    pub next_master_key_id: Option<String>,
    /// Wraps every per-grant key.
    pub grant_wrap: ServiceKey,
    /// Keys the blind indexes (national ID lookup).
    pub blind_index: BlindIndexKey,
    /// Seals each citizen's national ID for the audited, reasoned reveal by an auditor.
    pub identity_escrow: ServiceKey,
    /// Wraps the data keys of the documents citizens made emergency-available (SPEC §6):
    /// the only documents the operator side can open without a live grant.
    pub emergency_wrap: ServiceKey,
    /// Signs checkpoints and receipts.
    pub signing: SigningKey,
    /// Fingerprint of the signing key's public half.
    pub signing_key_id: String,
    /// Every pinned signing key (key id, public key), read once at start: what this
    /// server's checkpoints and receipts are verified against.
    pub pinned: Vec<(String, custodia_crypto::sign::VerifyingKey)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("master_key_id", &self.master_key_id)
            .field("next_master_key_id", &self.next_master_key_id)
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
/// Service key names.
pub const EMERGENCY_WRAP: &str = "emergency-wrap";

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
        // During an interrupted `keys rotate-master`, some service keys are already wrapped
        // under the next master key: each row names the key that opens it.
        let next_file = next_master_file(master_key_file);
        let next = if next_file.exists() {
            let key = MasterKey::from_bytes(load_or_create_secret(&next_file)?);
            let id = self::master_key_id(&key);
            Some((key, id))
        } else {
            None
        };
        let masters = Masters {
            current: (&master, &master_key_id),
            next: next.as_ref().map(|(k, id)| (k, id.as_str())),
        };
        let grant_wrap: ServiceKey = load_service_key(store, &masters, GRANT_WRAP, now_ms).await?;
        let blind_index: BlindIndexKey =
            load_service_key(store, &masters, BLIND_INDEX, now_ms).await?;
        let identity_escrow: ServiceKey =
            load_service_key(store, &masters, IDENTITY_ESCROW, now_ms).await?;
        let emergency_wrap: ServiceKey =
            load_service_key(store, &masters, EMERGENCY_WRAP, now_ms).await?;
        let next_master_key_id = next.as_ref().map(|(_, id)| id.clone());
        drop(next);
        drop(master);

        let seed = Zeroizing::new(load_or_create_secret(signing_key_file)?);
        let signing = SigningKey::from_seed(seed.as_slice())
            .map_err(|_| KeyError::Malformed(signing_key_file.display().to_string()))?;
        let public = signing.verifying_key().to_bytes();
        let signing_key_id = key_fingerprint(&public);
        pin_signing_key(signing_key_file, &signing_key_id, &public)?;
        let mut tx = store.begin().await?;
        tx.publish_signing_key(&signing_key_id, &public, now_ms)
            .await?;
        tx.commit().await?;
        let pinned = pinned_keys(signing_key_file)?;
        Ok(Self {
            master_key_id,
            next_master_key_id,
            grant_wrap,
            blind_index,
            identity_escrow,
            emergency_wrap,
            signing,
            signing_key_id,
            pinned,
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

/// The master key, and the next one while a rotation is under way.
struct Masters<'a> {
    current: (&'a MasterKey, &'a str),
    next: Option<(&'a MasterKey, &'a str)>,
}

async fn load_service_key<K: SymmetricKey>(
    store: &Store,
    masters: &Masters<'_>,
    name: &str,
    now_ms: i64,
) -> Result<K, KeyError> {
    let (master, master_key_id) = masters.current;
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
    let opener = match masters.next {
        Some((next, id)) if row.master_key_id == id => next,
        _ => master,
    };
    wrap::unwrap_key(opener, &row.wrapped, &service_key_aad(name))
        .map_err(|_| KeyError::WrongMasterKey(name.to_owned()))
}

/// Where the next master key waits while `keys rotate-master` runs.
pub fn next_master_file(master_key_file: &Path) -> PathBuf {
    let mut name = master_key_file.as_os_str().to_owned();
    name.push(".next");
    PathBuf::from(name)
}

/// What a master key rotation did.
#[derive(Debug)]
pub struct Rotated {
    /// The retired key's fingerprint.
    pub old_id: String,
    /// The new key's fingerprint.
    pub new_id: String,
    /// Service keys re-wrapped by this run (others were done by an interrupted one).
    pub rewrapped: usize,
}

/// The first step of a rotation on several nodes (`custodia keys rotate-master --prepare`):
/// makes the next master key file (or finds it) and returns its fingerprint, re-wrapping
/// nothing. The file is then copied to every node, each restarted to hold it (its
/// `/readyz` lists both keys), before `keys rotate-master` runs on one of them.
pub fn prepare_next_master(master_key_file: &Path) -> Result<String, KeyError> {
    // The current key must be there: a next key is only ever next to one.
    if !master_key_file.exists() {
        return Err(KeyError::Io {
            path: master_key_file.display().to_string(),
            source: io::Error::new(io::ErrorKind::NotFound, "no master key to rotate from"),
        });
    }
    let next = MasterKey::from_bytes(load_or_create_secret(&next_master_file(master_key_file))?);
    Ok(master_key_id(&next))
}

/// Step one and two of a rotation: makes (or finds, when resuming) the next master key
/// and re-wraps every service key still under the current one. Safe to run again.
pub async fn rewrap_under_next(
    store: &Store,
    master_key_file: &Path,
) -> Result<(String, String, usize), KeyError> {
    let current = MasterKey::from_bytes(load_or_create_secret(master_key_file)?);
    let current_id = master_key_id(&current);
    let next = MasterKey::from_bytes(load_or_create_secret(&next_master_file(master_key_file))?);
    let next_id = master_key_id(&next);
    let mut rewrapped = 0;
    for row in store.service_keys().await? {
        if row.master_key_id == next_id {
            continue;
        }
        if row.master_key_id != current_id {
            return Err(KeyError::WrongMasterKey(row.name));
        }
        let key: ServiceKey = wrap::unwrap_key(&current, &row.wrapped, &service_key_aad(&row.name))
            .map_err(|_| KeyError::WrongMasterKey(row.name.clone()))?;
        let wrapped = wrap::wrap_key(&next, &key, &service_key_aad(&row.name));
        if store
            .rewrap_service_key(&row.name, &current_id, &wrapped, &next_id)
            .await?
        {
            rewrapped += 1;
        }
    }
    Ok((current_id, next_id, rewrapped))
}

/// `custodia keys rotate-master`: re-wraps every service key under a new master key while
/// servers run (they hold the unwrapped service keys, which do not change), then installs
/// the new key file over the old one — only once no row is wrapped under the old key.
/// Interrupted at any point, running it again finishes the job; a server started meanwhile
/// opens each service key with whichever of the two keys wraps it.
///
/// The rotation is recorded (`record`) once every row is under the new key and before the
/// new file is installed: a rotation whose record cannot be written is not completed, and
/// running the command again resumes it.
pub async fn rotate_master(
    store: &Store,
    master_key_file: &Path,
    now_ms: i64,
    record: Record<'_>,
) -> Result<Rotated, KeyError> {
    let (old_id, new_id, rewrapped) = rewrap_under_next(store, master_key_file).await?;
    if let Some(row) = store
        .service_keys()
        .await?
        .into_iter()
        .find(|r| r.master_key_id != new_id)
    {
        return Err(KeyError::WrongMasterKey(row.name));
    }
    let event = record(format!("{old_id} → {new_id}")).ok_or(KeyError::Unrecorded)?;
    let mut tx = store.begin().await?;
    tx.stage_audit_event(&event, now_ms).await?;
    tx.commit().await?;
    // Nothing uses the old key any more: the new file replaces it atomically.
    let io_err = |source| KeyError::Io {
        path: master_key_file.display().to_string(),
        source,
    };
    std::fs::rename(next_master_file(master_key_file), master_key_file).map_err(io_err)?;
    if let Some(dir) = master_key_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)?;
    }
    Ok(Rotated {
        old_id,
        new_id,
        rewrapped,
    })
}

/// `custodia keys rotate-signing`: a new Ed25519 signing key for checkpoints and receipts.
/// Its public half is published beside the old ones, so every checkpoint and receipt signed
/// before stays verifiable; servers sign with the new key from their next start. The key
/// is published together with its record (`record`), or not at all.
pub async fn rotate_signing(
    store: &Store,
    signing_key_file: &Path,
    now_ms: i64,
    record: Record<'_>,
) -> Result<String, KeyError> {
    let fresh = SigningKey::generate();
    let public = fresh.verifying_key().to_bytes();
    let id = key_fingerprint(&public);
    let event = record(format!("new signing key {id}")).ok_or(KeyError::Unrecorded)?;
    pin_signing_key(signing_key_file, &id, &public)?;
    let mut tx = store.begin().await?;
    tx.publish_signing_key(&id, &public, now_ms).await?;
    tx.stage_audit_event(&event, now_ms).await?;
    tx.commit().await?;
    let io_err = |source| KeyError::Io {
        path: signing_key_file.display().to_string(),
        source,
    };
    let mut next = signing_key_file.as_os_str().to_owned();
    next.push(".next");
    let next = PathBuf::from(next);
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&next)
            .map_err(io_err)?;
        let text = Zeroizing::new(format!("{}\n", digest::hex(fresh.seed().as_slice())));
        file.write_all(text.as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
    }
    std::fs::rename(&next, signing_key_file).map_err(io_err)?;
    Ok(id)
}

/// The key directory beside the signing key file: every signing key's public half, ever.
pub fn pinned_keys_dir(signing_key_file: &Path) -> PathBuf {
    signing_key_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("audit-keys"), |d| d.join("audit-keys"))
}

/// Pins a signing key's public half in the key directory (once; an existing file is kept).
fn pin_signing_key(signing_key_file: &Path, key_id: &str, public: &[u8]) -> Result<(), KeyError> {
    let dir = pinned_keys_dir(signing_key_file);
    let path = dir.join(format!("{key_id}.pub"));
    let io_err = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(io_err)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&path)
        .map_err(io_err)?;
    file.write_all(format!("{}\n", digest::hex(public)).as_bytes())
        .map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

/// The pinned signing keys: every `*.pub` file in the key directory, by key id. A file that
/// does not hold a public key is an error (a verifier must not silently trust less).
pub fn pinned_keys(
    signing_key_file: &Path,
) -> Result<Vec<(String, custodia_crypto::sign::VerifyingKey)>, KeyError> {
    let dir = pinned_keys_dir(signing_key_file);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(KeyError::Io {
                path: dir.display().to_string(),
                source,
            });
        }
    };
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pub") {
            continue;
        }
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
            path: shown.clone(),
            source,
        })?;
        let key = parse_public_key(text.trim()).ok_or_else(|| KeyError::Malformed(shown))?;
        keys.push((key_fingerprint(&key.to_bytes()), key));
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keys)
}

/// A public key given as 64 hex digits or unpadded base64url (as `/api/v1/audit/public-key`
/// shows it).
pub fn parse_public_key(text: &str) -> Option<custodia_crypto::sign::VerifyingKey> {
    use base64::Engine as _;
    let bytes = digest::hex_decode(text).or_else(|| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()
    })?;
    custodia_crypto::sign::VerifyingKey::from_bytes(&bytes).ok()
}

/// Reads a 32-byte secret from a hex key file, creating the file (0600, with its
/// directory) with a fresh random secret if it does not exist.
pub(crate) fn load_or_create_secret(path: &Path) -> Result<[u8; 32], KeyError> {
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
