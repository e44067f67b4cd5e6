//! Rows of `auditors` and `auditor_invites` (auditors' passkeys are in `credentials`).

use uuid::Uuid;

use crate::ids::AuditorId;

use crate::on_engine;

use super::citizens::CredentialRow;
use super::{Store, StoreError, Tx};

/// An auditor.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditorRow {
    pub id: AuditorId,
    pub name: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// A one-time enrolment link, stored as the SHA-256 of its token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InviteRow {
    pub id: Uuid,
    pub token_hash: Vec<u8>,
    pub name: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub auditor_id: Option<AuditorId>,
}

impl Store {
    /// The invite whose token has this hash.
    pub async fn invite_by_hash(&self, hash: &[u8]) -> Result<Option<InviteRow>, StoreError> {
        const SQL: &str = "SELECT id, token_hash, name, created_at, expires_at, used_at, auditor_id \
            FROM auditor_invites WHERE token_hash = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, InviteRow>(SQL).bind(hash).fetch_optional(p).await?
        }))
    }

    /// An enabled auditor by name.
    pub async fn auditor_by_name(&self, name: &str) -> Result<Option<AuditorRow>, StoreError> {
        const SQL: &str = "SELECT id, name, created_at, disabled_at FROM auditors \
            WHERE name = $1 AND disabled_at IS NULL";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, AuditorRow>(SQL).bind(name).fetch_optional(p).await?
        }))
    }

    /// An auditor by id.
    pub async fn auditor(&self, id: AuditorId) -> Result<AuditorRow, StoreError> {
        const SQL: &str = "SELECT id, name, created_at, disabled_at FROM auditors WHERE id = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, AuditorRow>(SQL).bind(id).fetch_one(p).await?
        }))
    }

    /// An auditor's passkeys.
    pub async fn auditor_credentials(
        &self,
        auditor: AuditorId,
    ) -> Result<Vec<CredentialRow>, StoreError> {
        const SQL: &str = "SELECT id, citizen_id, auditor_id, credential_id, passkey, label, created_at, \
            last_used_at FROM credentials WHERE auditor_id = $1 ORDER BY created_at, id";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, CredentialRow>(SQL).bind(auditor).fetch_all(p).await?
        }))
    }
}

impl Tx {
    /// Stores an invite.
    pub async fn insert_invite(&mut self, r: &InviteRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO auditor_invites (id, token_hash, name, created_at, expires_at) \
            VALUES ($1, $2, $3, $4, $5)";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(r.id).bind(&r.token_hash).bind(&r.name).bind(r.created_at).bind(r.expires_at).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Disables an auditor and ends every session of theirs; `false` if already disabled.
    pub async fn disable_auditor(
        &mut self,
        id: AuditorId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE auditors SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL";
        let n = on_engine!(self, c => {
            sqlx::query(SQL).bind(now_ms).bind(id).execute(&mut **c).await?.rows_affected()
        });
        on_engine!(self, c => {
            sqlx::query("DELETE FROM sessions WHERE auditor_id = $1").bind(id).execute(&mut **c).await?;
        });
        Ok(n == 1)
    }

    /// Uses an invite once, for `auditor`; returns whether it was still unused and valid.
    pub async fn use_invite(
        &mut self,
        id: Uuid,
        auditor: AuditorId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE auditor_invites SET used_at = $1, auditor_id = $2 \
            WHERE id = $3 AND used_at IS NULL AND expires_at > $4";
        Ok(on_engine!(self, c => {
            sqlx::query(SQL).bind(now_ms).bind(auditor).bind(id).bind(now_ms).execute(&mut **c).await?.rows_affected() == 1
        }))
    }

    /// Inserts an auditor.
    pub async fn insert_auditor(&mut self, r: &AuditorRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO auditors (id, name, created_at) VALUES ($1, $2, $3)";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(r.id).bind(&r.name).bind(r.created_at).execute(&mut **c).await?;
        });
        Ok(())
    }
}
