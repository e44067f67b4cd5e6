//! Holding the trail to its witnesses (C2SP `tlog-witness`): the newest checkpoint must
//! carry a quorum of witness cosignatures, and every checkpoint a witness says it cosigned
//! must be a prefix of this trail. A witness's checkpoint beyond the trail's end means the
//! database was rolled back or cut; one of a size the trail has but with another root
//! means two histories were signed (a fork). Either is reported with the signed heads
//! that prove it.

use custodia_crypto::tlog::{self, TreeHead};
use custodia_crypto::witness::with_signatures;

use super::WITNESS_GRACE;
use super::chain::{Fault, Trust, Verifier};
use crate::store::Store;
use crate::store::StoreError;
use crate::store::audit::CheckpointRow;

/// Opens a witness's answer: a checkpoint of this log that the witness itself cosigned.
fn open_witness_head(trust: &Trust, witness: &str, note: &str) -> Option<TreeHead> {
    let key = trust.witnesses.iter().find(|(n, _)| n == witness)?;
    let head = tlog::open_checkpoint(
        note,
        &trust.origin,
        &trust.log_keys(),
        std::slice::from_ref(key),
    )
    .ok()?;
    head.signers.iter().any(|s| s == witness).then_some(head)
}

/// The sizes whose roots the walk must record, one per witness answer.
pub fn watch(trust: &Trust, verifier: &mut Verifier) {
    for (witness, note) in &trust.witness_heads {
        if let Some(head) = open_witness_head(trust, witness, note) {
            verifier.watch(head.size);
        }
    }
}

/// The configured witnesses whose cosignature lines on the signed `note` verify, each
/// line checked on its own (one bad line spoils no other).
pub fn valid_cosigners(trust: &Trust, note: &str, lines: &[String]) -> Vec<String> {
    let mut names: Vec<String> = lines
        .iter()
        .filter_map(|line| {
            let cosigned = with_signatures(note, std::slice::from_ref(line));
            tlog::open_checkpoint(
                &cosigned,
                &trust.origin,
                &trust.log_keys(),
                &trust.witnesses,
            )
            .ok()
        })
        .flat_map(|head| head.signers.into_iter().skip(1))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// How many configured witnesses validly cosigned `checkpoint` (given its stored lines).
pub fn count_cosigners(trust: &Trust, checkpoint: &CheckpointRow, lines: &[String]) -> usize {
    checkpoint
        .note
        .as_deref()
        .map_or(0, |note| valid_cosigners(trust, note, lines).len())
}

/// After a clean walk to `head_seq`: every witness answer must be a prefix of the walked
/// trail, and the newest checkpoint older than [`WITNESS_GRACE`] must carry the quorum.
/// Returns the checkpoint held to the quorum and its cosigners.
pub async fn check(
    store: &Store,
    trust: &Trust,
    verifier: &Verifier,
    head_seq: i64,
) -> Result<Result<Option<(i64, usize)>, Fault>, StoreError> {
    // The walk already holds every checkpoint; nothing is read twice.
    let newest_note = verifier
        .checkpoints()
        .next_back()
        .and_then(|c| c.note.clone())
        .unwrap_or_default();
    let size = u64::try_from(head_seq).unwrap_or(0);
    for (witness, note) in &trust.witness_heads {
        let Some(head) = open_witness_head(trust, witness, note) else {
            continue;
        };
        let seq = i64::try_from(head.size).unwrap_or(i64::MAX);
        if head.size > size {
            return Ok(Err(Fault::new(
                head_seq + 1,
                "rolled-back",
                format!(
                    "witness {witness} cosigned a checkpoint of {} events, but the trail ends at \
                     {head_seq}: it was rolled back or cut after the witness saw it",
                    head.size
                ),
                vec![note.clone(), newest_note],
            )));
        }
        let agrees = match (verifier.root_at(head.size), verifier.resumed_from()) {
            (Some(root), _) => root == head.root,
            // Before where this walk went on from: the stored tree must prove the witness's
            // head is a prefix of the checkpoint verified before.
            (None, Some((from, from_root))) if head.size < from => {
                let proof = super::tree::consistency_proof(store, head.size, from).await?;
                tlog::check_consistency(&proof, from, &from_root, head.size, &head.root)
            }
            (None, _) => false,
        };
        if !agrees {
            let ours = store
                .checkpoint_at(seq)
                .await?
                .and_then(|c| c.note)
                .unwrap_or(newest_note);
            return Ok(Err(Fault::new(
                seq,
                "fork",
                format!(
                    "witness {witness} cosigned another history at {} events: two checkpoints \
                     of this log disagree",
                    head.size
                ),
                vec![note.clone(), ours],
            )));
        }
    }
    if trust.quorum == 0 {
        return Ok(Ok(None));
    }
    let grace = i64::try_from(WITNESS_GRACE.as_millis()).unwrap_or(i64::MAX);
    let held = verifier
        .checkpoints()
        .rev()
        .filter(|c| c.note.is_some())
        .find(|c| c.at <= trust.now_ms - grace);
    let Some(held) = held else {
        return Ok(Ok(None));
    };
    let lines: Vec<String> = store
        .cosignatures(held.seq)
        .await?
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    let cosigners = count_cosigners(trust, held, &lines);
    if cosigners < trust.quorum {
        return Ok(Err(Fault::new(
            held.seq,
            "unwitnessed",
            format!(
                "checkpoint {} was signed more than {} minutes ago and carries {cosigners} valid \
                 witness cosignature(s); {} are required",
                held.seq,
                WITNESS_GRACE.as_secs() / 60,
                trust.quorum
            ),
            Vec::new(),
        )));
    }
    Ok(Ok(Some((held.seq, cosigners))))
}
