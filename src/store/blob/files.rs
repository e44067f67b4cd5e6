//! Blobs as local files: written to `tmp/<name>`, fsynced, renamed into
//! `<first two hex digits>/<name>` and the directory fsynced, so a crash leaves either no
//! blob or a complete one; temporary files older than a cut-off are swept at start.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::fs::{self, File, OpenOptions};
use tokio::io::AsyncWriteExt as _;

use super::BlobName;

/// A directory of blob files.
#[derive(Debug, Clone)]
pub(super) struct FileBlobs {
    root: PathBuf,
}

impl FileBlobs {
    pub(super) async fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join("tmp")).await?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub(super) async fn create(&self, name: &BlobName) -> io::Result<FileWriter> {
        let tmp = self.root.join("tmp").join(name.as_str());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .await?;
        Ok(FileWriter {
            file: Some(file),
            tmp,
            dir: self.root.join(name.shard()),
            name: name.clone(),
        })
    }

    pub(super) async fn read_head(&self, name: &BlobName, len: usize) -> io::Result<Vec<u8>> {
        let (_, head) = read_stretch(self.path(name), 0, len).await?;
        Ok(head)
    }

    /// Opens, seeks and reads the first [`FIRST_READ`] bytes in one trip to the blocking
    /// pool (each `tokio::fs` call is a trip of its own: a thread hand-off each way): the
    /// bytes, and the open file if the blob goes on past them. A blob that ends within them
    /// — most documents — is then served from memory.
    pub(super) async fn read_from(
        &self,
        name: &BlobName,
        offset: u64,
    ) -> io::Result<(Option<std::fs::File>, Vec<u8>)> {
        read_stretch(self.path(name), offset, FIRST_READ).await
    }

    pub(super) async fn delete(&self, name: &BlobName) -> io::Result<()> {
        match fs::remove_file(self.path(name)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub(super) async fn exists(&self, name: &BlobName) -> io::Result<bool> {
        fs::try_exists(self.path(name)).await
    }

    pub(super) async fn list(&self) -> io::Result<Vec<BlobName>> {
        let mut names = Vec::new();
        let mut shards = fs::read_dir(&self.root).await?;
        while let Some(shard) = shards.next_entry().await? {
            if shard.file_name() == "tmp" || !shard.file_type().await?.is_dir() {
                continue;
            }
            let mut blobs = fs::read_dir(shard.path()).await?;
            while let Some(blob) = blobs.next_entry().await? {
                if let Some(name) = blob.file_name().to_str().and_then(BlobName::parse) {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    pub(super) async fn check(&self) -> io::Result<()> {
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

    pub(super) async fn sweep_tmp(&self, max_age: Duration) -> io::Result<usize> {
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
        self.root.join(name.shard()).join(name.as_str())
    }
}

/// A blob file being written; removed if dropped before [`FileWriter::commit`].
#[derive(Debug)]
pub(super) struct FileWriter {
    file: Option<File>,
    tmp: PathBuf,
    dir: PathBuf,
    name: BlobName,
}

impl FileWriter {
    pub(super) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file
            .as_mut()
            .ok_or_else(closed)?
            .write_all(bytes)
            .await
    }

    /// fsync the file, rename it into place, fsync the directory.
    pub(super) async fn commit(mut self) -> io::Result<()> {
        let mut file = self.file.take().ok_or_else(closed)?;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        fs::create_dir_all(&self.dir).await?;
        fs::rename(&self.tmp, self.dir.join(self.name.as_str())).await?;
        File::open(&self.dir).await?.sync_all().await
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Not committed: the temporary file must not outlive the writer. A failure here
            // is caught by the start-up sweep.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// How much of a blob the first read takes: a 64 KiB document's whole ciphertext (header,
/// chunk and tag) with room to spare; per read in flight, so memory stays bounded.
const FIRST_READ: usize = 256 * 1024;

/// Up to `len` bytes of the file at `path` from `offset`, with the open file if it goes
/// on past them, in one blocking call.
async fn read_stretch(
    path: PathBuf,
    offset: u64,
    len: usize,
) -> io::Result<(Option<std::fs::File>, Vec<u8>)> {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Seek as _};
        let mut file = std::fs::File::open(&path)?;
        if offset > 0 {
            file.seek(io::SeekFrom::Start(offset))?;
        }
        let mut bytes = Vec::with_capacity(len.min(FIRST_READ));
        (&mut file).take(len as u64).read_to_end(&mut bytes)?;
        let more = bytes.len() == len;
        Ok((more.then_some(file), bytes))
    })
    .await
    .map_err(io::Error::other)?
}

fn closed() -> io::Error {
    io::Error::other("blob writer already committed")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::BlobStore;
    use super::*;
    use crate::config::BlobLocation;
    use tokio::io::AsyncReadExt as _;

    async fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&BlobLocation::File(dir.path().join("blobs")))
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn committed_blob_is_readable_from_any_offset_then_deleted() {
        let (_dir, store) = store().await;
        let mut w = store.create().await.unwrap();
        w.write(b"cipher").await.unwrap();
        w.write(b"text").await.unwrap();
        assert_eq!(w.written(), 10);
        let name = w.commit().await.unwrap();
        assert_eq!(store.read_head(&name, 6).await.unwrap(), b"cipher");
        assert_eq!(store.read_head(&name, 64).await.unwrap(), b"ciphertext");
        let mut tail = Vec::new();
        store
            .read_from(&name, 6)
            .await
            .unwrap()
            .read_to_end(&mut tail)
            .await
            .unwrap();
        assert_eq!(tail, b"text");
        assert_eq!(store.list().await.unwrap(), vec![name.clone()]);
        store.delete(&name).await.unwrap();
        assert!(!store.exists(&name).await.unwrap());
        store.delete(&name).await.unwrap();
        assert!(store.list().await.unwrap().is_empty());
    }

    async fn read_all(store: &BlobStore, name: &BlobName, offset: u64) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        store
            .read_from(name, offset)
            .await?
            .read_to_end(&mut bytes)
            .await?;
        Ok(bytes)
    }

    #[tokio::test]
    async fn a_small_blob_read_whole_is_kept_until_deleted_and_a_large_one_never() {
        let (dir, store) = store().await;
        let on_disk = |name: &BlobName| {
            dir.path()
                .join("blobs")
                .join(&name.as_str()[..2])
                .join(name.as_str())
        };
        let mut w = store.create().await.unwrap();
        w.write(b"ciphertext").await.unwrap();
        let small = w.commit().await.unwrap();
        assert_eq!(read_all(&store, &small, 0).await.unwrap(), b"ciphertext");
        // Kept: answered from memory, even with the file gone behind the store's back.
        std::fs::remove_file(on_disk(&small)).unwrap();
        assert_eq!(read_all(&store, &small, 0).await.unwrap(), b"ciphertext");
        assert_eq!(read_all(&store, &small, 6).await.unwrap(), b"text");
        assert_eq!(read_all(&store, &small, 99).await.unwrap(), b"");
        assert_eq!(store.read_head(&small, 6).await.unwrap(), b"cipher");
        // Deleting through the store forgets it at once.
        store.delete(&small).await.unwrap();
        assert!(read_all(&store, &small, 0).await.is_err());
        assert!(store.read_head(&small, 6).await.is_err());

        // A blob longer than one first read is streamed from its file every time.
        let large_bytes = vec![7u8; FIRST_READ + 1];
        let mut w = store.create().await.unwrap();
        w.write(&large_bytes).await.unwrap();
        let large = w.commit().await.unwrap();
        assert_eq!(read_all(&store, &large, 0).await.unwrap(), large_bytes);
        std::fs::remove_file(on_disk(&large)).unwrap();
        assert!(read_all(&store, &large, 0).await.is_err());
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
}
