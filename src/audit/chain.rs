//! The chain: how an event is encoded and hashed, how a checkpoint is signed, and how the
//! whole trail is verified (SPEC G3).
//!
//! `hash = SHA-256("custodia-audit/1\0" ‖ prev_hash ‖ JCS(event))`, where JCS(event) is the
//! RFC 8785 canonical JSON of every stored column except the two hashes, with the sequence
//! number included — so changing, dropping, inserting or reordering a row breaks the chain
//! at that row. The first event's `prev_hash` is 32 zero bytes. A checkpoint signs
//! `JCS({seq, head_hash, at, key_id})` under the `audit-checkpoint` context.

use custodia_crypto::digest;
use custodia_crypto::sign::{CONTEXT_AUDIT_CHECKPOINT, SigningKey, VerifyingKey};

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
    let body = canonical(e);
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

/// Signs the head at `seq`.
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
    /// `checkpoint-forged`.
    pub kind: &'static str,
    /// In words.
    pub detail: String,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sequence {}: {} ({})", self.seq, self.kind, self.detail)
    }
}

/// Walks events in order, one at a time, keeping only the running head.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    head: Vec<u8>,
    checkpoints: std::collections::BTreeMap<i64, CheckpointRow>,
    /// Events checked so far.
    pub checked: u64,
}

impl Verifier {
    /// Starts from genesis, checking against `checkpoints` (whose signatures must hold under
    /// one of `keys`).
    pub fn new(
        checkpoints: Vec<CheckpointRow>,
        keys: &[(String, VerifyingKey)],
    ) -> Result<Self, Fault> {
        for c in &checkpoints {
            let key = keys.iter().find(|(id, _)| *id == c.key_id).map(|(_, k)| k);
            if !key.is_some_and(|k| checkpoint_signature_holds(k, c)) {
                return Err(Fault {
                    seq: c.seq,
                    kind: "checkpoint-forged",
                    detail: format!(
                        "the checkpoint at {} is not signed by a published audit key",
                        c.seq
                    ),
                });
            }
        }
        Ok(Self {
            expected_seq: 1,
            head: GENESIS.to_vec(),
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            checked: 0,
        })
    }

    /// Checks the next event.
    pub fn push(&mut self, e: &AuditRow) -> Result<(), Fault> {
        if e.seq > self.expected_seq {
            return Err(Fault {
                seq: self.expected_seq,
                kind: "missing",
                detail: format!("events {} to {} are missing", self.expected_seq, e.seq - 1),
            });
        }
        if e.prev_hash != self.head {
            return Err(Fault {
                seq: e.seq,
                kind: "inserted-or-reordered",
                detail: "the event does not follow the one before it".into(),
            });
        }
        let hash = event_hash(&self.head, e);
        if e.hash != hash {
            return Err(Fault {
                seq: e.seq,
                kind: "modified",
                detail: "the event's contents do not match its hash".into(),
            });
        }
        if let Some(c) = self.checkpoints.get(&e.seq)
            && c.head_hash != hash
        {
            return Err(Fault {
                seq: e.seq,
                kind: "checkpoint-mismatch",
                detail: format!("the chain differs from the signed checkpoint at {}", c.seq),
            });
        }
        self.head = hash.to_vec();
        self.expected_seq = e.seq + 1;
        self.checked += 1;
        Ok(())
    }

    /// Ends the walk: the chain must reach every checkpoint and the recorded head.
    pub fn finish(self, head_seq: i64, head_hash: &[u8]) -> Result<Summary, Fault> {
        let last = self.expected_seq - 1;
        if let Some((&cseq, _)) = self.checkpoints.range(last + 1..).next() {
            return Err(Fault {
                seq: last + 1,
                kind: "truncated",
                detail: format!(
                    "the chain ends at {last} but checkpoint {cseq} was signed after it"
                ),
            });
        }
        if head_seq > last {
            return Err(Fault {
                seq: last + 1,
                kind: "truncated",
                detail: format!("the chain ends at {last} but its head is at {head_seq}"),
            });
        }
        if head_seq < last || head_hash != self.head.as_slice() {
            return Err(Fault {
                seq: head_seq + 1,
                kind: "inserted-or-reordered",
                detail: format!("events after the recorded head ({head_seq}) were added"),
            });
        }
        let last_checkpoint = self.checkpoints.keys().next_back().copied();
        Ok(Summary {
            events: self.checked,
            head_seq: last,
            head_hash: digest::hex(&self.head),
            last_checkpoint,
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
    /// The last signed checkpoint's sequence number.
    pub last_checkpoint: Option<i64>,
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
        let mut v = Verifier::new(Vec::new(), &[])?;
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
