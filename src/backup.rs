//! `custodia backup --out DIR`: a consistent copy of the database, the blob store (local
//! files or an S3 bucket, copied into `DIR/blobs` either way) and the key files, taken while
//! the server runs.
//!
//! The database is copied first, as one snapshot: SQLite with `VACUUM INTO` (a consistent
//! online copy, other connections keep working), PostgreSQL with `pg_dump --format=custom`
//! (an MVCC snapshot). Blobs are immutable once committed, so copying them afterwards
//! yields every blob the snapshot references — except a document deleted in between,
//! whose keys were destroyed anyway. The backup directory has the layout of a data
//! directory: for SQLite it *is* one (`CUSTODIA_DATA_DIR=DIR custodia serve`); for
//! PostgreSQL restore the dump with `pg_restore` into an empty database first.
//!
//! The master and signing keys are copied too (mode 0600): without them the restored
//! grants, service keys and checkpoints cannot be used. Keep backups as carefully as the
//! live keys — or move `master.key` and `signing.key` out of the backup to separate
//! storage and put them back to restore. The pinned public keys (`audit-keys/`) come along,
//! so checkpoints signed before a rotation still verify; the server's memory of the last
//! checkpoint it signed does not (a restored copy starts from what its database holds).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::config::{BlobLocation, Config, Engine};
use crate::store::Store;
use crate::store::blob::BlobStore;

/// What a backup wrote.
#[derive(Debug)]
pub struct Written {
    /// The database file or dump.
    pub database: PathBuf,
    /// Blobs copied.
    pub blobs: u64,
    /// Key files copied.
    pub keys: Vec<PathBuf>,
}

fn copy_private(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))?;
    std::fs::File::open(to)?.sync_all()?;
    Ok(())
}

/// Copies every committed blob of `source` into a file store at `out` (the layout of a
/// data directory's `blobs/`), streamed, each fsynced before it counts.
async fn copy_blobs(source: &BlobStore, out: &Path) -> anyhow::Result<u64> {
    let target = BlobStore::open(&BlobLocation::File(out.to_owned())).await?;
    let mut copied = 0;
    for name in source.list().await.context("listing the blobs")? {
        let mut reader = match source.read_from(&name, 0).await {
            Ok(reader) => reader,
            // Deleted since the listing (its keys are destroyed anyway).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading blob {}", name.as_str())),
        };
        let mut writer = target.create_named(&name).await?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut reader, &mut buf)
                .await
                .with_context(|| format!("reading blob {}", name.as_str()))?;
            if n == 0 {
                break;
            }
            // `read` never returns more than the buffer holds.
            writer.write(buf.get(..n).unwrap_or_default()).await?;
        }
        writer.commit().await?;
        copied += 1;
    }
    Ok(copied)
}

/// Takes the backup into `out`, which must not exist or be empty.
pub async fn run(config: &Config, out: &Path) -> anyhow::Result<Written> {
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{} is not empty; back up into a new directory",
            out.display()
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)?;
    let out = out.canonicalize()?;
    let database = match config.engine {
        Engine::Sqlite => {
            let target = out.join("custodia.db");
            let store = Store::connect(config).await?;
            store.sqlite_snapshot(&target).await?;
            store.close().await;
            target
        }
        Engine::Postgres => {
            let target = out.join("custodia.pgdump");
            // The connection goes by environment, never on the command line, where any
            // user of the machine could read the password in the process list.
            let url = url::Url::parse(&config.database_url).context("the database URL")?;
            let mut command = std::process::Command::new("pg_dump");
            command
                .args(["--format=custom", "--no-owner", "--file"])
                .arg(&target)
                .env_remove("PGPASSWORD");
            if let Some(host) = url.host_str() {
                command.env("PGHOST", host.trim_start_matches('[').trim_end_matches(']'));
            }
            if let Some(port) = url.port() {
                command.env("PGPORT", port.to_string());
            }
            if !url.username().is_empty() {
                let user = percent_decode(url.username());
                command.env("PGUSER", user);
            }
            if let Some(password) = url.password() {
                command.env("PGPASSWORD", percent_decode(password));
            }
            let database = percent_decode(url.path().trim_start_matches('/'));
            if !database.is_empty() {
                command.env("PGDATABASE", database);
            }
            for (k, v) in url.query_pairs() {
                match k.as_ref() {
                    "sslmode" => {
                        command.env("PGSSLMODE", v.as_ref());
                    }
                    "sslrootcert" => {
                        command.env("PGSSLROOTCERT", v.as_ref());
                    }
                    "host" => {
                        command.env("PGHOST", v.as_ref());
                    }
                    _ => {}
                }
            }
            let status = command
                .status()
                .context("running pg_dump (install the PostgreSQL client tools)")?;
            if !status.success() {
                bail!("pg_dump failed with {status}");
            }
            target
        }
    };
    let source = BlobStore::open(&config.blob_store)
        .await
        .with_context(|| format!("opening the blob store {}", config.blob_store))?;
    let blobs = copy_blobs(&source, &out.join("blobs")).await?;
    let mut keys = Vec::new();
    // Every key file: the master key, the next one while `keys rotate-master` is under
    // way (some service keys are already wrapped under it), and the signing key.
    for key in [
        config.master_key_file.clone(),
        crate::keyring::next_master_file(&config.master_key_file),
        config.signing_key_file(),
    ] {
        if key.exists() {
            let target = out.join(key.file_name().context("key file name")?);
            copy_private(&key, &target)?;
            keys.push(target);
        }
    }
    // The pinned public keys, so checkpoints signed before a rotation still verify.
    let pinned = crate::keyring::pinned_keys_dir(&config.signing_key_file());
    if let Ok(entries) = std::fs::read_dir(&pinned) {
        let target = out.join("audit-keys");
        std::fs::create_dir_all(&target).context("creating audit-keys")?;
        for entry in entries.flatten() {
            let to = target.join(entry.file_name());
            std::fs::copy(entry.path(), &to)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(Written {
        database,
        blobs,
        keys,
    })
}

/// `%XX` escapes of a URL part decoded (user names and passwords may hold any byte).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}
