//! Witnesses: cosignatures on checkpoints (C2SP `tlog-cosignature`, `cosignature/v1`) and
//! the body of the witness protocol's `add-checkpoint` request (C2SP `tlog-witness`).
//!
//! A witness cosigns a checkpoint only after checking that it extends the last one it
//! cosigned for that log, so a log that shows two histories (a fork) or goes back (a
//! rollback) cannot gather cosignatures for both. A cosignature signs
//! `"cosignature/v1\ntime <seconds>\n" ‖ checkpoint text` with Ed25519; its note signature
//! is `key id(4) ‖ time(8, big-endian) ‖ signature(64)`, and its key id hashes the name
//! with the algorithm byte `0x04` (plain note signatures use `0x01`), so a cosignature can
//! never pass for the log's own signature or the other way round.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use signed_note::Note;

use crate::sign::{SigningKey, VerifyingKey};
use crate::tlog::{TlogError, TreeHash};

/// The signed-note algorithm byte of a plain Ed25519 signature (a log's own).
pub const ALG_ED25519: u8 = 0x01;
/// The signed-note algorithm byte of a timestamped Ed25519 cosignature (a witness's).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// The C2SP key id of `key` named `name` under algorithm `alg`.
pub fn key_id(name: &str, alg: u8, key: &VerifyingKey) -> u32 {
    let mut encoded = vec![alg];
    encoded.extend_from_slice(&key.to_bytes());
    signed_note::key_id(name, &encoded)
}

/// A parsed verifier key (`name+id+base64(alg ‖ key)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedKey {
    /// The key's name (a log's origin, or a witness's name).
    pub name: String,
    /// The algorithm byte: [`ALG_ED25519`] or [`ALG_COSIGNATURE_V1`].
    pub alg: u8,
    /// The Ed25519 public key.
    pub key: VerifyingKey,
}

impl NamedKey {
    /// The verifier key string, as operators pin it.
    pub fn encode(&self) -> String {
        let mut encoded = vec![self.alg];
        encoded.extend_from_slice(&self.key.to_bytes());
        format!(
            "{}+{:08x}+{}",
            self.name,
            key_id(&self.name, self.alg, &self.key),
            STANDARD.encode(encoded)
        )
    }

    /// Parses `name+id+base64(alg ‖ key)`, checking the id against the name and key.
    pub fn parse(text: &str) -> Result<Self, TlogError> {
        // Names hold no '+'; the base64 may.
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TlogError::Malformed);
        };
        let bytes = STANDARD.decode(encoded).map_err(|_| TlogError::Malformed)?;
        let (&alg, raw) = bytes.split_first().ok_or(TlogError::Malformed)?;
        if alg != ALG_ED25519 && alg != ALG_COSIGNATURE_V1 {
            return Err(TlogError::Malformed);
        }
        let key = VerifyingKey::from_bytes(raw).map_err(|_| TlogError::Malformed)?;
        let id = u32::from_str_radix(id, 16).map_err(|_| TlogError::Malformed)?;
        if name.is_empty() || name.contains(char::is_whitespace) || id != key_id(name, alg, &key) {
            return Err(TlogError::Malformed);
        }
        Ok(Self {
            name: name.to_owned(),
            alg,
            key,
        })
    }
}

/// The message a `cosignature/v1` signs over the note text `text`.
fn cosigned_message(time_s: u64, text: &[u8]) -> Vec<u8> {
    let mut message = format!("cosignature/v1\ntime {time_s}\n").into_bytes();
    message.extend_from_slice(text);
    message
}

/// A witness's cosignature on a signed checkpoint note, as the one signature line
/// (`— name base64(id ‖ time ‖ signature)\n`) the witness answers with.
pub fn cosign(note: &str, name: &str, key: &SigningKey, time_s: u64) -> Result<String, TlogError> {
    let parsed = Note::from_bytes(note.as_bytes()).map_err(|_| TlogError::Malformed)?;
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('+') {
        return Err(TlogError::Malformed);
    }
    let signature = key.sign_raw(&cosigned_message(time_s, parsed.text()));
    let mut raw = key_id(name, ALG_COSIGNATURE_V1, &key.verifying_key())
        .to_be_bytes()
        .to_vec();
    raw.extend_from_slice(&time_s.to_be_bytes());
    raw.extend_from_slice(&signature);
    Ok(format!("— {name} {}\n", STANDARD.encode(raw)))
}

/// A note verifier for one witness's `cosignature/v1` signatures.
pub(crate) struct CosignatureKey {
    pub(crate) name: String,
    pub(crate) id: u32,
    pub(crate) key: VerifyingKey,
}

impl CosignatureKey {
    pub(crate) fn new(name: &str, key: VerifyingKey) -> Self {
        Self {
            id: key_id(name, ALG_COSIGNATURE_V1, &key),
            name: name.to_owned(),
            key,
        }
    }
}

impl signed_note::Verifier for CosignatureKey {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some((time, signature)) = sig.split_first_chunk::<8>() else {
            return false;
        };
        let time_s = u64::from_be_bytes(*time);
        self.key
            .verify_raw(&cosigned_message(time_s, msg), signature)
            .is_ok()
    }
}

/// Adds signature lines (cosignatures) to a signed note.
pub fn with_signatures(note: &str, lines: &[String]) -> String {
    let mut out = String::with_capacity(note.len() + lines.iter().map(String::len).sum::<usize>());
    out.push_str(note);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    for line in lines {
        out.push_str(line.trim_end_matches('\n'));
        out.push('\n');
    }
    out
}

/// The body of a `POST /add-checkpoint`: the size of the last checkpoint the witness
/// cosigned for this log (0 for none), a consistency proof from it, and the new signed
/// checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the log believes the witness holds.
    pub old: u64,
    /// Consistency proof from `old` to the checkpoint's size (empty when `old` is 0 or
    /// equal to it).
    pub proof: Vec<TreeHash>,
    /// The checkpoint, signed by the log.
    pub note: String,
}

impl AddCheckpoint {
    /// The request body.
    pub fn to_body(&self) -> String {
        let mut body = format!("old {}\n", self.old);
        for hash in &self.proof {
            body.push_str(&STANDARD.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.note);
        body
    }

    /// Parses a request body (at most 63 proof lines, as the protocol allows).
    pub fn parse(body: &str) -> Result<Self, TlogError> {
        let (head, note) = body.split_once("\n\n").ok_or(TlogError::Malformed)?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|n| n == &"0" || !n.starts_with('0'))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or(TlogError::Malformed)?;
        let proof = lines
            .map(|l| {
                STANDARD
                    .decode(l)
                    .ok()
                    .and_then(|b| TreeHash::try_from(b.as_slice()).ok())
                    .ok_or(TlogError::Malformed)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > 63 || note.is_empty() {
            return Err(TlogError::Malformed);
        }
        Ok(Self {
            old,
            proof,
            note: note.to_owned(),
        })
    }
}

/// Whether `proof` shows the tree of `size` leaves with `root` extending the tree of
/// `old_size` leaves with `old_root` (any tree extends the empty one, with an empty proof;
/// a tree extends itself only with its own root).
pub fn extends(
    old_size: u64,
    old_root: &TreeHash,
    size: u64,
    root: &TreeHash,
    proof: &[TreeHash],
) -> bool {
    if old_size == 0 {
        return proof.is_empty();
    }
    if old_size == size {
        return proof.is_empty() && old_root == root;
    }
    old_size < size && crate::tlog::check_consistency(proof, size, root, old_size, old_root)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::tlog;

    #[test]
    fn cosignatures_verify_only_under_the_witness_key_and_algorithm() {
        let log = SigningKey::generate();
        let witness = SigningKey::generate();
        let root = tlog::leaf_hash(b"root");
        let note = tlog::sign_checkpoint(&log, "gov.example/audit", 7, &root, 1).unwrap();
        let line = cosign(&note, "w1.example", &witness, 1_800_000_000).unwrap();
        assert!(line.starts_with("— w1.example "));
        let cosigned = with_signatures(&note, &[line]);
        let head = tlog::open_checkpoint(
            &cosigned,
            "gov.example/audit",
            &[log.verifying_key()],
            &[("w1.example".into(), witness.verifying_key())],
        )
        .unwrap();
        assert_eq!(head.signers, ["gov.example/audit", "w1.example"]);
        // The log's key cannot stand in for the witness's, nor the other way round.
        let forged = cosign(&note, "w1.example", &log, 1).unwrap();
        let forged = with_signatures(&note, &[forged]);
        let head = tlog::open_checkpoint(
            &forged,
            "gov.example/audit",
            &[log.verifying_key()],
            &[("w1.example".into(), witness.verifying_key())],
        )
        .unwrap();
        assert_eq!(head.signers, ["gov.example/audit"]);
        // A cosignature moved onto another checkpoint fails.
        let other = tlog::sign_checkpoint(&log, "gov.example/audit", 8, &root, 1).unwrap();
        let moved = cosign(&note, "w1.example", &witness, 5).unwrap();
        assert!(
            tlog::open_checkpoint(
                &with_signatures(&other, &[moved]),
                "gov.example/audit",
                &[log.verifying_key()],
                &[("w1.example".into(), witness.verifying_key())],
            )
            .is_err()
        );
    }

    #[test]
    fn verifier_keys_round_trip_and_requests_parse() {
        let key = SigningKey::generate().verifying_key();
        let named = NamedKey {
            name: "w1.example".into(),
            alg: ALG_COSIGNATURE_V1,
            key,
        };
        assert_eq!(NamedKey::parse(&named.encode()).unwrap(), named);
        let encoded = named.encode();
        let mut parts = encoded.splitn(3, '+');
        let (name, _, key) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
        assert!(NamedKey::parse(&format!("{name}+00000000+{key}")).is_err());
        assert!(NamedKey::parse(&format!("other+00000000+{key}")).is_err());

        let request = AddCheckpoint {
            old: 12,
            proof: vec![[1; 32], [2; 32]],
            note: "o\n13\nAAAA\n\n— o sig\n".into(),
        };
        assert_eq!(AddCheckpoint::parse(&request.to_body()).unwrap(), request);
        assert!(AddCheckpoint::parse("old 012\n\nnote").is_err());
        assert!(AddCheckpoint::parse("old 1\nnot base64!\n\nnote").is_err());
        assert!(AddCheckpoint::parse("new 1\n\nnote").is_err());
    }

    #[test]
    fn extension_needs_a_proof_except_from_empty() {
        let leaves: Vec<_> = (0..5u8).map(|i| tlog::leaf_hash(&[i])).collect();
        let mut small = tlog::Frontier::default();
        let mut big = tlog::Frontier::default();
        for (i, l) in leaves.iter().enumerate() {
            if i < 3 {
                small.push(*l);
            }
            big.push(*l);
        }
        assert!(extends(0, &tlog::EMPTY_ROOT, 5, &big.root(), &[]));
        assert!(extends(3, &small.root(), 3, &small.root(), &[]));
        assert!(!extends(3, &small.root(), 3, &big.root(), &[]));
        assert!(!extends(3, &small.root(), 5, &big.root(), &[]));
        assert!(!extends(5, &big.root(), 3, &small.root(), &[]));
    }
}
