//! Verifying the stored trail: pages of events read one ahead of the hashing, walked by a
//! [`Verifier`], then the stored tree and the witnesses' view held to the result — from the
//! first event, or from a checkpoint verified before.

use custodia_crypto::tlog::{self, Frontier, TreeHash};

use super::chain::{Fault, GENESIS, Summary, Trust, Verifier};
use super::{tree, witnessed};
use crate::error::Error;
use crate::store::{Store, StoreError};

/// Verifies the whole trail in pages against what `trust` pins, calling
/// `progress(checked, total)` as it goes. The outer error is a storage failure; the inner
/// one the first fault found: a changed, missing, inserted or reordered event, a
/// checkpoint the trail does not match or no pinned key signed, a stretch without the
/// promised checkpoints, or a stored tree that differs from the events.
pub async fn verify(
    store: &Store,
    trust: &Trust,
    progress: impl FnMut(u64, u64),
) -> Result<Result<Summary, Fault>, Error> {
    verify_since(store, trust, None, progress).await
}

/// As [`verify`], going on from `since`, a checkpoint note verified before (as
/// `custodia audit verify` keeps it): it must be signed by a pinned key, still
/// be in the database with the same root, and the stored tree must prove that the newest
/// checkpoint extends it (a consistency proof); then only the events after it are walked.
pub async fn verify_since(
    store: &Store,
    trust: &Trust,
    since: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<Result<Summary, Fault>, Error> {
    let (head_seq, head_hash) = store.audit_head().await?;
    let (count, _) = store.audit_extent().await?;
    let mut verifier = match Verifier::new(store.audit_checkpoints().await?, trust) {
        Ok(v) => v,
        Err(mut fault) => {
            // Say so when the key is one the database offers but nobody pinned.
            if fault.kind == "untrusted-key"
                && let Ok(published) = store.signing_keys().await
                && published
                    .iter()
                    .any(|(id, _)| fault.detail.contains(id.as_str()))
            {
                fault.detail.push_str(" (it appears only in the database)");
            }
            return Ok(Err(fault));
        }
    };
    let mut start = 0;
    if let Some(note) = since {
        match resume_point(store, trust, note).await? {
            Ok((seq, head, tree)) => {
                verifier = verifier.resume(seq, head, tree);
                start = seq;
            }
            Err(fault) => return Ok(Err(fault)),
        }
    }
    let total = u64::try_from(count - start).unwrap_or(0);
    witnessed::watch(trust, &mut verifier);
    // What readers are shown must be what the hashes cover: either the database computes
    // every column from the bytes, or each page holds the stored columns to them.
    let check_columns = !store.audit_columns_derived().await?;
    let walked = walk(
        store,
        &mut verifier,
        (start, total),
        check_columns,
        &mut progress,
    )
    .await?;
    if let Err(fault) = walked {
        return Ok(Err(fault));
    }
    let size = u64::try_from(head_seq).unwrap_or(0);
    let computed = verifier.root();
    let summary = match verifier.finish(head_seq, &head_hash) {
        Ok(summary) => summary,
        Err(fault) => return Ok(Err(fault)),
    };
    // The stored tree answers every proof: it must be the tree of these events.
    let stored = store.tree_size().await? == size
        && tree::stored_root(store, size).await.ok() == Some(computed);
    if !stored {
        return Ok(Err(Fault {
            seq: head_seq,
            kind: "tree-mismatch",
            detail: "the stored Merkle tree is not the tree of the events".into(),
            evidence: Vec::new(),
        }));
    }
    Ok(witnessed::check(store, trust, &verifier, head_seq)
        .await?
        .map(|witnessed| Summary {
            witnessed,
            ..summary
        }))
}

const PAGE: i64 = 10_000;

fn page_failed(e: tokio::task::JoinError) -> Error {
    Error::Internal(anyhow::anyhow!("verification page: {e}"))
}

/// Walks the stored bytes from `start` (of `total` to come), a page read while the one
/// before is hashed; with `check_columns`, a page whose stored columns differ from an
/// event's bytes fails at that event.
async fn walk(
    store: &Store,
    verifier: &mut Verifier,
    (start, total): (i64, u64),
    check_columns: bool,
    progress: &mut impl FnMut(u64, u64),
) -> Result<Result<(), Fault>, Error> {
    let fetch = |after: i64| {
        let store = store.clone();
        tokio::spawn(async move { store.audit_bytes_page(after, PAGE, check_columns).await })
    };
    let mut next = fetch(start);
    loop {
        let Some(page) = next.await.map_err(page_failed)?? else {
            return Ok(Ok(()));
        };
        let mut records = Vec::with_capacity(PAGE as usize);
        for record in page.text.split('\u{1e}') {
            let mut parts = record.split('\u{1f}');
            let (Some(seq), Some(body), Some(hash)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(Error::Internal(anyhow::anyhow!(
                    "a verification page is unreadable"
                )));
            };
            records.push((seq.parse::<i64>().unwrap_or(0), body, hash));
        }
        if !records.is_sorted_by_key(|r| r.0) {
            records.sort_unstable_by_key(|r| r.0);
        }
        let Some(&(last, _, _)) = records.last() else {
            return Ok(Ok(()));
        };
        next = fetch(last);
        for (seq, body, hash) in records {
            let hash = custodia_crypto::digest::hex_decode_32(hash).unwrap_or_default();
            let pushed = if body.is_empty() {
                // Written before events kept their bytes (PostgreSQL; SQLite filled them
                // in when its columns became views of the bytes): encode the columns.
                match store
                    .audit_events_after(seq - 1, 1)
                    .await?
                    .into_iter()
                    .next()
                {
                    Some(row) if row.seq == seq => verifier.push(&row),
                    _ => verifier.push_bytes(seq, body, None, &hash),
                }
            } else {
                // The stored link is not read: the hash covers the previous one already,
                // and the bytes name their own place.
                verifier.push_bytes(seq, body, None, &hash)
            }
            .and_then(|()| {
                // The bytes are the event; columns that say otherwise were changed.
                match page.differs_at == Some(seq) {
                    true => Err(Fault::new(
                        seq,
                        "modified",
                        "the event's columns differ from its recorded bytes".into(),
                        Vec::new(),
                    )),
                    false => Ok(()),
                }
            });
            if let Err(fault) = pushed {
                next.abort();
                return Ok(Err(fault));
            }
        }
        progress(verifier.checked, total);
    }
}

/// Where a walk can go on from a checkpoint note verified before: its size, its chain head
/// and its tree's right edge, each held to the signed checkpoint.
async fn resume_point(
    store: &Store,
    trust: &Trust,
    note: &str,
) -> Result<Result<(i64, Vec<u8>, Frontier), Fault>, StoreError> {
    let Ok(saved) = tlog::open_checkpoint(note, &trust.origin, &trust.log_keys(), &[]) else {
        return Ok(Err(Fault::new(
            0,
            "untrusted-key",
            "the checkpoint verified before is not signed by a pinned key".into(),
            vec![note.to_owned()],
        )));
    };
    let seq = i64::try_from(saved.size).unwrap_or(i64::MAX);
    let (head_seq, _) = store.audit_head().await?;
    if seq > head_seq {
        return Ok(Err(Fault::new(
            head_seq + 1,
            "rolled-back",
            format!(
                "the trail ends at {head_seq}, before the checkpoint of {seq} events verified \
                 before: it was rolled back or cut"
            ),
            vec![note.to_owned()],
        )));
    }
    let row = store.checkpoint_at(seq).await?;
    let Some(row) = row.filter(|r| r.root_hash.as_deref() == Some(saved.root.as_slice())) else {
        let ours = store.checkpoint_at(seq).await?.and_then(|r| r.note);
        return Ok(Err(Fault::new(
            seq,
            "fork",
            format!("the database no longer holds the checkpoint of {seq} events verified before"),
            std::iter::once(note.to_owned()).chain(ours).collect(),
        )));
    };
    let head = if seq == 0 {
        GENESIS.to_vec()
    } else {
        match store
            .audit_events_after(seq - 1, 1)
            .await?
            .into_iter()
            .next()
        {
            Some(e) if e.seq == seq && e.hash == row.head_hash => e.hash,
            _ => {
                return Ok(Err(Fault::new(
                    seq,
                    "modified",
                    format!("event {seq} differs from the checkpoint verified before"),
                    Vec::new(),
                )));
            }
        }
    };
    let mismatch = |detail: String| Ok(Err(Fault::new(seq, "tree-mismatch", detail, Vec::new())));
    let known = store.tree_hashes(&Frontier::needs(saved.size)).await?;
    let Ok(frontier) = Frontier::load(saved.size, &known) else {
        return mismatch(format!(
            "the stored tree is missing hashes of the first {seq} events"
        ));
    };
    if frontier.root() != saved.root {
        return mismatch(format!(
            "the stored tree of the first {seq} events is not the one verified before"
        ));
    }
    // The newest checkpoint must extend the one verified before.
    if let Some(newest) = store.last_checkpoint().await?
        && newest.seq > seq
        && let Some(root) = newest
            .root_hash
            .as_deref()
            .and_then(|r| TreeHash::try_from(r).ok())
    {
        let size = u64::try_from(newest.seq).unwrap_or(0);
        let proof = tree::consistency_proof(store, saved.size, size).await?;
        if !tlog::check_consistency(&proof, size, &root, saved.size, &saved.root) {
            return mismatch(format!(
                "no consistency proof leads from the checkpoint verified before ({seq}) to the \
                 newest ({})",
                newest.seq
            ));
        }
    }
    Ok(Ok((seq, head, frontier)))
}
