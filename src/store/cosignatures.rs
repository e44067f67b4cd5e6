//! Rows of `audit_cosignatures`: witnesses' cosignatures on checkpoints, each kept as the
//! signature line the witness answered with. Rows are added only after the server checked
//! the line against the witness's configured key; verifiers check them again.

use crate::on_engine;

use super::audit::CheckpointRow;
use super::{Store, StoreError};

impl Store {
    /// Keeps a witness's cosignature on the checkpoint at `seq` (once per witness).
    pub async fn insert_cosignature(
        &self,
        seq: i64,
        witness: &str,
        line: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO audit_cosignatures (seq, witness, signature, at) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (seq, witness) DO NOTHING";
        on_engine!(self.pool(), p => {
            sqlx::query(SQL).bind(seq).bind(witness).bind(line).bind(at).execute(p).await?;
        });
        Ok(())
    }

    /// The cosignatures on the checkpoint at `seq`: (witness, signature line).
    pub async fn cosignatures(&self, seq: i64) -> Result<Vec<(String, String)>, StoreError> {
        const SQL: &str =
            "SELECT witness, signature FROM audit_cosignatures WHERE seq = $1 ORDER BY witness";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, (String, String)>(SQL).bind(seq).fetch_all(p).await?
        }))
    }

    /// The largest checkpoint `witness` cosigned, if any.
    pub async fn last_cosigned_by(&self, witness: &str) -> Result<Option<i64>, StoreError> {
        const SQL: &str = "SELECT MAX(seq) FROM audit_cosignatures WHERE witness = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, Option<i64>>(SQL).bind(witness).fetch_one(p).await?
        }))
    }

    /// The newest checkpoint with at least `quorum` cosignatures.
    pub async fn newest_cosigned_checkpoint(
        &self,
        quorum: usize,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        const SQL: &str = "SELECT seq, head_hash, at, key_id, signature, root_hash, note \
            FROM audit_checkpoints WHERE note IS NOT NULL AND seq IN \
            (SELECT seq FROM audit_cosignatures GROUP BY seq HAVING COUNT(*) >= $1) \
            ORDER BY seq DESC LIMIT 1";
        let quorum = i64::try_from(quorum).unwrap_or(i64::MAX);
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, CheckpointRow>(SQL).bind(quorum).fetch_optional(p).await?
        }))
    }

    /// The checkpoint at exactly `seq`, if one was signed there.
    pub async fn checkpoint_at(&self, seq: i64) -> Result<Option<CheckpointRow>, StoreError> {
        const SQL: &str = "SELECT seq, head_hash, at, key_id, signature, root_hash, note \
            FROM audit_checkpoints WHERE seq = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, CheckpointRow>(SQL).bind(seq).fetch_optional(p).await?
        }))
    }
}
