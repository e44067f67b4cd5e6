//! Rows of `grants` and `grant_key_wraps`.

use uuid::Uuid;

use crate::ids::{AccessRequestId, AgencyId, CitizenId, DocumentId, GrantId};

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// A grant as stored. `grant_key_wrap` is the per-grant key under the grant-wrap service
/// key; it and the data-key wraps are deleted when the grant ends.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRow {
    pub id: GrantId,
    pub citizen_id: CitizenId,
    pub agency_id: AgencyId,
    pub request_id: Option<AccessRequestId>,
    pub document_ids: String,
    pub document_types: String,
    pub tier: crate::status::Tier,
    pub fields: String,
    pub purpose_code: Option<String>,
    pub purpose: String,
    pub legal_basis: Option<String>,
    pub valid_from: i64,
    pub expires_at: i64,
    pub max_reads: Option<i32>,
    pub reads: i32,
    pub retention_days: i32,
    pub status: crate::status::GrantStatus,
    pub status_changed_at: i64,
    pub grant_key_wrap: Option<Vec<u8>>,
    pub receipt: String,
    pub receipt_signature: Vec<u8>,
    pub created_at: i64,
    /// Created by an emergency agency from what the citizen allowed in advance (SPEC §6).
    pub emergency: bool,
    /// When the agency acknowledged that it stopped using the ended grant.
    #[sqlx(default)]
    pub revocation_ack_at: Option<i64>,
    /// When the agency acknowledged deleting what it read (and kept).
    #[sqlx(default)]
    pub retention_ack_at: Option<i64>,
    /// When, by that acknowledgement, every retained copy was deleted.
    #[sqlx(default)]
    pub retention_deleted_at: Option<i64>,
}

impl GrantRow {
    /// The status now: a stored `active` grant past its end is `expired` even before the
    /// sweeper records it.
    pub fn status_at(&self, now_ms: i64) -> crate::status::GrantStatus {
        self.status.at(self.expires_at, now_ms)
    }

    /// When it ended (Unix ms), if it has by `now_ms`: its recorded end, or its expiry
    /// before the sweeper records it.
    pub fn ended_at(&self, now_ms: i64) -> Option<i64> {
        match (self.status, self.status_at(now_ms)) {
            (_, crate::status::GrantStatus::Active) => None,
            (crate::status::GrantStatus::Active, _) => Some(self.expires_at),
            _ => Some(self.status_changed_at),
        }
    }
}

/// A data key re-wrapped under a grant's key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantWrapRow {
    pub grant_id: GrantId,
    pub document_id: DocumentId,
    pub version: i32,
    pub wrapped_key: Vec<u8>,
}

/// The agency's acknowledgements, read with a grant (never written with it).
const ACKS: &str = "revocation_ack_at, retention_ack_at, retention_deleted_at";

const COLUMNS: &str = "id, citizen_id, agency_id, request_id, document_ids, document_types, tier, fields, \
    purpose_code, purpose, legal_basis, valid_from, expires_at, max_reads, reads, retention_days, status, \
    status_changed_at, grant_key_wrap, receipt, receipt_signature, created_at, emergency";

impl Store {
    /// A citizen's grants, newest first.
    pub async fn citizen_grants(&self, citizen: CitizenId) -> Result<Vec<GrantRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS}, {ACKS} FROM grants WHERE citizen_id = $1 ORDER BY created_at DESC, id"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, GrantRow>(sqlx::AssertSqlSafe(sql)).bind(citizen).fetch_all(p).await?
        }))
    }

    /// The names of the agencies holding the citizen's grants, in one query.
    pub async fn citizen_grant_agencies(
        &self,
        citizen: CitizenId,
    ) -> Result<Vec<(AgencyId, String)>, StoreError> {
        const SQL: &str = "SELECT DISTINCT a.id, a.name FROM grants g JOIN agencies a ON a.id = g.agency_id \
            WHERE g.citizen_id = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, (AgencyId, String)>(SQL).bind(citizen).fetch_all(p).await?
        }))
    }

    /// One of a citizen's grants; `NotFound` for anyone else's.
    pub async fn citizen_grant(
        &self,
        citizen: CitizenId,
        id: GrantId,
    ) -> Result<GrantRow, StoreError> {
        let sql = format!("SELECT {COLUMNS}, {ACKS} FROM grants WHERE id = $1 AND citizen_id = $2");
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, GrantRow>(sqlx::AssertSqlSafe(sql)).bind(id).bind(citizen).fetch_one(p).await?
        }))
    }

    /// When the next active grant ends (Unix ms), if any does.
    pub async fn next_grant_expiry(&self) -> Result<Option<i64>, StoreError> {
        const SQL: &str = "SELECT MIN(expires_at) FROM grants WHERE status = 'active'";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, Option<i64>>(SQL).fetch_one(p).await?
        }))
    }

    /// Active grants of `agency`, with their citizens.
    pub async fn active_agency_grants(
        &self,
        agency: AgencyId,
    ) -> Result<Vec<(GrantId, CitizenId)>, StoreError> {
        const SQL: &str =
            "SELECT id, citizen_id FROM grants WHERE status = 'active' AND agency_id = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, (GrantId, CitizenId)>(SQL).bind(agency).fetch_all(p).await?
        }))
    }

    /// Ids of grants still marked active whose end has passed.
    pub async fn expired_active_grants(&self, now_ms: i64) -> Result<Vec<GrantId>, StoreError> {
        const SQL: &str = "SELECT id FROM grants WHERE status = 'active' AND expires_at <= $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, GrantId>(SQL).bind(now_ms).fetch_all(p).await?
        }))
    }

    /// Any grant by id.
    pub async fn grant(&self, id: GrantId) -> Result<GrantRow, StoreError> {
        let sql = format!("SELECT {COLUMNS}, {ACKS} FROM grants WHERE id = $1");
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, GrantRow>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_one(p).await?
        }))
    }

    /// An agency's grants, newest first, after the cursor `(created_at, id)`.
    pub async fn agency_grants(
        &self,
        agency: AgencyId,
        after: Option<(i64, GrantId)>,
        limit: i64,
    ) -> Result<Vec<GrantRow>, StoreError> {
        let (at, id) = after.unwrap_or((i64::MAX, GrantId::from_uuid(Uuid::max())));
        let sql = format!(
            "SELECT {COLUMNS}, {ACKS} FROM grants WHERE agency_id = $1 AND (created_at < $2 OR (created_at = $3 AND id < $4)) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, GrantRow>(sqlx::AssertSqlSafe(sql))
                .bind(agency).bind(at).bind(at).bind(id).bind(limit)
                .fetch_all(p).await?
        }))
    }

    /// The documents a grant can open now: live documents whose current version has a
    /// wrap under the grant's key.
    pub async fn grant_documents(
        &self,
        grant: GrantId,
    ) -> Result<Vec<crate::store::documents::DocumentRow>, StoreError> {
        const SQL: &str = "SELECT d.id, d.citizen_id, d.doc_type, d.current_version, d.issuer_agency_id, \
            d.created_at, d.updated_at, d.accepted_at FROM grant_key_wraps w JOIN documents d \
            ON d.id = w.document_id AND d.current_version = w.version \
            WHERE w.grant_id = $1 AND d.deleted_at IS NULL ORDER BY d.doc_type, d.id";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, crate::store::documents::DocumentRow>(SQL).bind(grant).fetch_all(p).await?
        }))
    }

    /// The wrap of one version under a grant's key, if the grant holds one.
    pub async fn grant_wrap(
        &self,
        grant: GrantId,
        document: DocumentId,
        version: i32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        const SQL: &str = "SELECT wrapped_key FROM grant_key_wraps \
            WHERE grant_id = $1 AND document_id = $2 AND version = $3";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, Vec<u8>>(SQL).bind(grant).bind(document).bind(version).fetch_optional(p).await?
        }))
    }

    /// Active grants still inside their window, and pending requests not yet expired.
    pub async fn live_counts(&self, now_ms: i64) -> Result<(i64, i64), StoreError> {
        const GRANTS: &str =
            "SELECT COUNT(*) FROM grants WHERE status = 'active' AND expires_at > $1";
        const REQUESTS: &str =
            "SELECT COUNT(*) FROM access_requests WHERE status = 'pending' AND expires_at > $1";
        Ok(on_engine!(self.pool(), p => {
            let g: i64 = sqlx::query_scalar(GRANTS).bind(now_ms).fetch_one(p).await?;
            let r: i64 = sqlx::query_scalar(REQUESTS).bind(now_ms).fetch_one(p).await?;
            (g, r)
        }))
    }

    /// The data-key wraps a grant holds.
    pub async fn grant_wraps(&self, grant: GrantId) -> Result<Vec<GrantWrapRow>, StoreError> {
        const SQL: &str = "SELECT grant_id, document_id, version, wrapped_key FROM grant_key_wraps \
            WHERE grant_id = $1 ORDER BY document_id, version";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, GrantWrapRow>(SQL).bind(grant).fetch_all(p).await?
        }))
    }
}

impl Tx {
    /// Destroys grants' wraps of every version of `document` but `current`: agencies read
    /// the current version only, so a replaced version's keys go with it.
    pub async fn delete_superseded_grant_wraps(
        &mut self,
        document: DocumentId,
        current: i32,
    ) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM grant_key_wraps WHERE document_id = $1 AND version <> $2";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(document).bind(current).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Inserts a grant.
    pub async fn insert_grant(&mut self, g: &GrantRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO grants ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
        );
        on_engine!(self, c => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(g.id)
                .bind(g.citizen_id)
                .bind(g.agency_id)
                .bind(g.request_id)
                .bind(&g.document_ids)
                .bind(&g.document_types)
                .bind(g.tier)
                .bind(&g.fields)
                .bind(&g.purpose_code)
                .bind(&g.purpose)
                .bind(&g.legal_basis)
                .bind(g.valid_from)
                .bind(g.expires_at)
                .bind(g.max_reads)
                .bind(g.reads)
                .bind(g.retention_days)
                .bind(g.status)
                .bind(g.status_changed_at)
                .bind(&g.grant_key_wrap)
                .bind(&g.receipt)
                .bind(&g.receipt_signature)
                .bind(g.created_at)
                .bind(g.emergency)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Inserts a data-key wrap of a grant.
    pub async fn insert_grant_wrap(&mut self, w: &GrantWrapRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO grant_key_wraps (grant_id, document_id, version, wrapped_key) \
            VALUES ($1, $2, $3, $4)";
        on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(w.grant_id)
                .bind(w.document_id)
                .bind(w.version)
                .bind(&w.wrapped_key)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Inserts a data-key wrap only while its grant is still active (a grant ended
    /// meanwhile gets none back); a wrap it already holds is kept as it is.
    pub async fn insert_grant_wrap_if_active(
        &mut self,
        w: &GrantWrapRow,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO grant_key_wraps (grant_id, document_id, version, wrapped_key) \
            SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM grants WHERE id = $5 AND status = 'active') \
            ON CONFLICT DO NOTHING";
        on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(w.grant_id)
                .bind(w.document_id)
                .bind(w.version)
                .bind(&w.wrapped_key)
                .bind(w.grant_id)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Ends an active grant with `status` and destroys its key and every wrap, in this
    /// transaction. Returns whether it was active.
    pub async fn end_grant(
        &mut self,
        id: GrantId,
        citizen: Option<CitizenId>,
        status: crate::status::GrantStatus,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE grants SET status = $1, status_changed_at = $2, grant_key_wrap = NULL \
            WHERE id = $3 AND status = 'active' AND ($4 IS NULL OR citizen_id = $5)";
        let n = on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(status)
                .bind(now_ms)
                .bind(id)
                .bind(citizen)
                .bind(citizen)
                .execute(&mut **c)
                .await?
                .rows_affected()
        });
        on_engine!(self, c => {
            sqlx::query("DELETE FROM grant_key_wraps WHERE grant_id = $1").bind(id).execute(&mut **c).await?;
        });
        // The agency hears of the end from the transaction that makes it (SPEC §6).
        if n == 1 {
            self.queue_grant_end(id, status, now_ms).await?;
        }
        Ok(n == 1)
    }
}
