//! Rows of `delegations` and `delegation_key_wraps`.

use crate::ids::{AgencyId, CitizenId, DelegationId, DocumentId, GuardianshipId};
use crate::status::DelegationStatus;

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// A delegation as stored. `key_for_delegate` (HPKE-sealed to the delegate) and
/// `key_for_principal` (under her vault key) hold the delegation key; they and the
/// data-key wraps are deleted when it ends.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DelegationRow {
    pub id: DelegationId,
    pub principal_id: CitizenId,
    pub delegate_id: CitizenId,
    pub document_types: String,
    pub actions: String,
    pub status: DelegationStatus,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
    pub expires_at: i64,
    pub ended_at: Option<i64>,
    pub ended_by: Option<String>,
    pub key_for_delegate: Option<Vec<u8>>,
    pub key_for_principal: Option<Vec<u8>>,
    pub principal_name: Option<Vec<u8>>,
    pub delegate_name: Option<Vec<u8>>,
    /// A held account's hand-over code, sealed to the guardian.
    pub handover_code: Option<Vec<u8>>,
    pub guardianship_id: Option<GuardianshipId>,
}

impl DelegationRow {
    /// The status now (time ends a pending or active delegation before any sweep).
    pub fn status_at(&self, now_ms: i64) -> DelegationStatus {
        self.status.at(self.expires_at, now_ms)
    }
}

/// A data key wrapped under a delegation's key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DelegationWrapRow {
    pub delegation_id: DelegationId,
    pub document_id: DocumentId,
    pub version: i32,
    pub wrapped_key: Vec<u8>,
}

const COLUMNS: &str = "id, principal_id, delegate_id, document_types, actions, status, created_at, \
    accepted_at, expires_at, ended_at, ended_by, key_for_delegate, key_for_principal, \
    principal_name, delegate_name, handover_code, guardianship_id";

impl Store {
    /// One delegation.
    pub async fn delegation(&self, id: DelegationId) -> Result<DelegationRow, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM delegations WHERE id = $1");
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, DelegationRow>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(p).await?
        }))
    }

    /// The delegations a citizen is either side of, newest first.
    pub async fn citizen_delegations(
        &self,
        citizen: CitizenId,
    ) -> Result<Vec<DelegationRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM delegations WHERE principal_id = $1 OR delegate_id = $1 \
             ORDER BY created_at DESC, id"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, DelegationRow>(sqlx::AssertSqlSafe(sql)).bind(citizen).fetch_all(p).await?
        }))
    }

    /// The live (accepted, not ended, not past its end) delegation by which `delegate`
    /// acts for `principal`, if any: read on every request that acts for someone, so an
    /// end committed on any node holds on the next request.
    pub async fn live_delegation(
        &self,
        principal: CitizenId,
        delegate: CitizenId,
        now_ms: i64,
    ) -> Result<Option<DelegationRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM delegations WHERE principal_id = $1 AND delegate_id = $2 \
             AND status = 'active' AND expires_at > $3 ORDER BY created_at DESC LIMIT 1"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, DelegationRow>(sqlx::AssertSqlSafe(sql))
                .bind(principal).bind(delegate).bind(now_ms).fetch_optional(p).await?
        }))
    }

    /// The principal's delegations that hold keys and have not ended: the ones a new
    /// version of hers joins while her vault is unlocked.
    pub async fn keyed_delegations(
        &self,
        principal: CitizenId,
        now_ms: i64,
    ) -> Result<Vec<DelegationRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM delegations WHERE principal_id = $1 \
             AND status IN ('pending', 'active') AND expires_at > $2 AND key_for_principal IS NOT NULL"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, DelegationRow>(sqlx::AssertSqlSafe(sql))
                .bind(principal).bind(now_ms).fetch_all(p).await?
        }))
    }

    /// The wrap of one version's data key under a delegation's key, if it has one.
    pub async fn delegation_wrap(
        &self,
        delegation: DelegationId,
        document: DocumentId,
        version: i32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        const SQL: &str = "SELECT wrapped_key FROM delegation_key_wraps \
            WHERE delegation_id = $1 AND document_id = $2 AND version = $3";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, Vec<u8>>(SQL).bind(delegation).bind(document).bind(version)
                .fetch_optional(p).await?
        }))
    }

    /// When the next pending or active delegation ends (Unix ms), if any does.
    pub async fn next_delegation_expiry(&self) -> Result<Option<i64>, StoreError> {
        const SQL: &str =
            "SELECT MIN(expires_at) FROM delegations WHERE status IN ('pending', 'active')";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, Option<i64>>(SQL).fetch_one(p).await?
        }))
    }

    /// Delegations still marked pending or active whose end has passed.
    pub async fn expired_live_delegations(
        &self,
        now_ms: i64,
    ) -> Result<Vec<DelegationId>, StoreError> {
        const SQL: &str = "SELECT id FROM delegations \
            WHERE status IN ('pending', 'active') AND expires_at <= $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, DelegationId>(SQL).bind(now_ms).fetch_all(p).await?
        }))
    }
}

impl Tx {
    /// Stores a new delegation.
    pub async fn insert_delegation(&mut self, d: &DelegationRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO delegations ({COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        );
        on_engine!(self, tx => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(d.id).bind(d.principal_id).bind(d.delegate_id).bind(&d.document_types)
                .bind(&d.actions).bind(d.status).bind(d.created_at).bind(d.accepted_at)
                .bind(d.expires_at).bind(d.ended_at).bind(&d.ended_by).bind(&d.key_for_delegate)
                .bind(&d.key_for_principal).bind(&d.principal_name).bind(&d.delegate_name)
                .bind(&d.handover_code).bind(d.guardianship_id)
                .execute(&mut **tx).await?;
        });
        Ok(())
    }

    /// Stores a data-key wrap of a delegation that still holds its keys (none is added to
    /// one that ended meanwhile). Returns whether it was stored.
    pub async fn insert_delegation_wrap(
        &mut self,
        w: &DelegationWrapRow,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO delegation_key_wraps (delegation_id, document_id, version, wrapped_key) \
            SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM delegations WHERE id = $1 \
            AND status IN ('pending', 'active') AND key_for_principal IS NOT NULL) \
            ON CONFLICT DO NOTHING";
        let done = on_engine!(self, tx => {
            sqlx::query(SQL).bind(w.delegation_id).bind(w.document_id).bind(w.version)
                .bind(&w.wrapped_key).execute(&mut **tx).await?.rows_affected()
        });
        Ok(done == 1)
    }

    /// Accepts a pending delegation addressed to `delegate` that has not run out, with her
    /// name sealed to the principal. Returns whether it was pending (and so is now active).
    pub async fn accept_delegation(
        &mut self,
        id: DelegationId,
        delegate: CitizenId,
        delegate_name: &[u8],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE delegations SET status = 'active', accepted_at = $1, delegate_name = $2 \
            WHERE id = $3 AND delegate_id = $4 AND status = 'pending' AND expires_at > $1";
        let done = on_engine!(self, tx => {
            sqlx::query(SQL).bind(now_ms).bind(delegate_name).bind(id).bind(delegate)
                .execute(&mut **tx).await?.rows_affected()
        });
        Ok(done == 1)
    }

    /// Gives a delegation made without keys (a guardianship's, before the ward unlocked)
    /// its keys. Returns whether it still lacked them and had not ended.
    pub async fn key_delegation(
        &mut self,
        id: DelegationId,
        key_for_delegate: &[u8],
        key_for_principal: &[u8],
        principal_name: &[u8],
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE delegations SET key_for_delegate = $1, key_for_principal = $2, \
            principal_name = $3 WHERE id = $4 AND key_for_principal IS NULL \
            AND status IN ('pending', 'active')";
        let done = on_engine!(self, tx => {
            sqlx::query(SQL).bind(key_for_delegate).bind(key_for_principal).bind(principal_name)
                .bind(id).execute(&mut **tx).await?.rows_affected()
        });
        Ok(done == 1)
    }

    /// Ends a delegation that is pending or active (`status` = ended or expired), destroying
    /// its keys and every data-key wrap under it. Returns whether it was live.
    pub async fn end_delegation(
        &mut self,
        id: DelegationId,
        status: DelegationStatus,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const END: &str = "UPDATE delegations SET status = $1, ended_at = $2, ended_by = $3, \
            key_for_delegate = NULL, key_for_principal = NULL \
            WHERE id = $4 AND status IN ('pending', 'active')";
        const WRAPS: &str = "DELETE FROM delegation_key_wraps WHERE delegation_id = $1";
        let done = on_engine!(self, tx => {
            let done = sqlx::query(END).bind(status).bind(now_ms).bind(by).bind(id)
                .execute(&mut **tx).await?.rows_affected();
            sqlx::query(WRAPS).bind(id).execute(&mut **tx).await?;
            done
        });
        Ok(done == 1)
    }

    /// The delegation keys wrapped under `principal`'s vault key (for a vault key rotation).
    pub async fn principal_delegation_keys(
        &mut self,
        principal: CitizenId,
    ) -> Result<Vec<(DelegationId, Vec<u8>)>, StoreError> {
        const SQL: &str = "SELECT id, key_for_principal FROM delegations \
            WHERE principal_id = $1 AND key_for_principal IS NOT NULL";
        Ok(on_engine!(self, tx => {
            sqlx::query_as::<_, (DelegationId, Vec<u8>)>(SQL).bind(principal).fetch_all(&mut **tx).await?
        }))
    }

    /// Replaces a delegation key's wrap for its principal (a vault key rotation).
    pub async fn set_delegation_principal_key(
        &mut self,
        id: DelegationId,
        wrapped: &[u8],
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE delegations SET key_for_principal = $1 \
            WHERE id = $2 AND key_for_principal IS NOT NULL";
        on_engine!(self, tx => {
            sqlx::query(SQL).bind(wrapped).bind(id).execute(&mut **tx).await?;
        });
        Ok(())
    }

    /// Stores a guardianship (its delegation is stored first).
    pub async fn insert_guardianship(&mut self, g: &GuardianshipRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO guardianships (id, agency_id, delegation_id, basis, majority_at, created_at) \
            VALUES ($1, $2, $3, $4, $5, $6)";
        on_engine!(self, tx => {
            sqlx::query(SQL).bind(g.id).bind(g.agency_id).bind(g.delegation_id).bind(&g.basis)
                .bind(g.majority_at).bind(g.created_at).execute(&mut **tx).await?;
        });
        Ok(())
    }
}

/// A guardianship as stored: who declared it, on what basis, and the delegation that
/// carries it out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GuardianshipRow {
    pub id: GuardianshipId,
    pub agency_id: AgencyId,
    pub delegation_id: DelegationId,
    pub basis: String,
    pub majority_at: Option<i64>,
    pub created_at: i64,
}

impl Store {
    /// A guardianship declared by `agency`; `NotFound` for any other agency's.
    pub async fn agency_guardianship(
        &self,
        agency: AgencyId,
        id: GuardianshipId,
    ) -> Result<GuardianshipRow, StoreError> {
        const SQL: &str = "SELECT id, agency_id, delegation_id, basis, majority_at, created_at \
            FROM guardianships WHERE id = $1 AND agency_id = $2";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, GuardianshipRow>(SQL).bind(id).bind(agency).fetch_one(p).await?
        }))
    }
}
