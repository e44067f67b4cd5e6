//! The chain: how an event is encoded and hashed, how a checkpoint is signed, and how the
//! whole trail is verified (SPEC G3).
//!
//! `hash = SHA-256("custodia-audit/1\0" ‖ prev_hash ‖ JCS(event))`, where JCS(event) is the
//! RFC 8785 canonical JSON of every stored column except the two hashes, with the sequence
//! number included — so changing, dropping, inserting or reordering a row breaks the chain
//! at that row. The first event's `prev_hash` is 32 zero bytes. A checkpoint signs
//! `JCS({seq, head_hash, at, key_id})` under the `audit-checkpoint` context.
//!
//! The same canonical bytes are the leaves of an RFC 9162 Merkle tree
//! (`custodia_crypto::tlog`): a checkpoint also carries the tree's root at its size in a
//! C2SP signed note, and inclusion and consistency proofs are proofs over that tree.
//! Checkpoints come at most [`super::CHECKPOINT_EVERY_EVENTS`] events apart (exactly: the
//! sequencer signs inside the batch), so a longer stretch without one is itself a fault.

use custodia_crypto::digest;
use custodia_crypto::sign::{CONTEXT_AUDIT_CHECKPOINT, SigningKey, VerifyingKey};
use custodia_crypto::tlog::{self, TreeHash};

use crate::store::audit::{AuditRow, CheckpointRow};

/// The `prev_hash` of the first event.
pub const GENESIS: [u8; 32] = [0; 32];

const DOMAIN: &[u8] = b"custodia-audit/1\0";

/// The canonical encoding of an event (without its hashes): the RFC 8785 (JCS) form of
/// `{action, actor_id, actor_kind, at, bytes_sent, case_id, citizen, detail, fields,
/// grant_id, object_ids, officer_id, outcome, purpose, request_id, seq, tier}` — keys in
/// JCS order, values strings, integers or null. Written directly (the shape is fixed), so
/// encoding costs a few hundred nanoseconds; a test holds it byte for byte to a general
/// JCS implementation.
pub fn canonical(e: &AuditRow) -> String {
    let mut out = String::with_capacity(384);
    let grant = e.grant_id.map(|g| g.to_string());
    out.push('{');
    text(&mut out, "action", Some(&e.action));
    text(&mut out, "actor_id", e.actor_id.as_deref());
    text(&mut out, "actor_kind", Some(&e.actor_kind));
    number(&mut out, "at", Some(e.at));
    number(&mut out, "bytes_sent", e.bytes_sent);
    text(&mut out, "case_id", e.case_id.as_deref());
    text(&mut out, "citizen", e.citizen_pseudonym.as_deref());
    text(&mut out, "detail", e.detail.as_deref());
    text(&mut out, "fields", e.fields.as_deref());
    text(&mut out, "grant_id", grant.as_deref());
    text(&mut out, "object_ids", Some(&e.object_ids));
    text(&mut out, "officer_id", e.officer_id.as_deref());
    text(&mut out, "outcome", Some(&e.outcome));
    text(&mut out, "purpose", e.purpose.as_deref());
    text(&mut out, "request_id", e.request_id.as_deref());
    number(&mut out, "seq", Some(e.seq));
    text(&mut out, "tier", e.tier.as_deref());
    out.push('}');
    out
}

fn key(out: &mut String, name: &str) {
    if !out.ends_with('{') {
        out.push(',');
    }
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

fn number(out: &mut String, name: &str, value: Option<i64>) {
    key(out, name);
    match value {
        Some(n) => out.push_str(&n.to_string()),
        None => out.push_str("null"),
    }
}

/// A JSON string as JCS writes it: `"` and `\` escaped, control characters as `\b \t \n
/// \f \r` or `\u00xx`, everything else as it is.
fn text(out: &mut String, name: &str, value: Option<&str>) {
    key(out, name);
    let Some(value) = value else {
        out.push_str("null");
        return;
    };
    out.push('"');
    let mut plain = 0;
    for (i, b) in value.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so slicing at them stays on character boundaries.
        out.push_str(value.get(plain..i).unwrap_or_default());
        if escape.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(value.get(plain..).unwrap_or_default());
    out.push('"');
}

/// The hash of `e` following `prev`.
pub fn event_hash(prev: &[u8], e: &AuditRow) -> [u8; 32] {
    chain_hash(prev, &canonical(e))
}

/// The Merkle leaf of an event: `SHA-256(0x00 ‖ canonical bytes)`.
pub fn leaf(e: &AuditRow) -> TreeHash {
    tlog::leaf_hash(canonical(e).as_bytes())
}

/// The chain hash over an event's canonical bytes `body`.
pub fn chain_hash(prev: &[u8], body: &str) -> [u8; 32] {
    let mut hash = digest::Sha256Stream::default();
    hash.update(DOMAIN);
    hash.update(prev);
    hash.update(body.as_bytes());
    hash.finish()
}

fn checkpoint_message(seq: i64, head_hash: &[u8], at: i64, key_id: &str) -> String {
    let value = serde_json::json!({
        "seq": seq,
        "head_hash": digest::hex(head_hash),
        "at": at,
        "key_id": key_id,
    });
    digest::canonical_json(&value).unwrap_or_else(|_| value.to_string())
}

/// Signs the head at `seq` (chain head only: what checkpoints were before the tree).
pub fn sign_checkpoint(
    key: &SigningKey,
    key_id: &str,
    seq: i64,
    head_hash: &[u8],
    at: i64,
) -> CheckpointRow {
    let message = checkpoint_message(seq, head_hash, at, key_id);
    CheckpointRow {
        seq,
        head_hash: head_hash.to_vec(),
        at,
        key_id: key_id.to_owned(),
        signature: key
            .sign(CONTEXT_AUDIT_CHECKPOINT, message.as_bytes())
            .to_vec(),
        root_hash: None,
        note: None,
    }
}

/// Who signs checkpoints: the key, its id and the log's origin (the C2SP note's first line
/// and the key's name in it).
#[derive(Debug)]
pub struct LogSigner {
    /// The service signing key.
    pub key: SigningKey,
    /// Its fingerprint.
    pub key_id: String,
    /// The log's origin, e.g. `custodia.gov.example/audit`.
    pub origin: String,
    /// Where this server keeps the newest checkpoint it signed, outside the database (beside
    /// its data), so that after a restart it still refuses a database rolled back or
    /// rewritten behind what it signed. `None` keeps that memory in the process only.
    pub memory: Option<std::path::PathBuf>,
}

impl LogSigner {
    /// The size and root of a checkpoint note this signer made (its key, its origin).
    pub fn open_own(&self, note: &str) -> Option<(i64, TreeHash)> {
        let head =
            tlog::open_checkpoint(note, &self.origin, &[self.key.verifying_key()], &[]).ok()?;
        Some((i64::try_from(head.size).ok()?, head.root))
    }

    /// Signs the head at `seq` events: the chain head as before, and the tree `root` as a
    /// C2SP checkpoint note.
    pub fn sign(&self, seq: i64, head_hash: &[u8], root: &TreeHash, at: i64) -> CheckpointRow {
        let mut row = sign_checkpoint(&self.key, &self.key_id, seq, head_hash, at);
        let size = u64::try_from(seq).unwrap_or(0);
        // The origin is checked at start (`Config::audit_origin`), so a note always forms;
        // a checkpoint without one still carries the chain signature.
        row.note = tlog::sign_checkpoint(&self.key, &self.origin, size, root, at).ok();
        row.root_hash = Some(root.to_vec());
        row
    }
}

/// Whether a checkpoint's signature holds under `key`.
pub fn checkpoint_signature_holds(key: &VerifyingKey, c: &CheckpointRow) -> bool {
    let message = checkpoint_message(c.seq, &c.head_hash, c.at, &c.key_id);
    key.verify(CONTEXT_AUDIT_CHECKPOINT, message.as_bytes(), &c.signature)
        .is_ok()
}

/// What is wrong with the trail, at the first bad sequence number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Fault {
    /// The first sequence number that does not verify.
    pub seq: i64,
    /// `modified`, `missing`, `inserted-or-reordered`, `truncated`, `checkpoint-mismatch`,
    /// `checkpoint-forged`, `untrusted-key`, `checkpoint-missing`, `tree-mismatch`,
    /// `unwitnessed`, `fork`, `rolled-back`.
    pub kind: &'static str,
    /// In words.
    pub detail: String,
    /// Signed heads that prove it, where there are any (a fork: the two checkpoints of one
    /// size; a rollback: the witness's checkpoint beyond the trail's end).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

impl Fault {
    /// A fault at `seq` of `kind`, with the signed heads that prove it (if any).
    pub fn new(seq: i64, kind: &'static str, detail: String, evidence: Vec<String>) -> Self {
        Self {
            seq,
            kind,
            detail,
            evidence,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sequence {}: {} ({})", self.seq, self.kind, self.detail)
    }
}

/// What a verifier trusts, from outside the database: the log's origin, the pinned
/// public keys (key id, key) and the witnesses.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The log's origin.
    pub origin: String,
    /// Keys whose checkpoints count.
    pub keys: Vec<(String, VerifyingKey)>,
    /// The witnesses whose cosignatures count (name, key).
    pub witnesses: Vec<(String, VerifyingKey)>,
    /// Cosignatures the newest checkpoint needs (0: none).
    pub quorum: usize,
    /// What the witnesses answered when asked for the newest checkpoint they cosigned
    /// (witness name, cosigned note), to hold the trail to.
    pub witness_heads: Vec<(String, String)>,
    /// The time of the check (ms since the epoch).
    pub now_ms: i64,
}

impl Trust {
    /// Trusting `keys` for the log `origin`, without witnesses.
    pub fn new(origin: String, keys: Vec<(String, VerifyingKey)>) -> Self {
        Self {
            origin,
            keys,
            witnesses: Vec::new(),
            quorum: 0,
            witness_heads: Vec::new(),
            now_ms: 0,
        }
    }

    /// The log's keys alone.
    pub fn log_keys(&self) -> Vec<VerifyingKey> {
        self.keys.iter().map(|(_, k)| k.clone()).collect()
    }
}

pub use super::verifier::{Summary, Verifier};
