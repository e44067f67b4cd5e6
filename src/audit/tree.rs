//! The Merkle tree over the trail, kept by the append path: loading its right edge at the
//! start of a batch, appending leaves, and answering inclusion and consistency proofs from
//! the stored subtree hashes.

use custodia_crypto::tlog::{self, Known, TreeHash};

use crate::store::{Store, StoreError, Tx};

fn broken(e: tlog::TlogError) -> StoreError {
    StoreError::Other(anyhow::anyhow!("the audit tree is incomplete: {e}"))
}

/// The tree as one batch extends it: the stored hashes it needs and the ones it adds.
#[derive(Debug)]
pub(super) struct Appender {
    size: u64,
    known: Known,
    added: Vec<(u64, TreeHash)>,
}

impl Appender {
    /// The tree of `size` events, its right edge read in `tx`.
    pub(super) async fn load(tx: &mut Tx, size: u64) -> Result<Self, StoreError> {
        Self::load_with(tx, size, None).await
    }

    /// As [`Appender::load`], reading in the same statement what the root at `also` (an
    /// earlier size) needs, so [`Appender::root_at`] of it reads nothing more.
    pub(super) async fn load_with(
        tx: &mut Tx,
        size: u64,
        also: Option<u64>,
    ) -> Result<Self, StoreError> {
        let mut needs = tlog::root_needs(size);
        if let Some(earlier) = also.filter(|e| *e <= size) {
            needs.extend(tlog::root_needs(earlier));
            needs.sort_unstable();
            needs.dedup();
        }
        let known = tx.tree_hashes(&needs).await?;
        Ok(Self {
            size,
            known,
            added: Vec::new(),
        })
    }

    /// The tree of `size` events from its right edge as this process last left it
    /// ([`Appender::edge`]), reading nothing.
    pub(super) fn from_edge(size: u64, known: Known) -> Self {
        Self {
            size,
            known,
            added: Vec::new(),
        }
    }

    /// What the next batch needs of this tree — the hashes of its right edge — or `None`
    /// if this appender does not hold them all.
    pub(super) fn edge(&self) -> Option<Known> {
        let mut needs = tlog::root_needs(self.size);
        needs.extend(tlog::append_needs(self.size));
        needs
            .into_iter()
            .map(|i| self.known.get(&i).map(|h| (i, *h)))
            .collect()
    }

    /// Adds the next event's leaf.
    pub(super) fn push(&mut self, leaf: TreeHash) -> Result<(), StoreError> {
        for (index, hash) in tlog::append(self.size, leaf, &self.known).map_err(broken)? {
            self.known.insert(index, hash);
            self.added.push((index, hash));
        }
        self.size += 1;
        Ok(())
    }

    /// The root now.
    pub(super) fn root(&self) -> Result<TreeHash, StoreError> {
        tlog::root(self.size, &self.known).map_err(broken)
    }

    /// The root the tree had at `size` (at most its size now), from this batch's hashes and
    /// those stored before it.
    pub(super) async fn root_at(&self, tx: &mut Tx, size: u64) -> Result<TreeHash, StoreError> {
        let needs: Vec<u64> = tlog::root_needs(size)
            .into_iter()
            .filter(|i| !self.known.contains_key(i))
            .collect();
        let mut known = tx.tree_hashes(&needs).await?;
        known.extend(self.known.iter().map(|(i, h)| (*i, *h)));
        tlog::root(size, &known).map_err(broken)
    }

    /// The stored hashes this batch adds, to write in its transaction.
    pub(super) fn added(&self) -> &[(u64, TreeHash)] {
        &self.added
    }
}

/// Builds the part of the tree a database from before the tree lacks (at start; a no-op
/// once the tree has every event). Runs a page of events per transaction, under the head
/// lock, so nodes starting together build it once.
pub async fn extend_tree(store: &Store) -> Result<u64, StoreError> {
    const PAGE: i64 = 10_000;
    let mut built = 0;
    loop {
        let size = store.tree_size().await?;
        let rows = store
            .audit_events_after(i64::try_from(size).unwrap_or(i64::MAX), PAGE)
            .await?;
        if rows.is_empty() {
            return Ok(built);
        }
        let mut tx = store.begin().await?;
        tx.lock_audit_head().await?;
        if tx.tree_size().await? != size {
            // Another node built this page meanwhile.
            tx.commit().await?;
            continue;
        }
        let mut tree = Appender::load(&mut tx, size).await?;
        for (expected, row) in (size + 1..).zip(&rows) {
            if u64::try_from(row.seq).ok() != Some(expected) {
                return Err(StoreError::Other(anyhow::anyhow!(
                    "audit event {expected} is missing; the tree cannot be built past it"
                )));
            }
            tree.push(super::chain::leaf(row))?;
        }
        tx.insert_tree_hashes(tree.added()).await?;
        tx.set_tree_size(size + rows.len() as u64).await?;
        tx.commit().await?;
        built += rows.len() as u64;
    }
}

/// The proof that event `seq` is in the tree of `size` events.
pub async fn inclusion_proof(
    store: &Store,
    size: u64,
    seq: i64,
) -> Result<Vec<TreeHash>, StoreError> {
    let index = u64::try_from(seq - 1).map_err(|_| StoreError::NotFound)?;
    if index >= size {
        return Err(StoreError::NotFound);
    }
    let known = store
        .tree_hashes(&tlog::inclusion_needs(size, index))
        .await?;
    tlog::prove_inclusion(size, index, &known).map_err(broken)
}

/// The proof that the tree of `to` events extends the tree of its first `from`.
pub async fn consistency_proof(
    store: &Store,
    from: u64,
    to: u64,
) -> Result<Vec<TreeHash>, StoreError> {
    if from > to {
        return Err(StoreError::NotFound);
    }
    let known = store
        .tree_hashes(&tlog::consistency_needs(to, from))
        .await?;
    tlog::prove_consistency(to, from, &known).map_err(broken)
}

/// The root of the stored tree at `size` events.
pub async fn stored_root(store: &Store, size: u64) -> Result<TreeHash, StoreError> {
    let known: Known = store.tree_hashes(&tlog::root_needs(size)).await?;
    tlog::root(size, &known).map_err(broken)
}
