//! Verifying the trail: a walk over the events in order, holding only the running chain
//! head and the tree's right edge, checked against signed checkpoints under pinned keys.

use custodia_crypto::digest;
use custodia_crypto::tlog::{self, Frontier, TreeHash};

use super::chain::{Fault, GENESIS, Trust, canonical, chain_hash, checkpoint_signature_holds};
use crate::store::audit::{AuditRow, CheckpointRow};

/// `"seq":` as JCS writes it: the last key but one, so always followed by `,"tier":`.
const SEQ: (&str, &str) = (",\"seq\":", ",\"tier\":");
/// `"at":`, always followed by `,"bytes_sent":`.
const AT: (&str, &str) = (",\"at\":", ",\"bytes_sent\":");

/// The integer a canonical event body holds under `key` (found between the key and the
/// next one, which JCS order fixes), without parsing the whole body. `"at"` is the fourth
/// key and `"seq"` the last but one, so each is looked for from its end of the body.
/// (A value cannot hold either pattern: its quotes would be escaped.)
fn field(body: &str, (key, next): (&str, &str)) -> Option<i64> {
    use memchr::memmem::{Finder, FinderRev};
    use std::sync::LazyLock;
    // Searchers built once: building one costs about as much as a search of a body.
    static SEQ_KEY: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(SEQ.0));
    static SEQ_NEXT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(SEQ.1));
    static AT_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(AT.0));
    static AT_NEXT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(AT.1));
    let bytes = body.as_bytes();
    let (start, next) = if key == SEQ.0 {
        (SEQ_KEY.rfind(bytes)?, &*SEQ_NEXT)
    } else {
        debug_assert_eq!((key, next), AT);
        (AT_KEY.find(bytes)?, &*AT_NEXT)
    };
    let rest = bytes.get(start + key.len()..)?;
    let end = next.find(rest)?;
    std::str::from_utf8(rest.get(..end)?).ok()?.parse().ok()
}

/// What checking one event needs of its bytes, computed apart from the walk (so that
/// pages can be hashed in parallel with it): the sequence number and time its bytes name,
/// whether its stored hash is the chain hash of its bytes after `after`, and its Merkle
/// leaf.
#[derive(Debug, Clone)]
pub struct Hashed {
    /// The sequence number it is stored under.
    pub seq: i64,
    /// The hash its chain hash was computed after: the walk's head it must follow.
    pub after: [u8; 32],
    /// The sequence number and time its bytes name, if they are an event.
    pub named: Option<(i64, i64)>,
    /// Its stored hash.
    pub hash: [u8; 32],
    /// Whether `hash` is `chain_hash(prev, bytes)`.
    pub follows: bool,
    /// Its Merkle leaf, `SHA-256(0x00 ‖ bytes)`.
    pub leaf: TreeHash,
}

impl Hashed {
    /// Hashes the event stored under `seq` with bytes `body` and hash `hash`, after
    /// `after` (in a walk, the stored hash of the event before).
    pub fn new(seq: i64, body: &str, hash: &[u8], after: [u8; 32]) -> Self {
        let stored = <[u8; 32]>::try_from(hash).ok();
        let computed = chain_hash(&after, body);
        Self {
            seq,
            after,
            named: field(body, SEQ).zip(field(body, AT)),
            hash: stored.unwrap_or_default(),
            follows: stored == Some(computed),
            leaf: tlog::leaf_hash(body.as_bytes()),
        }
    }
}

/// Walks events in order, one at a time, keeping only the running head and the tree's
/// right edge.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    head: [u8; 32],
    tree: Frontier,
    checkpoints: std::collections::BTreeMap<i64, CheckpointRow>,
    /// Sizes whose roots the caller wants, and the roots once reached.
    watched: std::collections::BTreeMap<u64, Option<TreeHash>>,
    /// The verified checkpoint the walk went on from (size, root), if it did not start at
    /// the first event.
    resumed: Option<(u64, TreeHash)>,
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
            head: GENESIS,
            tree: Frontier::default(),
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            watched: std::collections::BTreeMap::new(),
            resumed: None,
            checked: 0,
        })
    }

    /// Goes on from a checkpoint verified before, at `seq` events: `head` is its chain head
    /// and `tree` its tree's right edge, both already held to that checkpoint.
    pub fn resume(mut self, seq: i64, head: [u8; 32], tree: Frontier) -> Self {
        self.resumed = Some((tree.size(), tree.root()));
        self.expected_seq = seq + 1;
        self.head = head;
        self.tree = tree;
        self
    }

    /// The checkpoints the walk is held to, in order.
    pub fn checkpoints(&self) -> impl DoubleEndedIterator<Item = &CheckpointRow> {
        self.checkpoints.values()
    }

    /// Where the walk went on from (size, root), if it was resumed.
    pub fn resumed_from(&self) -> Option<(u64, TreeHash)> {
        self.resumed
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

    /// Checks the next event, encoding it from its columns.
    pub fn push(&mut self, e: &AuditRow) -> Result<(), Fault> {
        let body = canonical(e);
        self.push_bytes(e.seq, &body, Some(&e.prev_hash), &e.hash)
    }

    /// Checks the next event from its stored canonical bytes: they must name its sequence
    /// number and hash, after the head, to its hash (and its stored link, when given, must
    /// be the head); its leaf joins the tree.
    pub fn push_bytes(
        &mut self,
        seq: i64,
        body: &str,
        prev_hash: Option<&[u8]>,
        hash: &[u8],
    ) -> Result<(), Fault> {
        if seq <= self.expected_seq && prev_hash.is_some_and(|p| p != self.head) {
            return Err(Fault {
                seq,
                kind: "inserted-or-reordered",
                detail: "the event does not follow the one before it".into(),
                evidence: Vec::new(),
            });
        }
        let hashed = Hashed::new(seq, body, hash, self.head);
        self.push_hashed(&hashed)
    }

    /// The chain head so far: the hash of the last event checked.
    pub fn head(&self) -> &[u8; 32] {
        &self.head
    }

    /// Checks the next event from hashes computed ahead of the walk ([`Hashed::new`], in a
    /// walk after the stored hash of the event before): it must have been hashed after
    /// the head, then the same checks as [`Verifier::push_bytes`], in the same order.
    pub fn push_hashed(&mut self, e: &Hashed) -> Result<(), Fault> {
        let seq = e.seq;
        let fault = |kind, detail: &str| Fault {
            seq,
            kind,
            detail: detail.to_owned(),
            evidence: Vec::new(),
        };
        if seq > self.expected_seq {
            return Err(Fault {
                seq: self.expected_seq,
                kind: "missing",
                detail: format!("events {} to {} are missing", self.expected_seq, seq - 1),
                evidence: Vec::new(),
            });
        }
        if e.after != self.head {
            return Err(fault(
                "inserted-or-reordered",
                "the event does not follow the one before it",
            ));
        }
        let Some((named, at)) = e.named else {
            return Err(fault("modified", "the event's bytes are not an event"));
        };
        if named != seq {
            return Err(fault(
                "inserted-or-reordered",
                "the event's bytes name another sequence number",
            ));
        }
        if !e.follows {
            return Err(fault(
                "modified",
                "the event's contents do not match its hash",
            ));
        }
        self.tree.push(e.leaf);
        if let Some(slot) = self.watched.get_mut(&self.tree.size()) {
            *slot = Some(self.tree.root());
        }
        self.check_time_spacing(seq, at)?;
        if let Some(c) = self.checkpoints.get(&seq) {
            let tree_differs = c
                .root_hash
                .as_deref()
                .is_some_and(|root| root != self.tree.root().as_slice());
            if c.head_hash != e.hash || tree_differs {
                return Err(Fault {
                    seq,
                    kind: "checkpoint-mismatch",
                    detail: format!("the trail differs from the signed checkpoint at {}", c.seq),
                    evidence: Vec::new(),
                });
            }
        }
        self.head = e.hash;
        self.expected_seq = seq + 1;
        self.checked += 1;
        Ok(())
    }

    /// An event appended a checkpoint interval or more after the last checkpoint is signed
    /// in its own batch (the sequencer checks the time at every commit), so the next
    /// checkpoint must carry that event's time. Applies from the first checkpoint with a
    /// tree on.
    fn check_time_spacing(&self, seq: i64, at: i64) -> Result<(), Fault> {
        let interval = i64::try_from(super::CHECKPOINT_EVERY.as_millis()).unwrap_or(i64::MAX);
        let Some((_, before)) = self.checkpoints.range(..seq).next_back() else {
            return Ok(());
        };
        if before.note.is_none() || at - before.at < interval {
            return Ok(());
        }
        let signed_with_it = self
            .checkpoints
            .range(seq..)
            .next()
            .is_some_and(|(_, after)| after.at == at);
        if signed_with_it {
            return Ok(());
        }
        Err(Fault {
            seq,
            kind: "checkpoint-missing",
            detail: format!(
                "the event came {} s after checkpoint {} and no checkpoint was signed with it",
                (at - before.at) / 1000,
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
    use crate::audit::chain::event_hash;

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
            body: None,
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

    /// The canonical form through a general JCS implementation, as it was first written.
    fn reference(e: &AuditRow) -> String {
        let value = serde_json::json!({
            "seq": e.seq, "at": e.at, "actor_kind": e.actor_kind, "actor_id": e.actor_id,
            "officer_id": e.officer_id, "case_id": e.case_id, "citizen": e.citizen_pseudonym,
            "action": e.action, "object_ids": e.object_ids,
            "grant_id": e.grant_id.map(|g| g.to_string()), "purpose": e.purpose,
            "tier": e.tier, "fields": e.fields, "outcome": e.outcome,
            "bytes_sent": e.bytes_sent, "request_id": e.request_id, "detail": e.detail,
        });
        digest::canonical_json(&value).expect("canonical")
    }

    proptest::proptest! {
        #[test]
        fn the_direct_encoding_is_jcs_byte_for_byte(
            seq in 1i64..1_i64 << 50,
            at in -1_i64 << 50..1_i64 << 50,
            bytes in proptest::option::of(0i64..1_i64 << 50),
            officer in proptest::option::of(".{0,40}"),
            detail in proptest::option::of("[\\x00-\\x20\"\\\\/\\x7f\u{80}-\u{10ffff}a-z]{0,40}"),
            purpose in proptest::option::of("\\PC{0,20}"),
            grant in proptest::option::of(proptest::arbitrary::any::<u128>()),
        ) {
            let mut r = row(seq, &GENESIS);
            r.at = at;
            r.bytes_sent = bytes;
            r.officer_id = officer;
            r.detail = detail;
            r.purpose = purpose;
            r.grant_id = grant.map(|g| crate::ids::GrantId::from_uuid(uuid::Uuid::from_u128(g)));
            proptest::prop_assert_eq!(canonical(&r), reference(&r));
        }
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
