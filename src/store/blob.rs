//! The blob store: encrypted file bodies, by random name.
//!
//! Names are 128 random bits in hex and reveal nothing about owner, type or content.
//! The filesystem backend writes to `tmp/<name>`, fsyncs, renames into
//! `<first two hex digits>/<name>` and fsyncs the directory, so a crash leaves either no
//! blob or a complete one; temporary files older than a cut-off are swept at start.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::fs::{self, File, OpenOptions};
use tokio::io::AsyncWriteExt;

use crate::config::BlobLocation;

/// A blob's name: 32 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobName(String);

impl BlobName {
    /// A fresh random name.
    pub fn random() -> Self {
        let bytes: [u8; 16] = custodia_crypto::random_bytes();
        Self(custodia_crypto::digest::hex(&bytes))
    }

    /// Parses a stored name; anything but 32 hex digits is refused, so a name can never
    /// walk out of the blob directory.
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The blob store: a directory of local files (the only backend so far).
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
    /// When [`BlobStore::check`] last succeeded, for [`BlobStore::check_recent`].
    last_ok: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl BlobStore {
    /// Opens (and creates if needed) the store at `location`.
    pub async fn open(location: &BlobLocation) -> io::Result<Self> {
        let BlobLocation::File(root) = location;
        fs::create_dir_all(root.join("tmp")).await?;
        Ok(Self {
            root: root.clone(),
            last_ok: std::sync::Arc::default(),
        })
    }

    /// Starts writing a new blob under a fresh name.
    pub async fn create(&self) -> io::Result<BlobWriter> {
        let name = BlobName::random();
        let tmp = self.root.join("tmp").join(name.as_str());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await?;
        Ok(BlobWriter {
            file: Some(file),
            tmp,
            dir: self.root.join(&name.as_str()[..2]),
            name,
            written: 0,
        })
    }

    /// Opens a committed blob for reading.
    pub async fn open_blob(&self, name: &BlobName) -> io::Result<File> {
        File::open(self.path(name)).await
    }

    /// Removes a blob; removing one that is already gone is not an error.
    pub async fn delete(&self, name: &BlobName) -> io::Result<()> {
        match fs::remove_file(self.path(name)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Whether a committed blob exists.
    pub async fn exists(&self, name: &BlobName) -> io::Result<bool> {
        fs::try_exists(self.path(name)).await
    }

    /// As [`BlobStore::check`], but a success within `max_age` stands for a new probe:
    /// an anonymous `/readyz` caller cannot make the node write and sync a file per call.
    /// A failure is never kept, so recovery shows at once.
    pub async fn check_recent(&self, max_age: std::time::Duration) -> io::Result<()> {
        // A poisoned lock only means a panic while storing an Instant; the value is whole.
        let fresh = self
            .last_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < max_age);
        if fresh {
            return Ok(());
        }
        self.check().await?;
        *self.last_ok.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
        Ok(())
    }

    /// Proves the store is usable: writes, syncs and removes a probe file.
    pub async fn check(&self) -> io::Result<()> {
        let probe = self
            .root
            .join("tmp")
            .join(format!("probe-{}", BlobName::random().as_str()));
        let mut file = File::create(&probe).await?;
        file.write_all(b"ok").await?;
        file.sync_all().await?;
        drop(file);
        fs::remove_file(&probe).await
    }

    /// Removes temporary files older than `max_age`: the remains of interrupted uploads.
    /// Returns how many were removed.
    pub async fn sweep_tmp(&self, max_age: Duration) -> io::Result<usize> {
        let mut removed = 0;
        let mut entries = fs::read_dir(self.root.join("tmp")).await?;
        // File ages are in the filesystem's own clock (mtime), not the application's.
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        while let Some(entry) = entries.next_entry().await? {
            let modified = entry.metadata().await?.modified()?;
            if now.duration_since(modified).unwrap_or_default() >= max_age {
                fs::remove_file(entry.path()).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn path(&self, name: &BlobName) -> PathBuf {
        self.root.join(&name.as_str()[..2]).join(name.as_str())
    }
}

/// A blob being written. Nothing is visible under its name until [`commit`](Self::commit);
/// dropped without commit, the temporary file is removed.
#[derive(Debug)]
pub struct BlobWriter {
    file: Option<File>,
    tmp: PathBuf,
    dir: PathBuf,
    name: BlobName,
    written: u64,
}

impl BlobWriter {
    /// The name the blob will have once committed.
    pub fn name(&self) -> &BlobName {
        &self.name
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self.file.as_mut().ok_or_else(closed)?;
        file.write_all(bytes).await?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Makes the blob durable and visible: fsync the file, rename it into place, fsync
    /// the directory.
    pub async fn commit(mut self) -> io::Result<BlobName> {
        let mut file = self.file.take().ok_or_else(closed)?;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        fs::create_dir_all(&self.dir).await?;
        let dest = self.dir.join(self.name.as_str());
        fs::rename(&self.tmp, &dest).await?;
        sync_dir(&self.dir).await?;
        Ok(self.name.clone())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Not committed: the temporary file must not outlive the writer. A failure here
            // is caught by the start-up sweep.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn closed() -> io::Error {
    io::Error::other("blob writer already committed")
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).await?.sync_all().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&BlobLocation::File(dir.path().join("blobs")))
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn committed_blob_is_readable_then_deleted() {
        let (_dir, store) = store().await;
        let mut w = store.create().await.unwrap();
        w.write(b"cipher").await.unwrap();
        w.write(b"text").await.unwrap();
        assert_eq!(w.written(), 10);
        let name = w.commit().await.unwrap();
        let mut body = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut store.open_blob(&name).await.unwrap(), &mut body)
            .await
            .unwrap();
        assert_eq!(body, b"ciphertext");
        store.delete(&name).await.unwrap();
        assert!(!store.exists(&name).await.unwrap());
        store.delete(&name).await.unwrap();
    }

    #[tokio::test]
    async fn abandoned_writer_leaves_nothing() {
        let (dir, store) = store().await;
        let mut w = store.create().await.unwrap();
        w.write(b"half an upload").await.unwrap();
        let name = w.name().clone();
        drop(w);
        assert!(!store.exists(&name).await.unwrap());
        let tmp_entries = std::fs::read_dir(dir.path().join("blobs/tmp"))
            .unwrap()
            .count();
        assert_eq!(tmp_entries, 0);
    }

    #[tokio::test]
    async fn sweep_removes_stale_temporaries_only() {
        let (dir, store) = store().await;
        std::fs::write(dir.path().join("blobs/tmp/leftover"), b"x").unwrap();
        assert_eq!(store.sweep_tmp(Duration::from_secs(3600)).await.unwrap(), 0);
        assert_eq!(store.sweep_tmp(Duration::ZERO).await.unwrap(), 1);
        store.check().await.unwrap();
    }

    #[test]
    fn names_are_random_hex_and_parse_strictly() {
        let a = BlobName::random();
        assert_ne!(a, BlobName::random());
        assert_eq!(BlobName::parse(a.as_str()), Some(a));
        assert_eq!(BlobName::parse("../../etc/passwd"), None);
        assert_eq!(BlobName::parse(&"A".repeat(32)), None);
    }
}
