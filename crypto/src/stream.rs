//! Chunked file encryption with the STREAM construction.
//!
//! Layout: `header ‖ chunk₀ ‖ chunk₁ ‖ … ‖ chunkₙ`, where `header = 0x01 ‖ prefix(7)` and
//! each chunk is `AES-256-GCM(plaintext[≤ 64 KiB]) ‖ tag(16)`. Every chunk but the last
//! carries exactly [`CHUNK_LEN`] plaintext bytes; the last carries 0 to [`CHUNK_LEN`].
//!
//! Chunk `i` uses nonce `prefix ‖ i (u32 BE) ‖ last` where `last` is 1 on the final chunk
//! and 0 otherwise, and associated data `header ‖ Aad`. Hence:
//! * reordering or duplicating chunks changes their counter → fails;
//! * dropping the tail leaves a chunk sealed with `last = 0` at the end → fails;
//! * a chunk from another file has another random prefix (and usually key and `Aad`) → fails.
//!
//! The encryptor and decryptor are push-based: they take bytes in any pieces and hold at
//! most one chunk, so memory does not grow with file size and no I/O happens here.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Tag};
use rand_core::{OsRng, RngCore};

use crate::{Aad, CryptoError, SymmetricKey};

/// Plaintext bytes per chunk.
pub const CHUNK_LEN: usize = 64 * 1024;
/// Authentication tag bytes per chunk.
pub const TAG_LEN: usize = 16;
/// Header bytes at the start of a stream.
pub const HEADER_LEN: usize = 8;
const VERSION: u8 = 0x01;
const PREFIX_LEN: usize = 7;

/// Length of the ciphertext of a `plaintext_len`-byte stream.
pub fn ciphertext_len(plaintext_len: u64) -> u64 {
    let chunk = CHUNK_LEN as u64;
    let chunks = if plaintext_len == 0 {
        1
    } else {
        plaintext_len.div_ceil(chunk)
    };
    HEADER_LEN as u64 + plaintext_len + chunks * TAG_LEN as u64
}

/// Moves bytes from the front of `data` into `buf` until `buf` holds `len` (or `data` is
/// used up).
fn fill_to(buf: &mut Vec<u8>, data: &mut &[u8], len: usize) {
    let room = len.saturating_sub(buf.len());
    let (head, rest) = data.split_at(room.min(data.len()));
    buf.extend_from_slice(head);
    *data = rest;
}

struct ChunkCipher {
    cipher: Aes256Gcm,
    header: [u8; HEADER_LEN],
    aad: Vec<u8>,
    counter: u32,
    done: bool,
}

impl ChunkCipher {
    fn new(key: &impl SymmetricKey, aad: &Aad, header: [u8; HEADER_LEN]) -> Self {
        let mut full_aad = header.to_vec();
        full_aad.extend_from_slice(aad.as_bytes());
        Self {
            cipher: Aes256Gcm::new(key.expose().into()),
            header,
            aad: full_aad,
            counter: 0,
            done: false,
        }
    }

    fn nonce(&self, last: bool) -> [u8; 12] {
        let mut nonce = [0u8; 12];
        nonce[..PREFIX_LEN].copy_from_slice(&self.header[1..]);
        nonce[PREFIX_LEN..11].copy_from_slice(&self.counter.to_be_bytes());
        nonce[11] = u8::from(last);
        nonce
    }

    fn advance(&mut self, last: bool) -> Result<(), CryptoError> {
        if last {
            self.done = true;
        } else {
            self.counter = self
                .counter
                .checked_add(1)
                .ok_or(CryptoError::StreamTooLong)?;
        }
        Ok(())
    }
}

/// Encrypts a stream pushed in pieces. Call [`push`](Self::push) for each piece and
/// [`finish`](Self::finish) once at the end; the first output bytes are the header.
pub struct StreamEncryptor {
    inner: ChunkCipher,
    buf: Vec<u8>,
    header_sent: bool,
}

impl StreamEncryptor {
    /// A new stream under `key`, bound to `aad`, with a fresh random prefix.
    pub fn new(key: &impl SymmetricKey, aad: &Aad) -> Self {
        let mut header = [0u8; HEADER_LEN];
        header[0] = VERSION;
        OsRng.fill_bytes(&mut header[1..]);
        Self {
            inner: ChunkCipher::new(key, aad, header),
            buf: Vec::with_capacity(CHUNK_LEN + TAG_LEN),
            header_sent: false,
        }
    }

    /// Encrypts what it can of `data`, appending ciphertext to `out`. Holds back at most
    /// one chunk, because only [`finish`](Self::finish) knows which chunk is last.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.emit_header(out);
        while !data.is_empty() {
            if self.buf.len() == CHUNK_LEN {
                self.seal_buffered(false, out)?;
            }
            fill_to(&mut self.buf, &mut data, CHUNK_LEN);
        }
        Ok(())
    }

    /// Encrypts the final chunk (possibly empty) and appends it to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.emit_header(out);
        self.seal_buffered(true, out)
    }

    fn emit_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_sent {
            out.extend_from_slice(&self.inner.header);
            self.header_sent = true;
        }
    }

    fn seal_buffered(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let nonce = self.inner.nonce(last);
        let tag = self
            .inner
            .cipher
            .encrypt_inout_detached(
                &nonce.into(),
                &self.inner.aad,
                self.buf.as_mut_slice().into(),
            )
            .map_err(|_| CryptoError::StreamTooLong)?;
        out.extend_from_slice(&self.buf);
        out.extend_from_slice(&tag);
        self.buf.clear();
        self.inner.advance(last)
    }
}

/// Decrypts a stream pushed in pieces. Plaintext is released chunk by chunk, each only
/// after its tag verified; [`finish`](Self::finish) fails unless the true last chunk arrived.
pub struct StreamDecryptor {
    key: aes_gcm::Key<Aes256Gcm>,
    aad: Aad,
    inner: Option<ChunkCipher>,
    buf: Vec<u8>,
}

impl StreamDecryptor {
    /// A decryptor for a stream made under `key` and `aad`.
    pub fn new(key: &impl SymmetricKey, aad: &Aad) -> Self {
        Self {
            key: (*key.expose()).into(),
            aad: aad.clone(),
            inner: None,
            buf: Vec::with_capacity(CHUNK_LEN + TAG_LEN),
        }
    }

    /// Takes ciphertext bytes and appends every chunk that is known not to be the last.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        while !data.is_empty() {
            if self.inner.is_none() {
                fill_to(&mut self.buf, &mut data, HEADER_LEN);
                if self.buf.len() == HEADER_LEN {
                    self.start()?;
                }
                continue;
            }
            if self.buf.len() == CHUNK_LEN + TAG_LEN {
                // More bytes follow, so the buffered chunk is not the last one.
                self.open_buffered(false, out)?;
            }
            fill_to(&mut self.buf, &mut data, CHUNK_LEN + TAG_LEN);
        }
        Ok(())
    }

    /// Decrypts the last chunk. Fails if the stream was cut short or had trailing chunks.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.inner.is_none() || self.buf.len() < TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        self.open_buffered(true, out)
    }

    fn start(&mut self) -> Result<(), CryptoError> {
        let header: [u8; HEADER_LEN] = self
            .buf
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Truncated)?;
        if header[0] != VERSION {
            return Err(CryptoError::UnsupportedVersion(header[0]));
        }
        let key = crate::DataKey::from_bytes(self.key.into());
        self.inner = Some(ChunkCipher::new(&key, &self.aad, header));
        self.buf.clear();
        Ok(())
    }

    fn open_buffered(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let inner = self.inner.as_mut().ok_or(CryptoError::Truncated)?;
        if inner.done {
            return Err(CryptoError::Decrypt);
        }
        let split = self
            .buf
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(CryptoError::Truncated)?;
        let (body, tag) = self.buf.split_at_mut(split);
        let tag = Tag::try_from(&*tag).map_err(|_| CryptoError::Truncated)?;
        let nonce = inner.nonce(last);
        inner
            .cipher
            .decrypt_inout_detached(&nonce.into(), &inner.aad, body.into(), &tag)
            .map_err(|_| CryptoError::Decrypt)?;
        out.extend_from_slice(body);
        self.buf.clear();
        inner.advance(last)
    }
}

impl Drop for StreamDecryptor {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.as_mut_slice().zeroize();
    }
}

/// Where each chunk of a stream of a known plaintext length lies: what random access needs.
///
/// The plaintext length is not stored in the stream; the caller knows it from authenticated
/// metadata. A wrong length cannot pass unnoticed: the chunk it makes the reader take as the
/// last was sealed with `last = 0` (or the last one with `last = 1` is read as an inner one),
/// and a chunk's own length is covered by its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    plaintext_len: u64,
}

impl Layout {
    /// The layout of a stream of `plaintext_len` bytes.
    pub fn new(plaintext_len: u64) -> Self {
        Self { plaintext_len }
    }

    /// Number of chunks (an empty stream still has one, empty, chunk).
    pub fn chunks(&self) -> u64 {
        self.plaintext_len.div_ceil(CHUNK_LEN as u64).max(1)
    }

    /// The chunk holding plaintext byte `offset` (the last chunk for `offset` at the end).
    pub fn chunk_of(&self, offset: u64) -> u64 {
        (offset / CHUNK_LEN as u64).min(self.chunks() - 1)
    }

    /// Offset of plaintext byte 0 of chunk `index`.
    pub fn plaintext_start(&self, index: u64) -> u64 {
        index * CHUNK_LEN as u64
    }

    /// Offset in the ciphertext where chunk `index` begins.
    pub fn ciphertext_start(&self, index: u64) -> u64 {
        HEADER_LEN as u64 + index * (CHUNK_LEN + TAG_LEN) as u64
    }

    /// Plaintext bytes in chunk `index`.
    pub fn plaintext_len_of(&self, index: u64) -> usize {
        let start = self.plaintext_start(index);
        // At most CHUNK_LEN, so the conversion cannot fail on any platform Custodia runs on.
        usize::try_from(
            self.plaintext_len
                .saturating_sub(start)
                .min(CHUNK_LEN as u64),
        )
        .unwrap_or(CHUNK_LEN)
    }

    /// Ciphertext bytes in chunk `index` (its plaintext and tag).
    pub fn ciphertext_len_of(&self, index: u64) -> usize {
        self.plaintext_len_of(index) + TAG_LEN
    }

    /// Whether chunk `index` is the last one.
    pub fn is_last(&self, index: u64) -> bool {
        index + 1 == self.chunks()
    }
}

/// Opens any chunk of a stream on its own, given the stream's header: a ranged read
/// decrypts only the chunks that cover the range, not everything before it.
pub struct ChunkOpener {
    inner: ChunkCipher,
    layout: Layout,
}

impl ChunkOpener {
    /// An opener for the stream whose first [`HEADER_LEN`] bytes are `header`, made under
    /// `key` and `aad`, of `layout`'s plaintext length.
    pub fn new(
        key: &impl SymmetricKey,
        aad: &Aad,
        header: &[u8],
        layout: Layout,
    ) -> Result<Self, CryptoError> {
        let header: [u8; HEADER_LEN] = header.try_into().map_err(|_| CryptoError::Truncated)?;
        if header[0] != VERSION {
            return Err(CryptoError::UnsupportedVersion(header[0]));
        }
        if layout.chunks() > u64::from(u32::MAX) {
            return Err(CryptoError::StreamTooLong);
        }
        Ok(Self {
            inner: ChunkCipher::new(key, aad, header),
            layout,
        })
    }

    /// The layout this opener reads.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Decrypts chunk `index` in place: `chunk` holds its ciphertext and tag (exactly
    /// [`Layout::ciphertext_len_of`] bytes); its first bytes, as many as this returns, are
    /// left holding the plaintext (the tag stays behind them).
    pub fn open(&self, index: u64, chunk: &mut [u8]) -> Result<usize, CryptoError> {
        let (nonce, tag, split) = self.chunk_params(index, chunk)?;
        let plaintext = chunk.get_mut(..split).ok_or(CryptoError::Truncated)?;
        self.inner
            .cipher
            .decrypt_inout_detached(&nonce.into(), &self.inner.aad, plaintext.into(), &tag)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(split)
    }

    /// Decrypts chunk `index` from `sealed` (its ciphertext and tag, exactly
    /// [`Layout::ciphertext_len_of`] bytes) into `out` (exactly its plaintext length),
    /// leaving `sealed` as it was: a chunk held in memory opens without a copy. Nothing is
    /// written to `out` unless the tag verifies.
    pub fn open_into(&self, index: u64, sealed: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
        let (nonce, tag, split) = self.chunk_params(index, sealed)?;
        let ciphertext = sealed.get(..split).ok_or(CryptoError::Truncated)?;
        let buffer = InOutBuf::new(ciphertext, out).map_err(|_| CryptoError::Truncated)?;
        self.inner
            .cipher
            .decrypt_inout_detached(&nonce.into(), &self.inner.aad, buffer, &tag)
            .map_err(|_| CryptoError::Decrypt)
    }

    /// Chunk `index`'s nonce and tag, and where its tag begins in `sealed`, after checking
    /// that `sealed` is exactly that chunk's length.
    fn chunk_params(
        &self,
        index: u64,
        sealed: &[u8],
    ) -> Result<([u8; 12], Tag, usize), CryptoError> {
        let counter = u32::try_from(index).map_err(|_| CryptoError::StreamTooLong)?;
        if index >= self.layout.chunks() || sealed.len() != self.layout.ciphertext_len_of(index) {
            return Err(CryptoError::Truncated);
        }
        let split = sealed.len() - TAG_LEN;
        let tag = Tag::try_from(sealed.get(split..).ok_or(CryptoError::Truncated)?)
            .map_err(|_| CryptoError::Truncated)?;
        let mut nonce = [0u8; 12];
        nonce[..PREFIX_LEN].copy_from_slice(&self.inner.header[1..]);
        nonce[PREFIX_LEN..11].copy_from_slice(&counter.to_be_bytes());
        nonce[11] = u8::from(self.layout.is_last(index));
        Ok((nonce, tag, split))
    }
}

/// Encrypts a whole in-memory plaintext (small files and tests).
pub fn encrypt_all(
    key: &impl SymmetricKey,
    aad: &Aad,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut enc = StreamEncryptor::new(key, aad);
    let mut out = Vec::new();
    enc.push(plaintext, &mut out)?;
    enc.finish(&mut out)?;
    Ok(out)
}

/// Decrypts a whole in-memory stream (small files and tests).
pub fn decrypt_all(
    key: &impl SymmetricKey,
    aad: &Aad,
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut dec = StreamDecryptor::new(key, aad);
    let mut out = Vec::new();
    dec.push(ciphertext, &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::DataKey;

    #[test]
    fn lengths_match_layout() {
        let key = DataKey::generate();
        let aad = Aad::new("file");
        for len in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 3 * CHUNK_LEN] {
            let ct = encrypt_all(&key, &aad, &vec![1u8; len]).unwrap();
            assert_eq!(ct.len() as u64, ciphertext_len(len as u64), "len {len}");
            assert_eq!(decrypt_all(&key, &aad, &ct).unwrap().len(), len);
        }
    }

    #[test]
    fn cut_at_a_chunk_boundary_is_detected() {
        let key = DataKey::generate();
        let aad = Aad::new("file");
        let ct = encrypt_all(&key, &aad, &vec![5u8; 2 * CHUNK_LEN + 10]).unwrap();
        let cut = HEADER_LEN + 2 * (CHUNK_LEN + TAG_LEN);
        assert_eq!(
            decrypt_all(&key, &aad, &ct[..cut]),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(
            decrypt_all(&key, &aad, &ct[..HEADER_LEN]),
            Err(CryptoError::Truncated)
        );
        assert_eq!(
            decrypt_all(&key, &aad, &ct[..3]),
            Err(CryptoError::Truncated)
        );
    }

    fn open_each(key: &DataKey, aad: &Aad, ct: &[u8], len: u64) -> Result<Vec<u8>, CryptoError> {
        let layout = Layout::new(len);
        let opener = ChunkOpener::new(key, aad, &ct[..HEADER_LEN], layout)?;
        let mut plain = Vec::new();
        // Back to front: random access needs no earlier chunk.
        for i in (0..layout.chunks()).rev() {
            let start = usize::try_from(layout.ciphertext_start(i)).unwrap();
            let end = (start + layout.ciphertext_len_of(i)).min(ct.len());
            let mut chunk = ct[start..end].to_vec();
            let n = opener.open(i, &mut chunk)?;
            chunk.truncate(n);
            chunk.extend_from_slice(&plain);
            plain = chunk;
        }
        Ok(plain)
    }

    #[test]
    fn any_chunk_opens_on_its_own() {
        let key = DataKey::generate();
        let aad = Aad::new("file");
        for len in [
            0,
            1,
            CHUNK_LEN - 1,
            CHUNK_LEN,
            CHUNK_LEN + 1,
            3 * CHUNK_LEN + 7,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let ct = encrypt_all(&key, &aad, &plain).unwrap();
            assert_eq!(
                open_each(&key, &aad, &ct, len as u64).unwrap(),
                plain,
                "len {len}"
            );
        }
    }

    #[test]
    fn a_wrong_length_or_chunk_fails_to_open() {
        let key = DataKey::generate();
        let aad = Aad::new("file");
        let len = 2 * CHUNK_LEN + 10;
        let ct = encrypt_all(&key, &aad, &vec![9u8; len]).unwrap();
        // Claiming fewer chunks makes an inner chunk read as the last: its tag fails.
        assert!(open_each(&key, &aad, &ct, (2 * CHUNK_LEN) as u64).is_err());
        // Claiming a longer last chunk reads past the stream's end.
        assert!(open_each(&key, &aad, &ct, len as u64 + 1).is_err());
        // A chunk opened under another index fails.
        let layout = Layout::new(len as u64);
        let opener = ChunkOpener::new(&key, &aad, &ct[..HEADER_LEN], layout).unwrap();
        let start = usize::try_from(layout.ciphertext_start(0)).unwrap();
        let mut first = ct[start..start + layout.ciphertext_len_of(0)].to_vec();
        assert_eq!(opener.open(1, &mut first), Err(CryptoError::Decrypt));
        // Another file's key fails.
        let other =
            ChunkOpener::new(&DataKey::generate(), &aad, &ct[..HEADER_LEN], layout).unwrap();
        let mut first = ct[start..start + layout.ciphertext_len_of(0)].to_vec();
        assert_eq!(other.open(0, &mut first), Err(CryptoError::Decrypt));
    }

    #[test]
    fn a_chunk_opens_into_another_buffer_as_in_place_and_only_when_genuine() {
        let key = DataKey::generate();
        let aad = Aad::new("file");
        let len = CHUNK_LEN + 100;
        let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let ct = encrypt_all(&key, &aad, &plain).unwrap();
        let layout = Layout::new(len as u64);
        let opener = ChunkOpener::new(&key, &aad, &ct[..HEADER_LEN], layout).unwrap();
        for i in 0..layout.chunks() {
            let start = usize::try_from(layout.ciphertext_start(i)).unwrap();
            let sealed = &ct[start..start + layout.ciphertext_len_of(i)];
            let mut out = vec![0u8; layout.plaintext_len_of(i)];
            opener.open_into(i, sealed, &mut out).unwrap();
            let from = usize::try_from(layout.plaintext_start(i)).unwrap();
            assert_eq!(out, plain[from..from + out.len()]);
        }
        // A flipped bit, a wrong index or a wrong output length: refused, output untouched.
        let start = usize::try_from(layout.ciphertext_start(0)).unwrap();
        let mut sealed = ct[start..start + layout.ciphertext_len_of(0)].to_vec();
        let mut out = vec![7u8; CHUNK_LEN];
        assert_eq!(
            opener.open_into(1, &sealed, &mut out),
            Err(CryptoError::Truncated)
        );
        assert_eq!(
            opener.open_into(0, &sealed, &mut out[..CHUNK_LEN - 1]),
            Err(CryptoError::Truncated)
        );
        sealed[5] ^= 1;
        assert_eq!(
            opener.open_into(0, &sealed, &mut out),
            Err(CryptoError::Decrypt)
        );
        assert!(
            out.iter().all(|b| *b == 7),
            "nothing released before the tag verifies"
        );
    }

    #[test]
    fn trailing_chunk_after_last_is_detected() {
        let key = DataKey::generate();
        let aad = Aad::new("file");
        let mut ct = encrypt_all(&key, &aad, b"short").unwrap();
        let tail = ct[HEADER_LEN..].to_vec();
        ct.extend_from_slice(&tail);
        assert!(decrypt_all(&key, &aad, &ct).is_err());
    }
}
