//! Rows of `citizen_emergency_types`, `emergency_key_wraps` and `emergency_accesses`
//! (SPEC §6, break-glass).

use crate::ids::{AgencyId, AuditorId, CitizenId, DocumentId, GrantId};

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// A data key wrapped under the `emergency-wrap` service key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmergencyWrapRow {
    pub document_id: DocumentId,
    pub version: i32,
    pub citizen_id: CitizenId,
    pub doc_type: String,
    pub wrapped_key: Vec<u8>,
}

/// One use of emergency access: the grant it made, who asked and why, when the citizen
/// is told, and the auditor's verdict.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmergencyAccessRow {
    pub grant_id: GrantId,
    pub agency_id: AgencyId,
    pub citizen_id: CitizenId,
    pub officer_id: String,
    pub case_id: String,
    pub justification: String,
    pub legal_basis: String,
    pub created_at: i64,
    pub disclose_at: i64,
    /// `justified` or `unjustified`; none until reviewed.
    pub verdict: Option<String>,
    pub review_note: Option<String>,
    pub reviewed_by: Option<AuditorId>,
    pub reviewed_at: Option<i64>,
}

/// An emergency access with what an auditor or the citizen is shown beside it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmergencyListed {
    #[sqlx(flatten)]
    pub access: EmergencyAccessRow,
    pub agency_name: String,
    pub pseudonym: String,
    pub document_types: String,
    pub tier: crate::status::Tier,
    pub expires_at: i64,
    pub reads: i32,
    pub status: crate::status::GrantStatus,
}

/// Per agency: uses, unreviewed uses and uses judged unjustified.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmergencyTally {
    pub agency_id: AgencyId,
    pub agency_name: String,
    pub uses: i64,
    pub unreviewed: i64,
    pub unjustified: i64,
}

const ACCESS: &str = "e.grant_id, e.agency_id, e.citizen_id, e.officer_id, e.case_id, \
    e.justification, e.legal_basis, e.created_at, e.disclose_at, e.verdict, e.review_note, \
    e.reviewed_by, e.reviewed_at";

const LISTED_FROM: &str = "a.name AS agency_name, c.pseudonym, g.document_types, g.tier, \
    g.expires_at, g.reads, g.status FROM emergency_accesses e \
    JOIN agencies a ON a.id = e.agency_id JOIN citizens c ON c.id = e.citizen_id \
    JOIN grants g ON g.id = e.grant_id";

impl Store {
    /// The types a citizen made emergency-available, sorted.
    pub async fn emergency_types(&self, citizen: CitizenId) -> Result<Vec<String>, StoreError> {
        const SQL: &str =
            "SELECT doc_type FROM citizen_emergency_types WHERE citizen_id = $1 ORDER BY doc_type";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, String>(SQL).bind(citizen).fetch_all(p).await?
        }))
    }

    /// The emergency wraps of the current versions of a citizen's live, accepted documents
    /// whose types are still emergency-available: what an emergency grant is keyed from.
    pub async fn emergency_wraps(
        &self,
        citizen: CitizenId,
    ) -> Result<Vec<EmergencyWrapRow>, StoreError> {
        const SQL: &str = "SELECT w.document_id, w.version, w.citizen_id, w.doc_type, w.wrapped_key \
            FROM emergency_key_wraps w \
            JOIN documents d ON d.id = w.document_id AND d.current_version = w.version \
            JOIN citizen_emergency_types t ON t.citizen_id = w.citizen_id AND t.doc_type = w.doc_type \
            WHERE w.citizen_id = $1 AND d.deleted_at IS NULL AND d.accepted_at IS NOT NULL \
            ORDER BY w.document_id";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, EmergencyWrapRow>(SQL).bind(citizen).fetch_all(p).await?
        }))
    }

    /// Every emergency wrap there is (what the operator side alone could open).
    pub async fn all_emergency_wraps(&self) -> Result<Vec<EmergencyWrapRow>, StoreError> {
        const SQL: &str = "SELECT document_id, version, citizen_id, doc_type, wrapped_key \
            FROM emergency_key_wraps ORDER BY document_id, version";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, EmergencyWrapRow>(SQL).fetch_all(p).await?
        }))
    }

    /// How many emergency grants `agency` was given for `citizen` since `since_ms`.
    pub async fn recent_emergency_accesses(
        &self,
        agency: AgencyId,
        citizen: CitizenId,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM emergency_accesses \
            WHERE agency_id = $1 AND citizen_id = $2 AND created_at >= $3";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, i64>(SQL).bind(agency).bind(citizen).bind(since_ms).fetch_one(p).await?
        }))
    }

    /// One emergency access, by its grant.
    pub async fn emergency_access(
        &self,
        grant: GrantId,
    ) -> Result<Option<EmergencyListed>, StoreError> {
        let sql = format!("SELECT {ACCESS}, {LISTED_FROM} WHERE e.grant_id = $1");
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, EmergencyListed>(sqlx::AssertSqlSafe(sql)).bind(grant).fetch_optional(p).await?
        }))
    }

    /// Emergency accesses for the auditors' queue, newest first: unreviewed only, or all.
    pub async fn emergency_queue(
        &self,
        unreviewed_only: bool,
        limit: i64,
    ) -> Result<Vec<EmergencyListed>, StoreError> {
        let filter = if unreviewed_only {
            "WHERE e.verdict IS NULL"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {ACCESS}, {LISTED_FROM} {filter} ORDER BY e.created_at DESC, e.grant_id LIMIT $1"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, EmergencyListed>(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(p).await?
        }))
    }

    /// Unreviewed emergency accesses made before `before_ms` (overdue for review).
    pub async fn overdue_emergency_reviews(
        &self,
        before_ms: i64,
    ) -> Result<Vec<EmergencyListed>, StoreError> {
        let sql = format!(
            "SELECT {ACCESS}, {LISTED_FROM} WHERE e.verdict IS NULL AND e.created_at < $1 \
             ORDER BY e.created_at, e.grant_id"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, EmergencyListed>(sqlx::AssertSqlSafe(sql)).bind(before_ms).fetch_all(p).await?
        }))
    }

    /// Uses, unreviewed uses and unjustified uses per agency that ever broke the glass.
    pub async fn emergency_tally(&self) -> Result<Vec<EmergencyTally>, StoreError> {
        const SQL: &str = "SELECT e.agency_id, a.name AS agency_name, COUNT(*) AS uses, \
            CAST(SUM(CASE WHEN e.verdict IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS unreviewed, \
            CAST(SUM(CASE WHEN e.verdict = 'unjustified' THEN 1 ELSE 0 END) AS BIGINT) AS unjustified \
            FROM emergency_accesses e JOIN agencies a ON a.id = e.agency_id \
            GROUP BY e.agency_id, a.name ORDER BY a.name, e.agency_id";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, EmergencyTally>(SQL).fetch_all(p).await?
        }))
    }

    /// A citizen's emergency accesses already disclosed to her at `now_ms`, newest first.
    pub async fn disclosed_emergency_accesses(
        &self,
        citizen: CitizenId,
        now_ms: i64,
    ) -> Result<Vec<EmergencyListed>, StoreError> {
        let sql = format!(
            "SELECT {ACCESS}, {LISTED_FROM} WHERE e.citizen_id = $1 AND e.disclose_at <= $2 \
             ORDER BY e.created_at DESC, e.grant_id"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, EmergencyListed>(sqlx::AssertSqlSafe(sql)).bind(citizen).bind(now_ms).fetch_all(p).await?
        }))
    }

    /// The citizen's emergency grants whose disclosure is still delayed at `now_ms`.
    pub async fn undisclosed_emergency_grants(
        &self,
        citizen: CitizenId,
        now_ms: i64,
    ) -> Result<Vec<GrantId>, StoreError> {
        const SQL: &str =
            "SELECT grant_id FROM emergency_accesses WHERE citizen_id = $1 AND disclose_at > $2";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, GrantId>(SQL).bind(citizen).bind(now_ms).fetch_all(p).await?
        }))
    }
}

impl Tx {
    /// Makes `doc_type` emergency-available for `citizen` (no change if it was).
    pub async fn add_emergency_type(
        &mut self,
        citizen: CitizenId,
        doc_type: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO citizen_emergency_types (citizen_id, doc_type, since) \
            VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
        on_engine!(self, tx => {
            sqlx::query(SQL).bind(citizen).bind(doc_type).bind(now_ms).execute(&mut **tx).await?;
        });
        Ok(())
    }

    /// Withdraws `doc_type` from emergency availability and destroys its wraps.
    pub async fn remove_emergency_type(
        &mut self,
        citizen: CitizenId,
        doc_type: &str,
    ) -> Result<(), StoreError> {
        const TYPE: &str =
            "DELETE FROM citizen_emergency_types WHERE citizen_id = $1 AND doc_type = $2";
        const WRAPS: &str =
            "DELETE FROM emergency_key_wraps WHERE citizen_id = $1 AND doc_type = $2";
        on_engine!(self, tx => {
            sqlx::query(TYPE).bind(citizen).bind(doc_type).execute(&mut **tx).await?;
            sqlx::query(WRAPS).bind(citizen).bind(doc_type).execute(&mut **tx).await?;
        });
        Ok(())
    }

    /// Stores an emergency wrap while its type is still emergency-available for its owner
    /// (none is added for a type withdrawn meanwhile), replacing the wraps of the
    /// document's older versions. Returns whether it was stored.
    pub async fn insert_emergency_wrap(
        &mut self,
        w: &EmergencyWrapRow,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO emergency_key_wraps \
            (document_id, version, citizen_id, doc_type, wrapped_key) \
            SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM citizen_emergency_types \
            WHERE citizen_id = $3 AND doc_type = $4) ON CONFLICT DO NOTHING";
        // Only the current version is kept: a new one replaces its predecessor's wrap.
        const OLDER: &str =
            "DELETE FROM emergency_key_wraps WHERE document_id = $1 AND version < $2";
        let done = on_engine!(self, tx => {
            sqlx::query(OLDER).bind(w.document_id).bind(w.version).execute(&mut **tx).await?;
            sqlx::query(SQL).bind(w.document_id).bind(w.version).bind(w.citizen_id)
                .bind(&w.doc_type).bind(&w.wrapped_key).execute(&mut **tx).await?.rows_affected()
        });
        Ok(done == 1)
    }

    /// Records an emergency access (in the transaction that makes its grant).
    pub async fn insert_emergency_access(
        &mut self,
        e: &EmergencyAccessRow,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO emergency_accesses (grant_id, agency_id, citizen_id, officer_id, \
            case_id, justification, legal_basis, created_at, disclose_at, verdict, review_note, \
            reviewed_by, reviewed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
        on_engine!(self, tx => {
            sqlx::query(SQL).bind(e.grant_id).bind(e.agency_id).bind(e.citizen_id)
                .bind(&e.officer_id).bind(&e.case_id).bind(&e.justification).bind(&e.legal_basis)
                .bind(e.created_at).bind(e.disclose_at).bind(&e.verdict).bind(&e.review_note)
                .bind(e.reviewed_by).bind(e.reviewed_at)
                .execute(&mut **tx).await?;
        });
        Ok(())
    }

    /// Records an auditor's verdict on an emergency access not yet reviewed. Returns
    /// whether it was unreviewed (and so is now reviewed).
    pub async fn review_emergency_access(
        &mut self,
        grant: GrantId,
        verdict: &str,
        note: &str,
        auditor: AuditorId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE emergency_accesses SET verdict = $1, review_note = $2, \
            reviewed_by = $3, reviewed_at = $4 WHERE grant_id = $5 AND verdict IS NULL";
        let done = on_engine!(self, tx => {
            sqlx::query(SQL).bind(verdict).bind(note).bind(auditor).bind(now_ms).bind(grant)
                .execute(&mut **tx).await?.rows_affected()
        });
        Ok(done == 1)
    }

    /// The citizen's live emergency grants covering any of `types`.
    pub async fn live_emergency_grants(
        &mut self,
        citizen: CitizenId,
        now_ms: i64,
    ) -> Result<Vec<(GrantId, String)>, StoreError> {
        const SQL: &str = "SELECT id, document_types FROM grants WHERE citizen_id = $1 \
            AND emergency AND status = 'active' AND expires_at > $2";
        Ok(on_engine!(self, tx => {
            sqlx::query_as::<_, (GrantId, String)>(SQL).bind(citizen).bind(now_ms).fetch_all(&mut **tx).await?
        }))
    }
}
