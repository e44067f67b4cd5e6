//! Delivering a stored file: which bytes a request gets, and the decrypting stream that
//! sends them.
//!
//! A file is a STREAM ciphertext of 64 KiB chunks (see `custodia_crypto::stream`). Any
//! chunk opens on its own, so a ranged read seeks to the first chunk that covers the range
//! and decrypts only the chunks up to its end: resuming a 1 GiB download from its middle
//! costs what the rest costs, not what the start did. Every chunk is released only after
//! its tag verified; a chunk that fails ends the body with an error, so a client sees a
//! cut-off transfer (its `Content-Length` unmet), never altered bytes.
//!
//! The body is a fused stream: once it has ended it keeps answering "ended", whoever polls
//! it again (body wrappers such as compression encoders may).

use std::pin::Pin;

use bytes::Bytes;
use custodia_crypto::stream::{CHUNK_LEN, ChunkOpener, HEADER_LEN, Layout, TAG_LEN};
use custodia_crypto::{Aad, DataKey};
use futures_util::{FutureExt as _, Stream, StreamExt as _};
use tokio::io::AsyncReadExt as _;
use zeroize::Zeroize as _;

use super::FileInfo;
use crate::error::Error;
use crate::store::blob::{BlobName, BlobReader, BlobStore};

/// Which part of a file a request receives, decided from its headers, the file's size and
/// its entity tag before anything is read or recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Every byte (200).
    Whole,
    /// Bytes `first..=last` (206).
    Range {
        /// First byte sent.
        first: u64,
        /// Last byte sent (inclusive).
        last: u64,
    },
    /// The client's copy is current (304): no bytes.
    NotModified,
    /// No requested range lies within the file (416): no bytes.
    Unsatisfiable,
}

/// What a file request asked for: a part, and whether only the headers go out (`HEAD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The part of the file.
    pub part: Part,
    /// `HEAD`: headers only.
    pub head: bool,
}

impl Delivery {
    /// The whole file, with its body.
    pub const WHOLE: Self = Self {
        part: Part::Whole,
        head: false,
    };

    /// Bytes of the file that leave the server (what the audit record counts).
    pub fn bytes_sent(&self, size: u64) -> u64 {
        if self.head {
            return 0;
        }
        match self.part {
            Part::Whole => size,
            Part::Range { first, last } => last - first + 1,
            Part::NotModified | Part::Unsatisfiable => 0,
        }
    }

    /// How the audit record names anything but a whole-file read: the range sent (as in
    /// `Content-Range`), a revalidation, or headers only.
    pub fn note(&self, size: u64) -> Option<String> {
        let part = match self.part {
            Part::Whole => None,
            Part::Range { first, last } => Some(format!("range bytes {first}-{last}/{size}")),
            Part::NotModified => Some("not modified (the agency's copy is current)".to_owned()),
            Part::Unsatisfiable => Some(format!("range not satisfiable (size {size})")),
        };
        match (self.head, part) {
            (true, Some(p)) => Some(format!("headers only; {p}")),
            (true, None) => Some("headers only".to_owned()),
            (false, p) => p,
        }
    }

    /// Whether bytes of the file are sent at all.
    pub fn has_body(&self) -> bool {
        !self.head && matches!(self.part, Part::Whole | Part::Range { .. })
    }

    /// The plaintext bytes to send, as a half-open range, if any.
    fn span(&self, size: u64) -> Option<(u64, u64)> {
        if !self.has_body() {
            return None;
        }
        match self.part {
            Part::Range { first, last } => Some((first, last + 1)),
            _ => Some((0, size)),
        }
    }
}

/// A body of verified plaintext.
pub type Body = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A file ready to send: what it is, which part goes out, and (when bytes go out) the body.
pub struct FileStream {
    /// What the file is.
    pub info: FileInfo,
    /// What the request receives.
    pub delivery: Delivery,
    /// The plaintext of the delivered part; `None` when no bytes go out.
    pub body: Option<Body>,
}

impl FileStream {
    /// Opens the body's first chunk now, while the caller waits for something else (a
    /// read's record), if its sealed bytes are already in memory — a blob kept from a
    /// recent read, or the first stretch that opening the blob fetched — and fewer than
    /// [`AHEAD_MAX`] chunks wait so. It waits for nothing and reads nothing from storage:
    /// otherwise the body stays as it was, decrypting as it is sent. The plaintext stays in
    /// this process, is sent first once the response goes out, and is wiped if it never
    /// does. A chunk that does not open is kept as the body's error, where the lazy body
    /// would have met it.
    pub fn open_ahead(&mut self) {
        let Some(rest) = &mut self.body else {
            return;
        };
        let Ok(permit) = AHEAD.try_acquire() else {
            return;
        };
        // Polled once: a chunk whose bytes are still to come stays where it was in the
        // stream, and is picked up again when the response polls it.
        let Some(Some(first)) = rest.next().now_or_never() else {
            return;
        };
        if let Some(rest) = self.body.take() {
            self.body = Some(Box::pin(OpenedAhead {
                first: Some((first, permit)),
                rest,
            }));
        }
    }
}

/// How many chunks may wait opened ahead at once (16 MiB of plaintext), whatever the
/// number of reads waiting for their records.
const AHEAD_MAX: usize = 256;
static AHEAD: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(AHEAD_MAX);

/// A body whose first chunk was opened ahead ([`FileStream::open_ahead`]).
struct OpenedAhead {
    /// The chunk, and its place among those waiting, until it is sent.
    first: Option<(
        Result<Bytes, std::io::Error>,
        tokio::sync::SemaphorePermit<'static>,
    )>,
    rest: Body,
}

impl Stream for OpenedAhead {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match this.first.take() {
            Some((first, _place)) => std::task::Poll::Ready(Some(first)),
            None => this.rest.poll_next_unpin(cx),
        }
    }
}

/// Opens the part of a blob that `delivery` names, decrypting with `key` under `aad`.
/// Nothing is read from the blob when no bytes go out.
#[tracing::instrument(skip_all)]
pub async fn open(
    blobs: &BlobStore,
    name: &BlobName,
    key: &DataKey,
    aad: &Aad,
    info: FileInfo,
    delivery: Delivery,
) -> Result<FileStream, Error> {
    let Some((start, end)) = delivery.span(info.size) else {
        return Ok(FileStream {
            info,
            delivery,
            body: None,
        });
    };
    let blob_error =
        |e: std::io::Error| Error::Internal(anyhow::anyhow!("blob {}: {e}", name.as_str()));
    let layout = Layout::new(info.size);
    let first_chunk = layout.chunk_of(start);
    let short = || {
        Error::Internal(anyhow::anyhow!(
            "blob {}: shorter than its header",
            name.as_str()
        ))
    };
    // A small blob read recently is in memory: its chunks are decrypted straight from it.
    // Otherwise a read from the first chunk (every whole-file read) is one request to the
    // store: the header, then the chunks, from one stream; a later range fetches the
    // header, then reads from its first chunk.
    let (header, source): ([u8; HEADER_LEN], Option<Sealed>) = if let Some(kept) = blobs.kept(name)
    {
        let header = kept
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(short)?;
        (header, Some(Sealed::Kept(kept)))
    } else if first_chunk == 0 && start < end {
        let mut header = [0u8; HEADER_LEN];
        let mut reader = blobs.read_from(name, 0).await.map_err(blob_error)?;
        reader.read_exact(&mut header).await.map_err(blob_error)?;
        (header, Some(Sealed::Read(reader)))
    } else {
        let head = blobs
            .read_head(name, HEADER_LEN)
            .await
            .map_err(blob_error)?;
        (head.try_into().map_err(|_| short())?, None)
    };
    let opener = ChunkOpener::new(key, aad, &header, layout)
        .map_err(|e| Error::Internal(anyhow::anyhow!("blob {}: {e}", name.as_str())))?;
    if start >= end {
        // An empty span (an empty file): nothing to read past the header.
        return Ok(FileStream {
            info,
            delivery,
            body: Some(Box::pin(futures_util::stream::empty())),
        });
    }
    let source = match source {
        Some(source) => source,
        None => Sealed::Read(
            blobs
                .read_from(name, layout.ciphertext_start(first_chunk))
                .await
                .map_err(blob_error)?,
        ),
    };
    Ok(FileStream {
        info,
        delivery,
        body: Some(Box::pin(decrypt_span(source, opener, start, end))),
    })
}

/// Where a file's sealed chunks come from.
enum Sealed {
    /// The whole blob, in memory.
    Kept(Bytes),
    /// The blob's bytes as they arrive, positioned at the next chunk to open.
    Read(BlobReader),
}

/// Where the decrypting stream stands: the blob read up to chunk `next`.
struct Cursor {
    source: Sealed,
    opener: ChunkOpener,
    next: u64,
    start: u64,
    end: u64,
}

/// Decrypts the chunks covering plaintext bytes `start..end` from `source` (a reader
/// positioned at the first of them, or the whole blob) and yields exactly those bytes.
/// Fused.
fn decrypt_span(
    source: Sealed,
    opener: ChunkOpener,
    start: u64,
    end: u64,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let next = opener.layout().chunk_of(start);
    let cursor = Cursor {
        source,
        opener,
        next,
        start,
        end,
    };
    futures_util::stream::unfold(Some(cursor), |state| async move {
        let mut c = state?;
        let layout = c.opener.layout();
        let chunk_start = layout.plaintext_start(c.next);
        let opened = match open_chunk(&mut c).await {
            Ok(opened) => opened,
            Err(e) => return Some((Err(e), None)),
        };
        // Cut the chunk to the span: both offsets are within this chunk's 64 KiB.
        let from = usize::try_from(c.start.saturating_sub(chunk_start)).unwrap_or(0);
        let to = usize::try_from(c.end - chunk_start)
            .unwrap_or(usize::MAX)
            .min(opened.len);
        let bytes = Bytes::from_owner(opened).slice(from.min(to)..to);
        c.next += 1;
        let more = layout.plaintext_start(c.next) < c.end && c.next < layout.chunks();
        Some((Ok(bytes), more.then_some(c)))
    })
    .fuse()
}

/// Opens chunk `c.next` into a buffer of the pool.
async fn open_chunk(c: &mut Cursor) -> Result<Plaintext, std::io::Error> {
    let layout = c.opener.layout();
    let sealed_len = layout.ciphertext_len_of(c.next);
    let mut opened = Plaintext::take();
    let buffer = opened
        .buf
        .get_mut(..sealed_len)
        .ok_or_else(|| std::io::Error::other("a chunk longer than the stream's chunks"))?;
    opened.len = match &mut c.source {
        Sealed::Kept(blob) => {
            let at = usize::try_from(layout.ciphertext_start(c.next)).unwrap_or(usize::MAX);
            let sealed = at
                .checked_add(sealed_len)
                .and_then(|to| blob.get(at..to))
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            let plaintext = buffer
                .get_mut(..sealed_len - TAG_LEN)
                .ok_or_else(|| std::io::Error::other("a chunk shorter than its tag"))?;
            c.opener
                .open_into(c.next, sealed, plaintext)
                .map_err(std::io::Error::other)?;
            plaintext.len()
        }
        Sealed::Read(reader) => {
            reader.read_exact(buffer).await?;
            c.opener
                .open(c.next, buffer)
                .map_err(std::io::Error::other)?
        }
    };
    Ok(opened)
}

/// Plaintext buffers of one chunk, reused from read to read so sending a file allocates
/// (and frees) no 64 KiB per chunk. At most [`POOL_KEEPS`] wait here; more are freed.
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
/// How many free buffers the pool keeps (4 MiB).
const POOL_KEEPS: usize = 64;
/// A buffer's length: a sealed chunk, opened in place.
const BUFFER_LEN: usize = CHUNK_LEN + TAG_LEN;

/// A chunk's plaintext in a pooled buffer: the first `len` bytes. When the response is
/// done with it, the plaintext is wiped and the buffer goes back to the pool.
struct Plaintext {
    buf: Vec<u8>,
    len: usize,
}

impl Plaintext {
    fn take() -> Self {
        let reused = POOL.lock().ok().and_then(|mut free| free.pop());
        Self {
            buf: reused.unwrap_or_else(|| vec![0; BUFFER_LEN]),
            len: 0,
        }
    }
}

impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        if let Some(used) = self.buf.get_mut(..self.len) {
            used.zeroize();
        }
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut free) = POOL.lock()
            && free.len() < POOL_KEEPS
            && buf.len() == BUFFER_LEN
        {
            free.push(buf);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn delivery(part: Part) -> Delivery {
        Delivery { part, head: false }
    }

    #[test]
    fn a_sent_chunk_is_wiped_before_its_buffer_is_reused() {
        let mut opened = Plaintext::take();
        opened.buf[..1000].fill(0xAB);
        opened.len = 1000;
        let sent = Bytes::from_owner(opened).slice(10..20);
        assert_eq!(sent.as_ref(), [0xAB; 10]);
        drop(sent);
        let free = POOL.lock().unwrap();
        assert!(!free.is_empty(), "the buffer went back to the pool");
        assert!(
            free.iter().all(|b| b[..1000].iter().any(|x| *x != 0xAB)),
            "no free buffer still holds the plaintext"
        );
    }

    /// A blob of `plaintext` sealed under `key`, read once so it is kept in memory.
    async fn kept_blob(
        dir: &std::path::Path,
        key: &DataKey,
        aad: &Aad,
        plaintext: &[u8],
        tamper: bool,
    ) -> (BlobStore, BlobName, FileInfo) {
        let blobs = BlobStore::open(&crate::config::BlobLocation::File(dir.to_path_buf()))
            .await
            .unwrap();
        let mut sealed = custodia_crypto::stream::encrypt_all(key, aad, plaintext).unwrap();
        if tamper {
            sealed[HEADER_LEN + 5] ^= 1;
        }
        let mut writer = blobs.create().await.unwrap();
        writer.write(&sealed).await.unwrap();
        let name = writer.commit().await.unwrap();
        let mut whole = Vec::new();
        let mut reader = blobs.read_from(&name, 0).await.unwrap();
        reader.read_to_end(&mut whole).await.unwrap();
        assert!(
            blobs.kept(&name).is_some(),
            "a small blob read whole is kept"
        );
        let info = FileInfo {
            name: "a.pdf".into(),
            media_type: super::super::media::MediaType::Pdf,
            size: plaintext.len() as u64,
            sha256: String::new(),
        };
        (blobs, name, info)
    }

    async fn body_of(opened: FileStream) -> Result<Vec<u8>, std::io::Error> {
        let mut body = opened.body.unwrap();
        let mut all = Vec::new();
        while let Some(chunk) = body.next().await {
            all.extend_from_slice(&chunk?);
        }
        assert!(body.next().await.is_none(), "the body stays ended");
        Ok(all)
    }

    // One test, as the places are counted across the process.
    #[tokio::test]
    async fn a_chunk_opened_ahead_is_sent_as_it_would_have_been_and_its_place_freed() {
        use custodia_crypto::SymmetricKey as _;
        let dir = tempfile::tempdir().unwrap();
        let key = DataKey::generate();
        let aad = Aad::new("document-file");
        // Three chunks, the last one short.
        let plaintext: Vec<u8> = (0..(2 * CHUNK_LEN + 1000))
            .map(|i| (i % 251) as u8)
            .collect();
        let (blobs, name, info) = kept_blob(dir.path(), &key, &aad, &plaintext, false).await;
        let places = AHEAD.available_permits();

        for (part, want) in [
            (Part::Whole, &plaintext[..]),
            (
                Part::Range {
                    first: 70_000,
                    last: 130_000,
                },
                &plaintext[70_000..=130_000],
            ),
        ] {
            let mut opened = open(&blobs, &name, &key, &aad, info.clone(), delivery(part))
                .await
                .unwrap();
            opened.open_ahead();
            assert_eq!(
                AHEAD.available_permits(),
                places - 1,
                "the opened chunk holds a place"
            );
            assert_eq!(body_of(opened).await.unwrap(), want);
            assert_eq!(AHEAD.available_permits(), places, "sent: its place is free");
        }

        // A blob not kept: opening it fetched its first stretch, so its first chunk is in
        // memory and opens ahead too.
        let cold = BlobStore::open(&crate::config::BlobLocation::File(dir.path().to_path_buf()))
            .await
            .unwrap();
        assert!(cold.kept(&name).is_none());
        let mut opened = open(&cold, &name, &key, &aad, info.clone(), Delivery::WHOLE)
            .await
            .unwrap();
        opened.open_ahead();
        assert_eq!(AHEAD.available_permits(), places - 1, "opened ahead");
        assert_eq!(body_of(opened).await.unwrap(), plaintext);
        assert_eq!(AHEAD.available_permits(), places);

        // A read refused at its record: the opened chunk is dropped unsent.
        let mut opened = open(&blobs, &name, &key, &aad, info.clone(), Delivery::WHOLE)
            .await
            .unwrap();
        opened.open_ahead();
        drop(opened);
        assert_eq!(
            AHEAD.available_permits(),
            places,
            "dropped: its place is free"
        );

        // No place free: the body stays lazy, and is still the same bytes.
        let held = AHEAD
            .try_acquire_many(u32::try_from(places).unwrap())
            .unwrap();
        let mut opened = open(&blobs, &name, &key, &aad, info.clone(), Delivery::WHOLE)
            .await
            .unwrap();
        opened.open_ahead();
        assert_eq!(AHEAD.available_permits(), 0, "nothing opened ahead");
        drop(held);
        assert_eq!(body_of(opened).await.unwrap(), plaintext);

        // Headers only: nothing to open.
        let head = Delivery {
            part: Part::Whole,
            head: true,
        };
        let mut opened = open(&blobs, &name, &key, &aad, info, head).await.unwrap();
        opened.open_ahead();
        assert!(opened.body.is_none());
        assert_eq!(AHEAD.available_permits(), places);

        // A chunk that does not open ahead ends the body with an error: no altered byte
        // is sent.
        let plaintext = vec![7u8; 5000];
        let dir = tempfile::tempdir().unwrap();
        let (blobs, name, info) = kept_blob(dir.path(), &key, &aad, &plaintext, true).await;
        let mut opened = open(&blobs, &name, &key, &aad, info, Delivery::WHOLE)
            .await
            .unwrap();
        opened.open_ahead();
        assert!(body_of(opened).await.is_err(), "no altered byte is sent");
    }

    #[test]
    fn bytes_sent_and_notes_follow_the_part() {
        assert_eq!(Delivery::WHOLE.bytes_sent(10), 10);
        assert_eq!(Delivery::WHOLE.note(10), None);
        let r = delivery(Part::Range { first: 2, last: 5 });
        assert_eq!(r.bytes_sent(10), 4);
        assert_eq!(r.note(10).as_deref(), Some("range bytes 2-5/10"));
        assert_eq!(delivery(Part::NotModified).bytes_sent(10), 0);
        let head = Delivery {
            part: Part::Whole,
            head: true,
        };
        assert_eq!(head.bytes_sent(10), 0);
        assert!(!head.has_body());
        assert_eq!(head.note(10).as_deref(), Some("headers only"));
    }
}
