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
use custodia_crypto::tlog::{self, Frontier, TreeHash};

use crate::store::audit::{AuditRow, CheckpointRow};

/// The `prev_hash` of the first event.
pub const GENESIS: [u8; 32] = [0; 32];

const DOMAIN: &[u8] = b"custodia-audit/1\0";

/// The canonical encoding of an event (without its hashes).
pub fn canonical(e: &AuditRow) -> String {
    let value = serde_json::json!({
        "seq": e.seq,
        "at": e.at,
        "actor_kind": e.actor_kind,
        "actor_id": e.actor_id,
        "officer_id": e.officer_id,
        "case_id": e.case_id,
        "citizen": e.citizen_pseudonym,
        "action": e.action,
        "object_ids": e.object_ids,
        "grant_id": e.grant_id.map(|g| g.to_string()),
        "purpose": e.purpose,
        "tier": e.tier,
        "fields": e.fields,
        "outcome": e.outcome,
        "bytes_sent": e.bytes_sent,
        "request_id": e.request_id,
        "detail": e.detail,
    });
    // Canonicalising a JSON value built from strings and integers cannot fail; fall back
    // to serde's own (deterministic for this fixed shape) rendering all the same.
    digest::canonical_json(&value).unwrap_or_else(|_| value.to_string())
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
    let mut input = Vec::with_capacity(DOMAIN.len() + prev.len() + body.len());
    input.extend_from_slice(DOMAIN);
    input.extend_from_slice(prev);
    input.extend_from_slice(body.as_bytes());
    digest::sha256(&input)
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

/// Walks events in order, one at a time, keeping only the running head and the tree's
/// right edge.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    head: Vec<u8>,
    tree: Frontier,
    checkpoints: std::collections::BTreeMap<i64, CheckpointRow>,
    /// Sizes whose roots the caller wants, and the roots once reached.
    watched: std::collections::BTreeMap<u64, Option<TreeHash>>,
    /// Events checked so far.
    pub checked: u64,
}

fn forged(seq: i64, detail: String) -> Fault {
    Fault {
        seq,
        kind: "checkpoint-forged",
        detail,
        evidence: Vec::new(),
    }
}

impl Verifier {
    /// Starts from genesis, checking against `checkpoints`: each must be signed by a key
    /// `trust` pins (its chain signature, and its tree note where it has one), and from the
    /// first checkpoint with a tree on, none may be more than
    /// [`super::CHECKPOINT_EVERY_EVENTS`] events after the one before.
    pub fn new(checkpoints: Vec<CheckpointRow>, trust: &Trust) -> Result<Self, Fault> {
        let mut previous = 0;
        for c in &checkpoints {
            let Some(key) = trust
                .keys
                .iter()
                .find(|(id, _)| *id == c.key_id)
                .map(|(_, k)| k)
            else {
                return Err(Fault {
                    seq: c.seq,
                    kind: "untrusted-key",
                    detail: format!(
                        "the checkpoint at {} names key {}, which is not a pinned audit key",
                        c.seq, c.key_id
                    ),
                    evidence: Vec::new(),
                });
            };
            if !checkpoint_signature_holds(key, c) {
                return Err(forged(
                    c.seq,
                    format!("the checkpoint at {} is not signed by its key", c.seq),
                ));
            }
            if let Some(note) = &c.note {
                let head =
                    tlog::open_checkpoint(note, &trust.origin, std::slice::from_ref(key), &[])
                        .map_err(|e| {
                            forged(c.seq, format!("the checkpoint note at {}: {e}", c.seq))
                        })?;
                let root_matches = c.root_hash.as_deref() == Some(head.root.as_slice());
                if u64::try_from(c.seq).ok() != Some(head.size) || !root_matches {
                    return Err(forged(
                        c.seq,
                        format!("the checkpoint note at {} does not match its row", c.seq),
                    ));
                }
                if c.seq - previous > super::CHECKPOINT_EVERY_EVENTS {
                    return Err(Fault {
                        seq: previous + 1,
                        kind: "checkpoint-missing",
                        detail: format!(
                            "no checkpoint between {} and {}: more than {} events apart",
                            previous,
                            c.seq,
                            super::CHECKPOINT_EVERY_EVENTS
                        ),
                        evidence: Vec::new(),
                    });
                }
            }
            previous = c.seq;
        }
        Ok(Self {
            expected_seq: 1,
            head: GENESIS.to_vec(),
            tree: Frontier::default(),
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            watched: std::collections::BTreeMap::new(),
            checked: 0,
        })
    }

    /// Asks for the tree's root at `size` (see [`Verifier::root_at`]).
    pub fn watch(&mut self, size: u64) {
        self.watched.entry(size).or_insert(None);
    }

    /// The root of the tree over the first `size` events, if `size` was watched and
    /// reached.
    pub fn root_at(&self, size: u64) -> Option<TreeHash> {
        if size == 0 {
            return Some(tlog::EMPTY_ROOT);
        }
        self.watched.get(&size).copied().flatten()
    }

    /// Checks the next event.
    pub fn push(&mut self, e: &AuditRow) -> Result<(), Fault> {
        if e.seq > self.expected_seq {
            return Err(Fault {
                seq: self.expected_seq,
                kind: "missing",
                detail: format!("events {} to {} are missing", self.expected_seq, e.seq - 1),
                evidence: Vec::new(),
            });
        }
        if e.prev_hash != self.head {
            return Err(Fault {
                seq: e.seq,
                kind: "inserted-or-reordered",
                detail: "the event does not follow the one before it".into(),
                evidence: Vec::new(),
            });
        }
        let body = canonical(e);
        let hash = chain_hash(&self.head, &body);
        if e.hash != hash {
            return Err(Fault {
                seq: e.seq,
                kind: "modified",
                detail: "the event's contents do not match its hash".into(),
                evidence: Vec::new(),
            });
        }
        self.tree.push(tlog::leaf_hash(body.as_bytes()));
        if let Some(slot) = self.watched.get_mut(&self.tree.size()) {
            *slot = Some(self.tree.root());
        }
        self.check_time_spacing(e)?;
        if let Some(c) = self.checkpoints.get(&e.seq) {
            let tree_differs = c
                .root_hash
                .as_deref()
                .is_some_and(|root| root != self.tree.root().as_slice());
            if c.head_hash != hash || tree_differs {
                return Err(Fault {
                    seq: e.seq,
                    kind: "checkpoint-mismatch",
                    detail: format!("the trail differs from the signed checkpoint at {}", c.seq),
                    evidence: Vec::new(),
                });
            }
        }
        self.head = hash.to_vec();
        self.expected_seq = e.seq + 1;
        self.checked += 1;
        Ok(())
    }

    /// An event appended a checkpoint interval or more after the last checkpoint is signed
    /// in its own batch (the sequencer checks the time at every commit), so the next
    /// checkpoint must carry that event's time. Applies from the first checkpoint with a
    /// tree on.
    fn check_time_spacing(&self, e: &AuditRow) -> Result<(), Fault> {
        let interval = i64::try_from(super::CHECKPOINT_EVERY.as_millis()).unwrap_or(i64::MAX);
        let Some((_, before)) = self.checkpoints.range(..e.seq).next_back() else {
            return Ok(());
        };
        if before.note.is_none() || e.at - before.at < interval {
            return Ok(());
        }
        let signed_with_it = self
            .checkpoints
            .range(e.seq..)
            .next()
            .is_some_and(|(_, after)| after.at == e.at);
        if signed_with_it {
            return Ok(());
        }
        Err(Fault {
            seq: e.seq,
            kind: "checkpoint-missing",
            detail: format!(
                "the event came {} s after checkpoint {} and no checkpoint was signed with it",
                (e.at - before.at) / 1000,
                before.seq
            ),
            evidence: Vec::new(),
        })
    }

    /// The root of the tree over the events checked so far.
    pub fn root(&self) -> TreeHash {
        self.tree.root()
    }

    /// Ends the walk: the chain must reach every checkpoint and the recorded head, and the
    /// events after the last checkpoint must be fewer than the spacing allows.
    pub fn finish(&self, head_seq: i64, head_hash: &[u8]) -> Result<Summary, Fault> {
        let last = self.expected_seq - 1;
        if let Some((&cseq, _)) = self.checkpoints.range(last + 1..).next() {
            return Err(Fault {
                seq: last + 1,
                kind: "truncated",
                detail: format!(
                    "the chain ends at {last} but checkpoint {cseq} was signed after it"
                ),
                evidence: Vec::new(),
            });
        }
        if head_seq > last {
            return Err(Fault {
                seq: last + 1,
                kind: "truncated",
                detail: format!("the chain ends at {last} but its head is at {head_seq}"),
                evidence: Vec::new(),
            });
        }
        if head_seq < last || head_hash != self.head.as_slice() {
            return Err(Fault {
                seq: head_seq + 1,
                kind: "inserted-or-reordered",
                detail: format!("events after the recorded head ({head_seq}) were added"),
                evidence: Vec::new(),
            });
        }
        let last_checkpoint = self.checkpoints.values().next_back();
        if let Some(c) = last_checkpoint.filter(|c| c.note.is_some())
            && last - c.seq > super::CHECKPOINT_EVERY_EVENTS
        {
            return Err(Fault {
                seq: c.seq + 1,
                kind: "checkpoint-missing",
                detail: format!(
                    "{} events after the last checkpoint ({}): more than {}",
                    last - c.seq,
                    c.seq,
                    super::CHECKPOINT_EVERY_EVENTS
                ),
                evidence: Vec::new(),
            });
        }
        Ok(Summary {
            events: self.checked,
            head_seq: last,
            head_hash: digest::hex(&self.head),
            tree_root: digest::hex(&self.tree.root()),
            last_checkpoint: last_checkpoint.map(|c| c.seq),
            witnessed: None,
        })
    }
}

/// A verified trail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Events checked.
    pub events: u64,
    /// The last sequence number.
    pub head_seq: i64,
    /// The head hash, hex.
    pub head_hash: String,
    /// The Merkle tree's root over every event, hex.
    pub tree_root: String,
    /// The last signed checkpoint's sequence number.
    pub last_checkpoint: Option<i64>,
    /// The newest checkpoint held to the witness quorum, and how many cosigned it.
    pub witnessed: Option<(i64, usize)>,
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn row(seq: i64, prev: &[u8]) -> AuditRow {
        let mut r = AuditRow {
            seq,
            at: 1_700_000_000_000 + seq,
            actor_kind: "agency".into(),
            actor_id: Some("a".into()),
            officer_id: Some("o-1".into()),
            case_id: None,
            citizen_pseudonym: Some("p-1".into()),
            action: "document.read".into(),
            object_ids: "[]".into(),
            grant_id: None,
            purpose: None,
            tier: Some("verify".into()),
            fields: None,
            outcome: "ok".into(),
            bytes_sent: Some(10),
            request_id: None,
            detail: None,
            prev_hash: prev.to_vec(),
            hash: Vec::new(),
        };
        r.hash = event_hash(prev, &r).to_vec();
        r
    }

    fn chain(n: i64) -> Vec<AuditRow> {
        let mut out: Vec<AuditRow> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map_or(GENESIS.to_vec(), |r| r.hash.clone());
            out.push(row(seq, &prev));
        }
        out
    }

    fn verify(rows: &[AuditRow]) -> Result<Summary, Fault> {
        let trust = Trust::new("test/audit".into(), Vec::new());
        let mut v = Verifier::new(Vec::new(), &trust)?;
        for r in rows {
            v.push(r)?;
        }
        let last = rows.last().expect("rows");
        v.finish(last.seq, &last.hash)
    }

    #[test]
    fn an_intact_chain_verifies_and_any_change_names_its_sequence() {
        let rows = chain(5);
        assert_eq!(verify(&rows).expect("intact").events, 5);

        let mut modified = rows.clone();
        modified[2].officer_id = Some("o-2".into());
        let fault = verify(&modified).expect_err("modified");
        assert_eq!((fault.seq, fault.kind), (3, "modified"));

        let mut missing = rows.clone();
        missing.remove(1);
        assert_eq!(verify(&missing).expect_err("missing").seq, 2);

        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        swapped[1].seq = 2;
        swapped[2].seq = 3;
        assert_eq!(verify(&swapped).expect_err("swapped").seq, 2);
    }
}
