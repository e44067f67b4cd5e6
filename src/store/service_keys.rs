//! Rows of `service_keys` (wrapped service keys) and `signing_keys` (published public
//! halves of signing keys).

use crate::on_engine;

use super::{Store, StoreError};

/// A service key as stored: wrapped under the master key named by `master_key_id`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WrappedServiceKey {
    /// The key's role (`grant-wrap`, `blind-index`).
    pub name: String,
    /// The wrapped key.
    pub wrapped: Vec<u8>,
    /// Fingerprint of the master key that wraps it.
    pub master_key_id: String,
}

impl Store {
    /// The wrapped service key called `name`, if it exists.
    pub async fn service_key(&self, name: &str) -> Result<Option<WrappedServiceKey>, StoreError> {
        const SQL: &str = "SELECT name, wrapped, master_key_id FROM service_keys WHERE name = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, WrappedServiceKey>(SQL).bind(name).fetch_optional(p).await?
        }))
    }

    /// Stores a new wrapped service key unless one with that name exists already (another
    /// node may have won the race at first start); returns whether this call inserted it.
    pub async fn insert_service_key(
        &self,
        key: &WrappedServiceKey,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO service_keys (name, wrapped, master_key_id, created_at) \
                           VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING";
        let rows = on_engine!(self.pool(), p => {
            sqlx::query(SQL)
                .bind(&key.name)
                .bind(&key.wrapped)
                .bind(&key.master_key_id)
                .bind(now_ms)
                .execute(p)
                .await?
                .rows_affected()
        });
        Ok(rows == 1)
    }

    /// Every wrapped service key.
    pub async fn service_keys(&self) -> Result<Vec<WrappedServiceKey>, StoreError> {
        const SQL: &str = "SELECT name, wrapped, master_key_id FROM service_keys ORDER BY name";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, WrappedServiceKey>(SQL).fetch_all(p).await?
        }))
    }

    /// Replaces a service key's wrap, only if it is still under `old_master`.
    pub async fn rewrap_service_key(
        &self,
        name: &str,
        old_master: &str,
        wrapped: &[u8],
        new_master: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE service_keys SET wrapped = $1, master_key_id = $2 \
            WHERE name = $3 AND master_key_id = $4";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query(SQL).bind(wrapped).bind(new_master).bind(name).bind(old_master)
                .execute(p).await?.rows_affected() == 1
        }))
    }

    /// Every signing key's public half, oldest first: `(key_id, public_key)`.
    pub async fn signing_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        const SQL: &str = "SELECT key_id, public_key FROM signing_keys ORDER BY created_at, key_id";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, (String, Vec<u8>)>(SQL).fetch_all(p).await?
        }))
    }
}

impl super::Tx {
    /// Records the public half of a signing key (idempotent).
    pub async fn publish_signing_key(
        &mut self,
        key_id: &str,
        public_key: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO signing_keys (key_id, public_key, created_at) \
                           VALUES ($1, $2, $3) ON CONFLICT (key_id) DO NOTHING";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(key_id).bind(public_key).bind(now_ms).execute(&mut **c).await?;
        });
        Ok(())
    }
}
