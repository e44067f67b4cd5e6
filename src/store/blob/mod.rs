//! The blob store: encrypted file bodies, by random name, on local files or in an S3 bucket.
//!
//! Names are 128 random bits in hex and reveal nothing about owner, type or content; the
//! bodies are ciphertext, so the storage (a disk, an S3 service) learns sizes only. Both
//! backends stream in and out — a blob is never whole in memory — and make a blob visible
//! under its name only once it is complete:
//!
//! * [`files`]: `tmp/<name>`, fsync, rename into `<first two hex digits>/<name>`, fsync the
//!   directory. Own code rather than `object_store`'s local store, which does not fsync.
//! * [`s3`]: `object_store`'s S3 client; a small blob is one `PUT`, a large one a multipart
//!   upload, visible when completed. Ranged reads are ranged `GET`s.
//!
//! A local blob that fits in one first read (a few hundred KiB: most documents) is kept in
//! memory once read, within a bound ([`KEPT_BYTES`]) and for [`KEPT_FOR`], so an agency
//! reading the same document again costs no trip to the blocking pool. What is kept is the
//! ciphertext as on disk, useless without keys the database holds; a blob is immutable
//! under its name, and deleting it forgets it here.

mod files;
mod s3;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::kept::Kept;
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
    /// walk out of the blob directory or the bucket prefix.
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

    /// The shard a name lives in: its first two hex digits.
    fn shard(&self) -> &str {
        &self.0[..2]
    }
}

/// Bytes of a blob from some offset on, as they arrive.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

#[derive(Debug, Clone)]
enum Backend {
    Files(files::FileBlobs),
    S3(s3::S3Blobs),
}

/// How many bytes of small blobs are kept in memory at most.
pub const KEPT_BYTES: usize = 32 * 1024 * 1024;
/// How long a small blob is kept after it was read.
pub const KEPT_FOR: Duration = Duration::from_secs(60);

/// The blob store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    backend: Backend,
    /// Small local blobs read recently.
    kept: Arc<Kept<BlobName, Bytes>>,
    /// When [`BlobStore::check`] last succeeded, for [`BlobStore::check_recent`].
    last_ok: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl BlobStore {
    /// Opens the store at `location` (a directory is created if needed; a bucket must
    /// exist and answer).
    pub async fn open(location: &BlobLocation) -> io::Result<Self> {
        let backend = match location {
            BlobLocation::File(root) => Backend::Files(files::FileBlobs::open(root).await?),
            BlobLocation::S3(s3) => Backend::S3(s3::S3Blobs::open(s3)?),
        };
        Ok(Self {
            backend,
            kept: Arc::new(Kept::new(KEPT_FOR, KEPT_BYTES, Bytes::len)),
            last_ok: std::sync::Arc::default(),
        })
    }

    /// Starts writing a new blob under a fresh name.
    pub async fn create(&self) -> io::Result<BlobWriter> {
        self.create_named(&BlobName::random()).await
    }

    /// Starts writing a blob under `name`, replacing any blob of that name once committed
    /// (a copy of another store's blob, for `backup`).
    pub async fn create_named(&self, name: &BlobName) -> io::Result<BlobWriter> {
        self.kept.forget(name);
        let name = name.clone();
        let inner = match &self.backend {
            Backend::Files(f) => Inner::File(f.create(&name).await?),
            Backend::S3(s) => Inner::S3(s.create(&name)),
        };
        Ok(BlobWriter {
            name,
            written: 0,
            inner,
        })
    }

    /// The whole of a small blob read recently, if it is kept in memory: what reads of it
    /// decrypt from without a copy.
    pub fn kept(&self, name: &BlobName) -> Option<Bytes> {
        self.kept.get(name)
    }

    /// The first `len` bytes of a committed blob (fewer if it is shorter).
    pub async fn read_head(&self, name: &BlobName, len: usize) -> io::Result<Vec<u8>> {
        if let Some(bytes) = self.kept.get(name) {
            return Ok(bytes.iter().take(len).copied().collect());
        }
        match &self.backend {
            Backend::Files(f) => f.read_head(name, len).await,
            Backend::S3(s) => s.read_head(name, len).await,
        }
    }

    /// A committed blob's bytes from `offset` to its end, streamed.
    pub async fn read_from(&self, name: &BlobName, offset: u64) -> io::Result<BlobReader> {
        if let Some(bytes) = self.kept.get(name) {
            let from = usize::try_from(offset).map_or(bytes.len(), |o| o.min(bytes.len()));
            return Ok(Box::pin(io::Cursor::new(bytes.slice(from..))));
        }
        match &self.backend {
            Backend::Files(f) => {
                let (file, first) = f.read_from(name, offset).await?;
                let first = io::Cursor::new(Bytes::from(first));
                Ok(match file {
                    // The whole blob: kept, if it was read from its start.
                    None => {
                        if offset == 0 {
                            self.kept.put(name.clone(), first.get_ref().clone());
                        }
                        Box::pin(first)
                    }
                    Some(file) => Box::pin(first.chain(tokio::fs::File::from_std(file))),
                })
            }
            Backend::S3(s) => s.read_from(name, offset).await,
        }
    }

    /// Removes a blob; removing one that is already gone is not an error.
    pub async fn delete(&self, name: &BlobName) -> io::Result<()> {
        self.kept.forget(name);
        match &self.backend {
            Backend::Files(f) => f.delete(name).await,
            Backend::S3(s) => s.delete(name).await,
        }
    }

    /// Whether a committed blob exists.
    pub async fn exists(&self, name: &BlobName) -> io::Result<bool> {
        match &self.backend {
            Backend::Files(f) => f.exists(name).await,
            Backend::S3(s) => s.exists(name).await,
        }
    }

    /// Every committed blob's name (for `backup`), in no particular order.
    pub async fn list(&self) -> io::Result<Vec<BlobName>> {
        match &self.backend {
            Backend::Files(f) => f.list().await,
            Backend::S3(s) => s.list().await,
        }
    }

    /// As [`BlobStore::check`], but a success within `max_age` stands for a new probe:
    /// an anonymous `/readyz` caller cannot make the node write a probe per call. A
    /// failure is never kept, so recovery shows at once.
    pub async fn check_recent(&self, max_age: Duration) -> io::Result<()> {
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

    /// Proves the store is usable: writes, reads back and removes a probe.
    pub async fn check(&self) -> io::Result<()> {
        match &self.backend {
            Backend::Files(f) => f.check().await,
            Backend::S3(s) => s.check().await,
        }
    }

    /// Removes what interrupted uploads left behind longer than `max_age` ago; returns
    /// how many. (On S3 an interrupted multipart upload is aborted by its writer; one cut
    /// off by a crash is removed by the bucket's `AbortIncompleteMultipartUpload` rule, see
    /// `docs/DEPLOYMENT.md`.)
    pub async fn sweep_tmp(&self, max_age: Duration) -> io::Result<usize> {
        match &self.backend {
            Backend::Files(f) => f.sweep_tmp(max_age).await,
            Backend::S3(_) => Ok(0),
        }
    }
}

#[derive(Debug)]
enum Inner {
    File(files::FileWriter),
    S3(s3::S3Writer),
}

/// A blob being written. Nothing is visible under its name until [`commit`](Self::commit);
/// dropped without commit, what was written is discarded.
#[derive(Debug)]
pub struct BlobWriter {
    name: BlobName,
    written: u64,
    inner: Inner,
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
        match &mut self.inner {
            Inner::File(f) => f.write(bytes).await?,
            Inner::S3(s) => s.write(bytes).await?,
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Makes the blob durable and visible under its name.
    pub async fn commit(self) -> io::Result<BlobName> {
        match self.inner {
            Inner::File(f) => f.commit().await?,
            Inner::S3(s) => s.commit().await?,
        }
        Ok(self.name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_random_hex_and_parse_strictly() {
        let a = BlobName::random();
        assert_ne!(a, BlobName::random());
        assert_eq!(BlobName::parse(a.as_str()), Some(a));
        assert_eq!(BlobName::parse("../../etc/passwd"), None);
        assert_eq!(BlobName::parse(&"A".repeat(32)), None);
    }
}
