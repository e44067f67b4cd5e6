//! Rows of `access_requests`.

use crate::ids::{AccessRequestId, AgencyId, CitizenId, GrantId};

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// An agency's request to a citizen. `citizen_id` is NULL when the national ID is not
/// registered: the agency gets the same answer either way.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
    pub id: AccessRequestId,
    pub agency_id: AgencyId,
    pub citizen_id: Option<CitizenId>,
    pub document_types: String,
    pub tier: crate::status::Tier,
    pub fields: String,
    pub purpose_code: String,
    pub purpose: String,
    pub legal_basis: Option<String>,
    pub officer_id: Option<String>,
    pub case_id: Option<String>,
    pub duration_days: i32,
    pub retention_days: i32,
    pub status: crate::status::RequestStatus,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
    pub grant_id: Option<GrantId>,
}

impl RequestRow {
    /// The status now: a stored `pending` request past its end is `expired`.
    pub fn status_at(&self, now_ms: i64) -> crate::status::RequestStatus {
        self.status.at(self.expires_at, now_ms)
    }
}

const COLUMNS: &str = "id, agency_id, citizen_id, document_types, tier, fields, purpose_code, purpose, \
    legal_basis, officer_id, case_id, duration_days, retention_days, status, created_at, expires_at, \
    decided_at, grant_id";

impl Store {
    /// A citizen's requests, newest first.
    pub async fn citizen_requests(
        &self,
        citizen: CitizenId,
    ) -> Result<Vec<RequestRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM access_requests WHERE citizen_id = $1 ORDER BY created_at DESC, id"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, RequestRow>(sqlx::AssertSqlSafe(sql)).bind(citizen).fetch_all(p).await?
        }))
    }

    /// One of an agency's requests; `NotFound` for anyone else's.
    pub async fn agency_request(
        &self,
        agency: AgencyId,
        id: AccessRequestId,
    ) -> Result<RequestRow, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM access_requests WHERE id = $1 AND agency_id = $2");
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, RequestRow>(sqlx::AssertSqlSafe(sql)).bind(id).bind(agency).fetch_one(p).await?
        }))
    }

    /// One of a citizen's requests; `NotFound` for anyone else's.
    pub async fn citizen_request(
        &self,
        citizen: CitizenId,
        id: AccessRequestId,
    ) -> Result<RequestRow, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM access_requests WHERE id = $1 AND citizen_id = $2");
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, RequestRow>(sqlx::AssertSqlSafe(sql)).bind(id).bind(citizen).fetch_one(p).await?
        }))
    }
}

impl Tx {
    /// Stores a new request.
    pub async fn insert_request(&mut self, r: &RequestRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO access_requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18)"
        );
        on_engine!(self, c => {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(r.id)
                .bind(r.agency_id)
                .bind(r.citizen_id)
                .bind(&r.document_types)
                .bind(r.tier)
                .bind(&r.fields)
                .bind(&r.purpose_code)
                .bind(&r.purpose)
                .bind(&r.legal_basis)
                .bind(&r.officer_id)
                .bind(&r.case_id)
                .bind(r.duration_days)
                .bind(r.retention_days)
                .bind(r.status)
                .bind(r.created_at)
                .bind(r.expires_at)
                .bind(r.decided_at)
                .bind(r.grant_id)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Records a decision on a request that is still pending and unexpired; returns whether
    /// this call decided it.
    pub async fn decide_request(
        &mut self,
        id: AccessRequestId,
        status: crate::status::RequestStatus,
        grant_id: Option<GrantId>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE access_requests SET status = $1, grant_id = $2, decided_at = $3 \
            WHERE id = $4 AND status = 'pending' AND expires_at > $5";
        let n = on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(status)
                .bind(grant_id)
                .bind(now_ms)
                .bind(id)
                .bind(now_ms)
                .execute(&mut **c)
                .await?
                .rows_affected()
        });
        // The agency hears of the decision from the transaction that makes it (SPEC §6).
        if n == 1 {
            self.queue_request_decided(id, status, grant_id, now_ms)
                .await?;
        }
        Ok(n == 1)
    }
}
