//! Verifying the stored trail: pages of events read, hashed and walked side by side by a
//! [`Verifier`], then the stored tree and the witnesses' view held to the result — from the
//! first event, or from a checkpoint verified before.

use custodia_crypto::tlog::{self, Frontier, TreeHash};

use super::chain::{Fault, GENESIS, Summary, Trust, Verifier};
use super::verifier::Hashed;
use super::{tree, witnessed};
use crate::error::Error;
use crate::store::audit::BytesPage;
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

/// Events per page. Measured over a million events (BENCHMARKS.md): pages of 2,000 to
/// 4,000 walk fastest; 10,000 (≈ 4.5 MB per value) spends a fifth of the driver's time
/// faulting in fresh memory for each page, and a few hundred pay the round trips.
const PAGE: i64 = 2_000;

fn page_failed(e: tokio::task::JoinError) -> Error {
    Error::Internal(anyhow::anyhow!("verification page: {e}"))
}

/// A page of events as read: the events' bytes as they crossed from the database and, in
/// order, each event's sequence number, bytes (a range of the text) and stored hash.
struct ReadPage {
    text: String,
    records: Vec<(i64, std::ops::Range<usize>, [u8; 32])>,
    differs_at: Option<i64>,
}

impl ReadPage {
    /// Lines the page's three lists up (`None` if they do not).
    fn parse(page: BytesPage) -> Option<Self> {
        let hashes = page.hashes.chunks_exact(32);
        if !hashes.remainder().is_empty() {
            return None;
        }
        let mut records = Vec::with_capacity(PAGE as usize);
        // U+001E is one byte, so the cuts fall between characters.
        let text = page.bodies.as_bytes();
        let mut ends = memchr::memchr_iter(0x1e, text).chain(std::iter::once(text.len()));
        let mut start = 0;
        for (seq, hash) in page.seqs.split(',').zip(hashes) {
            let end = ends.next()?;
            records.push((
                seq.parse::<i64>().ok()?,
                start..end,
                <[u8; 32]>::try_from(hash).ok()?,
            ));
            start = end + 1;
        }
        if ends.next().is_some() || records.len() * 32 != page.hashes.len() {
            return None;
        }
        if !records.is_sorted_by_key(|r| r.0) {
            records.sort_unstable_by_key(|r| r.0);
        }
        Some(Self {
            text: page.bodies,
            records,
            differs_at: page.differs_at,
        })
    }

    /// Hashes every event, each after the stored hash of the one before (the first after
    /// `after`).
    fn hash(self, after: [u8; 32]) -> HashedPage {
        let mut prev = after;
        let events = self
            .records
            .iter()
            .map(|(seq, body, hash)| {
                let bytes = self.text.get(body.clone()).unwrap_or_default();
                let hashed = Hashed::new(*seq, bytes, hash, prev);
                prev = *hash;
                (!bytes.is_empty(), hashed)
            })
            .collect();
        HashedPage {
            events,
            differs_at: self.differs_at,
        }
    }
}

/// A page of events, hashed apart from the walk.
struct HashedPage {
    /// Each event, whether it has stored bytes, and what hashing them found.
    events: Vec<(bool, Hashed)>,
    /// The first event whose stored columns differ from its bytes, if checked.
    differs_at: Option<i64>,
}

/// Pages hashed at once, besides the one being read and the one being walked.
const HASHING: usize = 2;

/// Walks the stored bytes from `start` (of `total` to come); with `check_columns`, a page
/// whose stored columns differ from an event's bytes fails at that event.
///
/// Three stages run side by side: a reader asks for page after page; each page is hashed
/// on a blocking thread (its events' chain hashes after the stored hash of the event
/// before — the last of the page before for the first — and their leaves), up to
/// [`HASHING`] pages at once; and the walk takes the hashed pages in order, holding each
/// event to its place, its checkpoints and the tree. Hashing is most of the work, and
/// every page's can be done at once because the stored hashes say what each event must
/// follow; the walk then holds the stored hashes to one another.
async fn walk(
    store: &Store,
    verifier: &mut Verifier,
    (start, total): (i64, u64),
    check_columns: bool,
    progress: &mut impl FnMut(u64, u64),
) -> Result<Result<(), Fault>, Error> {
    let (sender, mut pages) = tokio::sync::mpsc::channel::<Result<ReadPage, Error>>(HASHING);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seq = start;
            loop {
                let read = match store.audit_bytes_page(seq, PAGE, check_columns).await {
                    Ok(None) => return,
                    Ok(Some(page)) => ReadPage::parse(page).ok_or_else(|| {
                        Error::Internal(anyhow::anyhow!("a verification page is unreadable"))
                    }),
                    Err(e) => Err(e.into()),
                };
                // An error (sent, for the walk to report) or an empty page ends the reading.
                let last = read
                    .as_ref()
                    .ok()
                    .and_then(|p| p.records.last())
                    .map(|r| r.0);
                if sender.send(read).await.is_err() {
                    return;
                }
                match last {
                    Some(last) => seq = last,
                    None => return,
                }
            }
        })
    };
    let walked = async {
        let mut hashing = std::collections::VecDeque::with_capacity(HASHING);
        let mut after = *verifier.head();
        loop {
            while hashing.len() < HASHING {
                let Some(read) = pages.recv().await else {
                    break;
                };
                let read = read?;
                let before = after;
                if let Some((_, _, last)) = read.records.last() {
                    after = *last;
                }
                hashing.push_back(tokio::task::spawn_blocking(move || read.hash(before)));
            }
            let Some(next) = hashing.pop_front() else {
                return Ok(Ok(()));
            };
            let page = next.await.map_err(page_failed)?;
            match walk_page(store, verifier, &page).await? {
                Ok(()) => progress(verifier.checked, total),
                Err(fault) => return Ok(Err(fault)),
            }
        }
    }
    .await;
    reader.abort();
    walked
}

/// Walks one hashed page: each event must follow the walk's head (the first the last of
/// the page before).
async fn walk_page(
    store: &Store,
    verifier: &mut Verifier,
    page: &HashedPage,
) -> Result<Result<(), Fault>, Error> {
    for (has_bytes, e) in &page.events {
        let pushed = if !has_bytes {
            // Written before events kept their bytes (PostgreSQL; SQLite filled them in
            // when its columns became views of the bytes): encode the columns.
            match store
                .audit_events_after(e.seq - 1, 1)
                .await?
                .into_iter()
                .next()
            {
                Some(row) if row.seq == e.seq => verifier.push(&row),
                _ => verifier.push_hashed(e),
            }
        } else {
            verifier.push_hashed(e)
        }
        .and_then(|()| {
            // The bytes are the event; columns that say otherwise were changed.
            if page.differs_at == Some(e.seq) {
                return Err(Fault::new(
                    e.seq,
                    "modified",
                    "the event's columns differ from its recorded bytes".into(),
                    Vec::new(),
                ));
            }
            Ok(())
        });
        if let Err(fault) = pushed {
            return Ok(Err(fault));
        }
    }
    Ok(Ok(()))
}

/// Where a walk can go on from a checkpoint note verified before: its size, its chain head
/// and its tree's right edge, each held to the signed checkpoint.
async fn resume_point(
    store: &Store,
    trust: &Trust,
    note: &str,
) -> Result<Result<(i64, [u8; 32], Frontier), Fault>, StoreError> {
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
        GENESIS
    } else {
        match store
            .audit_events_after(seq - 1, 1)
            .await?
            .into_iter()
            .next()
        {
            Some(e) if e.seq == seq && e.hash == row.head_hash => {
                <[u8; 32]>::try_from(e.hash.as_slice()).unwrap_or_default()
            }
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
