//! Rows of `audit_tree`: the Merkle tree over the trail, one row per complete subtree,
//! keyed by its stored-hash index (`custodia_crypto::tlog`). Rows are only ever added, in
//! the transaction that appends the events they cover.

use std::collections::HashMap;

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// Stored hashes by index.
pub type TreeHashes = HashMap<u64, [u8; 32]>;

fn index_list(indexes: &[u64]) -> String {
    (1..=indexes.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn to_i64(index: u64) -> i64 {
    // Stored-hash indexes of any tree this side of 2^62 events fit.
    i64::try_from(index).unwrap_or(i64::MAX)
}

fn collect(rows: Vec<(i64, Vec<u8>)>) -> TreeHashes {
    rows.into_iter()
        .filter_map(|(i, h)| Some((u64::try_from(i).ok()?, <[u8; 32]>::try_from(h).ok()?)))
        .collect()
}

macro_rules! select_hashes {
    ($conn:expr, $indexes:expr) => {{
        let sql = format!(
            "SELECT idx, hash FROM audit_tree WHERE idx IN ({})",
            index_list($indexes)
        );
        let mut q = sqlx::query_as::<_, (i64, Vec<u8>)>(sqlx::AssertSqlSafe(sql));
        for i in $indexes {
            q = q.bind(to_i64(*i));
        }
        q.fetch_all($conn).await?
    }};
}

impl Store {
    /// The stored hashes at `indexes` (those present).
    pub async fn tree_hashes(&self, indexes: &[u64]) -> Result<TreeHashes, StoreError> {
        if indexes.is_empty() {
            return Ok(TreeHashes::new());
        }
        Ok(collect(
            on_engine!(self.pool(), p => select_hashes!(p, indexes)),
        ))
    }

    /// How many events the tree holds.
    pub async fn tree_size(&self) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT tree_size FROM audit_head WHERE id = 1";
        let size = on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, i64>(SQL).fetch_optional(p).await?
        });
        Ok(size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }
}

/// An insert of stored tree hashes, before its rows of placeholders.
pub(super) const TREE_INSERT: &str = "INSERT INTO audit_tree (idx, hash) VALUES ";

impl Tx {
    /// The stored hashes at `indexes` (those present), inside this transaction.
    pub async fn tree_hashes(&mut self, indexes: &[u64]) -> Result<TreeHashes, StoreError> {
        if indexes.is_empty() {
            return Ok(TreeHashes::new());
        }
        Ok(collect(
            on_engine!(self, c => select_hashes!(&mut **c, indexes)),
        ))
    }

    /// Adds stored hashes (new subtrees only: an index is written once).
    pub async fn insert_tree_hashes(
        &mut self,
        hashes: &[(u64, [u8; 32])],
    ) -> Result<(), StoreError> {
        // 2 parameters a row; stay well under every engine's parameter limit.
        let sqlite = matches!(self, super::OnEngine::Sqlite(_));
        for chunk in hashes.chunks(400) {
            let sql = format!(
                "{TREE_INSERT}{}",
                super::placeholders(sqlite, chunk.len(), 2)
            );
            on_engine!(self, c => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (i, h) in chunk {
                    q = q.bind(to_i64(*i)).bind(h.to_vec());
                }
                q.execute(&mut **c).await?;
            });
        }
        Ok(())
    }

    /// Records how many events the tree holds.
    pub async fn set_tree_size(&mut self, size: u64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE audit_head SET tree_size = $1 WHERE id = 1";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(to_i64(size)).execute(&mut **c).await?;
        });
        Ok(())
    }
}

impl Tx {
    /// How many events the tree holds, inside this transaction.
    pub async fn tree_size(&mut self) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT tree_size FROM audit_head WHERE id = 1";
        let size = on_engine!(self, c => {
            sqlx::query_scalar::<_, i64>(SQL).fetch_optional(&mut **c).await?
        });
        Ok(size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }
}
