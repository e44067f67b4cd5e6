//! Rows of `oversight_keys`, and the national IDs sealed to them in `citizens`.

use uuid::Uuid;

use crate::ids::CitizenId;
use crate::on_engine;

use super::{Store, StoreError, Tx};

/// An oversight public key (the private half is held by the oversight office).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OversightKeyRow {
    pub id: Uuid,
    pub public_key: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// A national ID still in the old escrow (sealed under a server key).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EscrowRow {
    pub id: CitizenId,
    pub national_id_escrow: Vec<u8>,
}

/// A citizen's sealed national ID and the key it is sealed to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealedIdRow {
    pub national_id_sealed: Option<Vec<u8>>,
    pub oversight_key_id: Option<Uuid>,
}

impl Store {
    /// The current oversight key, if one was set up.
    pub async fn current_oversight_key(&self) -> Result<Option<OversightKeyRow>, StoreError> {
        const SQL: &str = "SELECT id, public_key, created_at, retired_at FROM oversight_keys \
            WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, OversightKeyRow>(SQL).fetch_optional(p).await?
        }))
    }

    /// A citizen's sealed national ID.
    pub async fn sealed_national_id(&self, citizen: CitizenId) -> Result<SealedIdRow, StoreError> {
        const SQL: &str = "SELECT national_id_sealed, oversight_key_id FROM citizens WHERE id = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, SealedIdRow>(SQL).bind(citizen).fetch_one(p).await?
        }))
    }
}

impl Tx {
    /// Makes `row` the current oversight key, retiring the one before.
    pub async fn insert_oversight_key(&mut self, row: &OversightKeyRow) -> Result<(), StoreError> {
        const RETIRE: &str = "UPDATE oversight_keys SET retired_at = $1 WHERE retired_at IS NULL";
        const INSERT: &str =
            "INSERT INTO oversight_keys (id, public_key, created_at) VALUES ($1, $2, $3)";
        on_engine!(self, c => {
            sqlx::query(RETIRE).bind(row.created_at).execute(&mut **c).await?;
            sqlx::query(INSERT).bind(row.id).bind(&row.public_key).bind(row.created_at).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Every national ID still in the old escrow.
    pub async fn escrowed_national_ids(&mut self) -> Result<Vec<EscrowRow>, StoreError> {
        const SQL: &str =
            "SELECT id, national_id_escrow FROM citizens WHERE national_id_escrow IS NOT NULL";
        Ok(on_engine!(self, c => {
            sqlx::query_as::<_, EscrowRow>(SQL).fetch_all(&mut **c).await?
        }))
    }

    /// Replaces a citizen's escrow by its national ID sealed to an oversight key.
    pub async fn set_sealed_national_id(
        &mut self,
        citizen: CitizenId,
        key: Uuid,
        sealed: &[u8],
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE citizens SET national_id_sealed = $1, oversight_key_id = $2, \
            national_id_escrow = NULL WHERE id = $3";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(sealed).bind(key).bind(citizen).execute(&mut **c).await?;
        });
        Ok(())
    }
}
