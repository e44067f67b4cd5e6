//! The trail as a transparency log, as its readers see it: the newest signed checkpoint,
//! consistency proofs between two sizes (what a witness or an auditor checks before trusting
//! a newer checkpoint), and a citizen's inclusion proof for one of her own events.
//!
//! Everything here is checkable without trusting the server: a checkpoint is a C2SP signed
//! note under a pinned key, and proofs are RFC 9162 proofs over the events' canonical bytes.
//! Hashes travel as standard base64, as in the notes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::error::{Error, invalid};
use crate::sessions::Session;
use crate::store::audit::CheckpointRow;

pub mod witnesses;

/// A signed checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckpointView {
    /// The log's origin (the note's first line, and the signing key's name).
    pub origin: String,
    /// Events in the tree.
    pub size: i64,
    /// The tree's root, base64.
    pub root_hash: String,
    /// When it was signed (RFC 3339).
    pub time: String,
    /// The signing key's id (as in `/api/v1/audit/public-key`).
    pub key_id: String,
    /// The C2SP verifier key of the signing key (`origin+id+base64`), for note tools.
    pub verifier_key: Option<String>,
    /// The witnesses whose cosignatures on it verify (C2SP `cosignature/v1`).
    pub cosigned_by: Vec<String>,
    /// Whether they are as many as the deployment requires (always true without
    /// witnesses).
    pub witnessed: bool,
    /// The signed note itself (C2SP tlog-checkpoint) with the witnesses' cosignature
    /// lines, to verify byte for byte.
    pub note: String,
}

async fn view(ctx: &Context, c: CheckpointRow) -> Result<CheckpointView, Error> {
    let trust = ctx.audit_trust();
    let lines: Vec<String> = ctx
        .store
        .cosignatures(c.seq)
        .await?
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    let signed = c.note.as_deref().unwrap_or("");
    // Only cosignatures that verify are shown (one bad line would spoil the note for every
    // reader); each line is checked once.
    let mut good = Vec::new();
    let mut cosigned_by = Vec::new();
    for line in lines {
        let names =
            crate::audit::witnessed::valid_cosigners(&trust, signed, std::slice::from_ref(&line));
        if !names.is_empty() {
            cosigned_by.extend(names);
            good.push(line);
        }
    }
    cosigned_by.sort();
    cosigned_by.dedup();
    let note = custodia_crypto::witness::with_signatures(signed, &good);
    let origin = ctx.config.audit_origin();
    let verifier_key = ctx
        .keys
        .pinned
        .iter()
        .find(|(id, _)| *id == c.key_id)
        .map(|(_, key)| custodia_crypto::tlog::verifier_key(&origin, key));
    Ok(CheckpointView {
        origin,
        size: c.seq,
        root_hash: STANDARD.encode(c.root_hash.unwrap_or_default()),
        time: crate::clock::rfc3339(c.at),
        key_id: c.key_id,
        verifier_key,
        witnessed: cosigned_by.len() >= trust.quorum,
        cosigned_by,
        note,
    })
}

/// The newest checkpoint a reader should check against: with witnesses, the newest one
/// carrying the quorum of cosignatures (a newer one is still being witnessed), else the
/// newest signed one; before any is witnessed, the newest signed one, marked unwitnessed.
async fn newest(ctx: &Context) -> Result<CheckpointRow, Error> {
    if !ctx.config.witnesses.is_empty()
        && let Some(c) = ctx
            .store
            .newest_cosigned_checkpoint(ctx.config.witness_quorum)
            .await?
    {
        return Ok(c);
    }
    ctx.store
        .last_checkpoint()
        .await?
        .filter(|c| c.note.is_some())
        .ok_or(Error::NotFound)
}

/// The newest witnessed checkpoint (see `newest`; 404 before the first).
#[tracing::instrument(skip_all)]
pub async fn latest(ctx: &Context) -> Result<CheckpointView, Error> {
    view(ctx, newest(ctx).await?).await
}

/// A consistency proof.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Consistency {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// RFC 9162 consistency proof, base64 hashes.
    pub proof: Vec<String>,
}

/// The proof that the tree of `to` events extends the tree of its first `from`
/// (`1 ≤ from ≤ to ≤` the tree's size).
#[tracing::instrument(skip_all, fields(from, to))]
pub async fn consistency(ctx: &Context, from: u64, to: u64) -> Result<Consistency, Error> {
    let size = ctx.store.tree_size().await?;
    if from == 0 {
        return Err(invalid("from", "must be at least 1"));
    }
    if from > to {
        return Err(invalid("from", "must not be larger than 'to'"));
    }
    if to > size {
        return Err(invalid(
            "to",
            format!("the log holds {size} events; 'to' must not exceed it"),
        ));
    }
    let proof = crate::audit::consistency_proof(&ctx.store, from, to).await?;
    Ok(Consistency {
        from,
        to,
        proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
    })
}

/// The proof that one of the citizen's events is in the log.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InclusionProof {
    /// The event's sequence number.
    pub seq: i64,
    /// Its leaf index in the tree (`seq - 1`).
    pub leaf_index: u64,
    /// The event's canonical bytes (RFC 8785 JSON): the leaf is `SHA-256(0x00 ‖ these)`.
    pub event: String,
    /// The leaf hash, base64.
    pub leaf_hash: String,
    /// RFC 9162 inclusion proof against the checkpoint, base64 hashes.
    pub proof: Vec<String>,
    /// The newest signed checkpoint, which the proof is against.
    pub checkpoint: CheckpointView,
}

/// The inclusion proof of event `seq`, which must be about the signed-in citizen (anyone
/// else's answers 404, as a missing one does), against the newest checkpoint. An event
/// newer than that checkpoint answers 409: checkpoints follow within a minute.
#[tracing::instrument(skip_all, fields(seq))]
pub async fn citizen_proof(
    ctx: &Context,
    session: &Session,
    seq: i64,
) -> Result<InclusionProof, Error> {
    let pseudonym = ctx.store.citizen(session.citizen()?).await?.pseudonym;
    let event = ctx
        .store
        .audit_events_after(seq.saturating_sub(1), 1)
        .await?
        .into_iter()
        .find(|e| e.seq == seq && e.citizen_pseudonym.as_deref() == Some(pseudonym.as_str()))
        .ok_or(Error::NotFound)?;
    let checkpoint = newest(ctx).await?;
    if checkpoint.seq < seq {
        return Err(Error::Conflict(
            "This event is not in a signed checkpoint yet; one follows within a minute.".into(),
        ));
    }
    let size = u64::try_from(checkpoint.seq).unwrap_or(0);
    let proof = crate::audit::inclusion_proof(&ctx.store, size, seq).await?;
    let body = crate::audit::chain::canonical(&event);
    let leaf = custodia_crypto::tlog::leaf_hash(body.as_bytes());
    Ok(InclusionProof {
        seq,
        leaf_index: u64::try_from(seq - 1).unwrap_or(0),
        event: body,
        leaf_hash: STANDARD.encode(leaf),
        proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
        checkpoint: view(ctx, checkpoint).await?,
    })
}

/// Every proof a citizen can take away: her events in the newest checkpoint, each with its
/// inclusion proof, checkable offline by `custodia audit verify-proof FILE`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bundle {
    /// `custodia-proofs/1`.
    pub format: String,
    /// The checkpoint every proof is against.
    pub checkpoint: CheckpointView,
    /// The citizen's events it covers, newest first (at most [`BUNDLE_EVENTS`]).
    pub events: Vec<ProvenEvent>,
}

/// One event of a [`Bundle`].
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProvenEvent {
    /// Sequence number.
    pub seq: i64,
    /// Leaf index (`seq - 1`).
    pub leaf_index: u64,
    /// Canonical bytes.
    pub event: String,
    /// Inclusion proof, base64 hashes.
    pub proof: Vec<String>,
}

/// Most events in one bundle (the newest).
pub const BUNDLE_EVENTS: i64 = 500;

/// The signed-in citizen's proof bundle (404 before the first checkpoint).
#[tracing::instrument(skip_all)]
pub async fn citizen_bundle(ctx: &Context, session: &Session) -> Result<Bundle, Error> {
    let pseudonym = ctx.store.citizen(session.citizen()?).await?.pseudonym;
    let checkpoint = newest(ctx).await?;
    let filter = crate::store::audit::AuditFilter {
        citizen_pseudonym: Some(pseudonym),
        disclosed_at: Some(ctx.clock.now_ms()),
        ..Default::default()
    };
    let size = u64::try_from(checkpoint.seq).unwrap_or(0);
    let rows: Vec<_> = ctx
        .store
        .audit_search(&filter, BUNDLE_EVENTS)
        .await?
        .into_iter()
        .filter(|e| e.seq <= checkpoint.seq)
        .collect();
    let mut needs: Vec<u64> = rows
        .iter()
        .filter_map(|e| u64::try_from(e.seq - 1).ok())
        .flat_map(|i| custodia_crypto::tlog::inclusion_needs(size, i))
        .collect();
    needs.sort_unstable();
    needs.dedup();
    let mut known = custodia_crypto::tlog::Known::new();
    for chunk in needs.chunks(500) {
        known.extend(ctx.store.tree_hashes(chunk).await?);
    }
    let mut events = Vec::with_capacity(rows.len());
    for e in rows {
        let index = u64::try_from(e.seq - 1).unwrap_or(0);
        let proof = custodia_crypto::tlog::prove_inclusion(size, index, &known).map_err(|err| {
            Error::Internal(anyhow::anyhow!("the audit tree is incomplete: {err}"))
        })?;
        events.push(ProvenEvent {
            seq: e.seq,
            leaf_index: index,
            event: crate::audit::chain::canonical(&e),
            proof: proof.iter().map(|h| STANDARD.encode(h)).collect(),
        });
    }
    Ok(Bundle {
        format: "custodia-proofs/1".into(),
        checkpoint: view(ctx, checkpoint).await?,
        events,
    })
}

/// What an offline check of a bundle established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleChecked {
    /// Events proven.
    pub events: usize,
    /// The checkpoint's size.
    pub size: u64,
    /// Its origin.
    pub origin: String,
    /// Trusted witnesses that cosigned it.
    pub cosigners: usize,
}

/// Checks a bundle with nothing but `keys` (the signing keys the checker trusts) and the
/// witnesses it trusts: the checkpoint note must be signed by one of the keys and cosigned
/// by at least `quorum` of the witnesses, and every event's inclusion proof must hold
/// against it. The error names the first thing that does not hold.
pub fn check_bundle(
    bundle: &Bundle,
    keys: &[custodia_crypto::sign::VerifyingKey],
    witnesses: &[(String, custodia_crypto::sign::VerifyingKey)],
    quorum: usize,
) -> Result<BundleChecked, String> {
    use custodia_crypto::tlog;
    if bundle.format != "custodia-proofs/1" {
        return Err(format!("unknown bundle format {:?}", bundle.format));
    }
    let origin = &bundle.checkpoint.origin;
    let head = tlog::open_checkpoint(&bundle.checkpoint.note, origin, keys, witnesses)
        .map_err(|e| format!("the checkpoint: {e}"))?;
    let cosigners = head.signers.len().saturating_sub(1);
    if cosigners < quorum {
        return Err(format!(
            "the checkpoint carries {cosigners} trusted witness cosignature(s); {quorum} are required"
        ));
    }
    for e in &bundle.events {
        let proof: Option<Vec<tlog::TreeHash>> = e
            .proof
            .iter()
            .map(|h| STANDARD.decode(h).ok().and_then(|b| b.try_into().ok()))
            .collect();
        let leaf = tlog::leaf_hash(e.event.as_bytes());
        let holds = proof
            .is_some_and(|p| tlog::check_inclusion(&p, head.size, &head.root, e.leaf_index, &leaf));
        let names_its_seq = serde_json::from_str::<serde_json::Value>(&e.event)
            .ok()
            .and_then(|v| v.get("seq").and_then(serde_json::Value::as_i64))
            == Some(e.seq)
            && u64::try_from(e.seq - 1).ok() == Some(e.leaf_index);
        if !holds || !names_its_seq {
            return Err(format!(
                "event {}: its inclusion proof does not hold against checkpoint {}",
                e.seq, head.size
            ));
        }
    }
    Ok(BundleChecked {
        events: bundle.events.len(),
        size: head.size,
        origin: origin.clone(),
        cosigners,
    })
}
