//! The audit trail as a transparency log: an RFC 9162 Merkle tree over the events'
//! canonical bytes (leaf `SHA-256(0x00 ‖ bytes)`, node `SHA-256(0x01 ‖ left ‖ right)`), and
//! C2SP checkpoints (`tlog-checkpoint`) as signed notes (`signed-note`, Ed25519).
//!
//! The tree and its proofs come from `tlog_tiles` (the Rust port of Go's `tlog`, as used by
//! Certificate Transparency logs), the notes from `signed_note`; this module only adapts
//! them. `tlog_tiles` numbers every complete subtree with one *stored-hash index* and asks a
//! synchronous reader for the hashes it needs. The store is asynchronous, so each operation
//! here comes in two halves: `*_needs` names the stored hashes an operation will read
//! (they depend only on the sizes, never on the hashes), the caller fetches them, and the
//! operation runs over a [`Known`] map of them.
//!
//! Checkpoint notes are signed raw, as the signed-note format requires; the note text
//! always starts with the log's origin line, which never begins with the
//! `custodia-sig/1\0` frame of the service's other signatures, so no signature made for one
//! verifies for the other.

use std::cell::RefCell;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use signed_note::{Note, Signature, Signer, Verifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash, HashReader};

use crate::sign::{SigningKey, VerifyingKey};

/// A tree hash: a leaf, a node or a root.
pub type TreeHash = [u8; 32];

/// Stored hashes by their index, as fetched for one operation.
pub type Known = HashMap<u64, TreeHash>;

/// Why a tree operation or a checkpoint failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogError {
    /// A stored hash the operation needed was not given.
    #[error("stored hash {0} is missing")]
    Missing(u64),
    /// Sizes or indexes that make no tree (an index beyond the size, say).
    #[error("no such tree position")]
    Range,
    /// A checkpoint note that does not parse.
    #[error("malformed checkpoint")]
    Malformed,
    /// A checkpoint of another log.
    #[error("the checkpoint is for another log ({0})")]
    Origin(String),
    /// A checkpoint signed by no trusted key (or with a signature that does not hold).
    #[error("the checkpoint is not signed by a trusted key")]
    Untrusted,
}

/// The hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> TreeHash {
    tlog_tiles::record_hash(data).0
}

/// The hash of an inner node.
pub fn node_hash(left: &TreeHash, right: &TreeHash) -> TreeHash {
    tlog_tiles::node_hash(Hash(*left), Hash(*right)).0
}

/// The root of the empty tree.
pub const EMPTY_ROOT: TreeHash = tlog_tiles::EMPTY_HASH.0;

/// The stored-hash index of the leaf numbered `n` (zero-based).
pub fn leaf_index(n: u64) -> u64 {
    tlog_tiles::stored_hash_index(0, n)
}

/// How many stored hashes a tree of `n` leaves has.
pub fn stored_count(n: u64) -> u64 {
    tlog_tiles::stored_hash_count(n)
}

/// Records which indexes an operation reads, answering zeros.
struct Recorder(RefCell<Vec<u64>>);

impl HashReader for Recorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![Hash::default(); indexes.len()])
    }
}

fn needs(op: impl FnOnce(&Recorder) -> Result<(), tlog_tiles::Error>) -> Vec<u64> {
    let recorder = Recorder(RefCell::new(Vec::new()));
    // The recorder never fails; an operation that rejects its sizes needs nothing.
    let _ = op(&recorder);
    let mut indexes = recorder.0.into_inner();
    indexes.sort_unstable();
    indexes.dedup();
    indexes
}

/// Answers from the fetched hashes.
struct Reader<'a> {
    known: &'a Known,
    missing: RefCell<Option<u64>>,
}

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut out = Vec::with_capacity(indexes.len());
        for i in indexes {
            match self.known.get(i) {
                Some(h) => out.push(Hash(*h)),
                None => {
                    *self.missing.borrow_mut() = Some(*i);
                    return Err(tlog_tiles::Error::InvalidProof);
                }
            }
        }
        Ok(out)
    }
}

fn run<T>(
    known: &Known,
    op: impl FnOnce(&Reader<'_>) -> Result<T, tlog_tiles::Error>,
) -> Result<T, TlogError> {
    let reader = Reader {
        known,
        missing: RefCell::new(None),
    };
    op(&reader).map_err(|_| match reader.missing.into_inner() {
        Some(i) => TlogError::Missing(i),
        None => TlogError::Range,
    })
}

/// The stored hashes that appending leaf `n` to a tree of `n` leaves reads.
pub fn append_needs(n: u64) -> Vec<u64> {
    needs(|r| tlog_tiles::stored_hashes_for_record_hash(n, Hash::default(), r).map(|_| ()))
}

/// Appends leaf `n` (a tree of `n` leaves becomes `n + 1`): the new stored hashes, by
/// index. Add them to `known` to append the next leaf.
pub fn append(n: u64, leaf: TreeHash, known: &Known) -> Result<Vec<(u64, TreeHash)>, TlogError> {
    let hashes = run(known, |r| {
        tlog_tiles::stored_hashes_for_record_hash(n, Hash(leaf), r)
    })?;
    let first = tlog_tiles::stored_hash_index(0, n);
    Ok((first..).zip(hashes.into_iter().map(|h| h.0)).collect())
}

/// The stored hashes the root of a tree of `n` leaves is made of.
pub fn root_needs(n: u64) -> Vec<u64> {
    needs(|r| tlog_tiles::tree_hash(n, r).map(|_| ()))
}

/// The root of a tree of `n` leaves.
pub fn root(n: u64, known: &Known) -> Result<TreeHash, TlogError> {
    run(known, |r| tlog_tiles::tree_hash(n, r)).map(|h| h.0)
}

/// The stored hashes an inclusion proof of leaf `n` in a tree of `t` leaves reads.
pub fn inclusion_needs(t: u64, n: u64) -> Vec<u64> {
    if n >= t {
        return Vec::new();
    }
    needs(|r| tlog_tiles::prove_record(t, n, r).map(|_| ()))
}

/// The proof that leaf `n` is in the tree of `t` leaves (RFC 9162 §2.1.3).
pub fn prove_inclusion(t: u64, n: u64, known: &Known) -> Result<Vec<TreeHash>, TlogError> {
    if n >= t {
        return Err(TlogError::Range);
    }
    run(known, |r| tlog_tiles::prove_record(t, n, r)).map(|p| p.into_iter().map(|h| h.0).collect())
}

/// Whether `proof` shows leaf `n` with hash `leaf` in the tree of `t` leaves whose root is
/// `root`.
pub fn check_inclusion(
    proof: &[TreeHash],
    t: u64,
    root: &TreeHash,
    n: u64,
    leaf: &TreeHash,
) -> bool {
    let proof: Vec<Hash> = proof.iter().map(|h| Hash(*h)).collect();
    tlog_tiles::check_record(&proof, t, Hash(*root), n, Hash(*leaf)).is_ok()
}

/// The stored hashes a consistency proof from `n` to `t` leaves reads.
pub fn consistency_needs(t: u64, n: u64) -> Vec<u64> {
    if n > t {
        return Vec::new();
    }
    needs(|r| tlog_tiles::prove_tree(t, n, r).map(|_| ()))
}

/// The proof that the tree of `t` leaves extends the tree of its first `n` (RFC 9162
/// §2.1.4).
pub fn prove_consistency(t: u64, n: u64, known: &Known) -> Result<Vec<TreeHash>, TlogError> {
    if n > t {
        return Err(TlogError::Range);
    }
    run(known, |r| tlog_tiles::prove_tree(t, n, r)).map(|p| p.into_iter().map(|h| h.0).collect())
}

/// Whether `proof` shows the tree of `t` leaves (root `root_t`) extending the tree of `n`
/// leaves (root `root_n`).
pub fn check_consistency(
    proof: &[TreeHash],
    t: u64,
    root_t: &TreeHash,
    n: u64,
    root_n: &TreeHash,
) -> bool {
    let proof: Vec<Hash> = proof.iter().map(|h| Hash(*h)).collect();
    tlog_tiles::check_tree(&proof, t, Hash(*root_t), n, Hash(*root_n)).is_ok()
}

/// The right edge of a tree being built leaf by leaf in memory: the roots of its complete
/// subtrees, largest first. Computes the root of every prefix without storing the tree
/// (how a verifier walks a million events in constant memory).
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<TreeHash>,
}

impl Frontier {
    /// Adds the next leaf.
    pub fn push(&mut self, leaf: TreeHash) {
        let mut hash = leaf;
        let mut size = self.size;
        // Each trailing one bit of the old size is a complete subtree to merge with.
        while size & 1 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored hashes the right edge of a tree of `size` leaves is made of: one complete
    /// subtree per set bit of `size`, largest first.
    pub fn needs(size: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                out.push(tlog_tiles::stored_hash_index(level, start >> level));
                start += width;
            }
        }
        out
    }

    /// The right edge of a tree of `size` leaves, from its stored hashes (see
    /// [`Frontier::needs`]): to go on from a verified size without walking the leaves
    /// before it.
    pub fn load(size: u64, known: &Known) -> Result<Self, TlogError> {
        let nodes = Self::needs(size)
            .into_iter()
            .map(|i| known.get(&i).copied().ok_or(TlogError::Missing(i)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { size, nodes })
    }

    /// The root of the tree so far.
    pub fn root(&self) -> TreeHash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return EMPTY_ROOT;
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// A verified checkpoint: the log's size and root at the time its signer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// Leaves.
    pub size: u64,
    /// Root hash.
    pub root: TreeHash,
    /// Extension lines (Custodia writes `time <ms since the epoch>`).
    pub extension: String,
    /// Names of the keys whose signatures held (the log's first, then cosigners).
    pub signers: Vec<String>,
}

impl TreeHead {
    /// The time the extension records, if any.
    pub fn time_ms(&self) -> Option<i64> {
        self.extension
            .lines()
            .find_map(|l| l.strip_prefix("time "))
            .and_then(|t| t.parse().ok())
    }
}

/// A key as a signed-note signer or verifier: its name and its C2SP key id
/// (`SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`, first four bytes).
struct NoteKey<'a> {
    name: &'a str,
    id: u32,
    signing: Option<&'a SigningKey>,
    verifying: VerifyingKey,
}

impl<'a> NoteKey<'a> {
    fn new(name: &'a str, verifying: VerifyingKey, signing: Option<&'a SigningKey>) -> Self {
        let mut encoded = vec![0x01];
        encoded.extend_from_slice(&verifying.to_bytes());
        Self {
            name,
            id: signed_note::key_id(name, &encoded),
            signing,
            verifying,
        }
    }
}

impl Signer for NoteKey<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        self.signing
            .map(|k| k.sign_raw(msg).to_vec())
            .ok_or_else(signature::Error::new)
    }
}

impl Verifier for NoteKey<'_> {
    fn name(&self) -> &str {
        self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verifying.verify_raw(msg, sig).is_ok()
    }
}

/// The C2SP verifier key string of a public key (`name+id+base64(0x01 ‖ key)`), what an
/// operator pins and a citizen compares.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    let note_key = NoteKey::new(name, key.clone(), None);
    let mut encoded = vec![0x01];
    encoded.extend_from_slice(&key.to_bytes());
    format!("{name}+{:08x}+{}", note_key.id, STANDARD.encode(encoded))
}

/// Signs a checkpoint of the log `origin` (also the key's name) at `size` with `root`.
pub fn sign_checkpoint(
    key: &SigningKey,
    origin: &str,
    size: u64,
    root: &TreeHash,
    time_ms: i64,
) -> Result<String, TlogError> {
    let extension = format!("time {time_ms}\n");
    let checkpoint =
        Checkpoint::new(origin, size, Hash(*root), &extension).map_err(|_| TlogError::Malformed)?;
    let mut note = Note::new(&checkpoint.to_bytes(), &[]).map_err(|_| TlogError::Malformed)?;
    let signer = NoteKey::new(origin, key.verifying_key(), Some(key));
    note.add_sigs(&[&signer])
        .map_err(|_| TlogError::Malformed)?;
    String::from_utf8(note.to_bytes()).map_err(|_| TlogError::Malformed)
}

/// Opens a checkpoint note of the log `origin`: it must carry a valid signature by one of
/// `log_keys` (under the name `origin`). Valid `cosignature/v1` signatures by `cosigners`
/// (witness name, key; see [`crate::witness`]) are listed in [`TreeHead::signers`] after the origin; signatures by keys nobody listed are
/// ignored, and a listed key whose signature does not hold fails the note.
pub fn open_checkpoint(
    note: &str,
    origin: &str,
    log_keys: &[VerifyingKey],
    cosigners: &[(String, VerifyingKey)],
) -> Result<TreeHead, TlogError> {
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|_| TlogError::Malformed)?;
    let checkpoint = Checkpoint::from_bytes(parsed.text()).map_err(|_| TlogError::Malformed)?;
    if checkpoint.origin() != origin {
        return Err(TlogError::Origin(checkpoint.origin().to_owned()));
    }
    let mut verifiers: Vec<Box<dyn Verifier>> = Vec::new();
    for key in log_keys {
        verifiers.push(Box::new(OwnedNoteKey::new(origin, key.clone())));
    }
    for (name, key) in cosigners {
        verifiers.push(Box::new(crate::witness::CosignatureKey::new(
            name,
            key.clone(),
        )));
    }
    let (verified, _) = parsed
        .verify(&VerifierList::new(verifiers))
        .map_err(|_| TlogError::Untrusted)?;
    if !verified.iter().any(|s: &Signature| s.name() == origin) {
        return Err(TlogError::Untrusted);
    }
    let mut signers = vec![origin.to_owned()];
    signers.extend(
        verified
            .iter()
            .map(|s| s.name().to_owned())
            .filter(|n| n != origin),
    );
    Ok(TreeHead {
        size: checkpoint.size(),
        root: checkpoint.hash().0,
        extension: checkpoint.extension().to_owned(),
        signers,
    })
}

/// A [`NoteKey`] that owns its name (the verifier list keeps boxed verifiers).
struct OwnedNoteKey {
    name: String,
    id: u32,
    verifying: VerifyingKey,
}

impl OwnedNoteKey {
    fn new(name: &str, verifying: VerifyingKey) -> Self {
        let id = NoteKey::new(name, verifying.clone(), None).id;
        Self {
            name: name.to_owned(),
            id,
            verifying,
        }
    }
}

impl Verifier for OwnedNoteKey {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verifying.verify_raw(msg, sig).is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Builds a tree of `n` leaves the way the store does, returning every stored hash.
    fn build(n: u64) -> (Known, Vec<TreeHash>) {
        let mut known = Known::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let leaf = leaf_hash(format!("event {i}").as_bytes());
            leaves.push(leaf);
            for need in append_needs(i) {
                assert!(known.contains_key(&need), "append {i} needs {need}");
            }
            for (index, hash) in append(i, leaf, &known).unwrap() {
                known.insert(index, hash);
            }
        }
        assert_eq!(known.len() as u64, stored_count(n));
        (known, leaves)
    }

    #[test]
    fn hashing_follows_rfc_9162() {
        // Leaf: SHA-256(0x00 ‖ data); node: SHA-256(0x01 ‖ left ‖ right).
        let leaf = leaf_hash(b"");
        assert_eq!(
            crate::digest::hex(&leaf),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let mut input = vec![0x01];
        input.extend_from_slice(&leaf);
        input.extend_from_slice(&leaf);
        assert_eq!(node_hash(&leaf, &leaf), crate::digest::sha256(&input));
        assert_eq!(
            crate::digest::hex(&EMPTY_ROOT),
            crate::digest::hex(&crate::digest::sha256(b""))
        );
    }

    #[test]
    fn roots_proofs_and_the_frontier_agree() {
        let (known, leaves) = build(37);
        let mut frontier = Frontier::default();
        for (i, leaf) in leaves.iter().enumerate() {
            frontier.push(*leaf);
            let size = i as u64 + 1;
            let root_n = root(size, &known).unwrap();
            assert_eq!(frontier.root(), root_n, "size {size}");
            let loaded = Frontier::load(size, &known).unwrap();
            assert_eq!(loaded.root(), root_n, "loaded at size {size}");
            let mut next = loaded.clone();
            next.push(leaf_hash(b"next"));
            let mut walked = frontier.clone();
            walked.push(leaf_hash(b"next"));
            assert_eq!(next.root(), walked.root());
            for need in root_needs(size) {
                assert!(known.contains_key(&need));
            }
        }
        let t = 37;
        let root_t = root(t, &known).unwrap();
        for n in 0..t {
            let proof = prove_inclusion(t, n, &known).unwrap();
            assert!(check_inclusion(&proof, t, &root_t, n, &leaves[n as usize]));
            let other = leaf_hash(b"forged");
            assert!(!check_inclusion(&proof, t, &root_t, n, &other));
        }
        for n in 1..=t {
            let root_n = root(n, &known).unwrap();
            let proof = prove_consistency(t, n, &known).unwrap();
            assert!(check_consistency(&proof, t, &root_t, n, &root_n));
            let wrong = leaf_hash(b"x");
            assert!(!check_consistency(&proof, t, &root_t, n, &wrong));
        }
        assert_eq!(prove_inclusion(5, 5, &known), Err(TlogError::Range));
        assert!(matches!(root(t, &Known::new()), Err(TlogError::Missing(_))));
    }

    #[test]
    fn checkpoints_open_only_under_trusted_keys() {
        let log = SigningKey::generate();
        let stranger = SigningKey::generate();
        let root = leaf_hash(b"root");
        let note =
            sign_checkpoint(&log, "gov.example/audit", 42, &root, 1_800_000_000_000).unwrap();
        assert!(note.starts_with("gov.example/audit\n42\n"));
        let head =
            open_checkpoint(&note, "gov.example/audit", &[log.verifying_key()], &[]).unwrap();
        assert_eq!((head.size, head.root), (42, root));
        assert_eq!(head.time_ms(), Some(1_800_000_000_000));
        assert_eq!(
            open_checkpoint(&note, "gov.example/audit", &[stranger.verifying_key()], &[]),
            Err(TlogError::Untrusted)
        );
        assert_eq!(
            open_checkpoint(&note, "other/audit", &[log.verifying_key()], &[]),
            Err(TlogError::Origin("gov.example/audit".into()))
        );
        // A signature by a stranger under the log's name does not count.
        let forged = sign_checkpoint(&stranger, "gov.example/audit", 42, &root, 1).unwrap();
        assert_eq!(
            open_checkpoint(&forged, "gov.example/audit", &[log.verifying_key()], &[]),
            Err(TlogError::Untrusted)
        );
        // A changed size no longer verifies.
        let tampered = note.replacen("\n42\n", "\n41\n", 1);
        assert!(
            open_checkpoint(&tampered, "gov.example/audit", &[log.verifying_key()], &[]).is_err()
        );
        assert!(
            verifier_key("gov.example/audit", &log.verifying_key())
                .starts_with("gov.example/audit+")
        );
    }
}
