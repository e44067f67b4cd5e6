//! Rows of `enrolment_codes`: fingerprints of one-time codes, each bound to a national ID.

use uuid::Uuid;

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// An enrolment code as stored: never the code, only its fingerprint.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnrolmentRow {
    pub id: Uuid,
    pub national_id_index: Vec<u8>,
    pub code_hash: Vec<u8>,
    /// `operator`, or `agency:<id>` for an enrolling agency.
    pub issued_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub superseded_at: Option<i64>,
}

impl Store {
    /// The code with this fingerprint, if it is unused, not superseded and not expired.
    pub async fn live_enrolment(
        &self,
        code_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<EnrolmentRow>, StoreError> {
        const SQL: &str = "SELECT id, national_id_index, code_hash, issued_by, created_at, expires_at, \
            used_at, superseded_at FROM enrolment_codes \
            WHERE code_hash = $1 AND used_at IS NULL AND superseded_at IS NULL AND expires_at > $2";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, EnrolmentRow>(SQL).bind(code_hash).bind(now_ms).fetch_optional(p).await?
        }))
    }
}

impl Tx {
    /// Stores a new code and supersedes every earlier live code for the same national ID.
    pub async fn insert_enrolment(&mut self, r: &EnrolmentRow) -> Result<(), StoreError> {
        const SUPERSEDE: &str = "UPDATE enrolment_codes SET superseded_at = $1 \
            WHERE national_id_index = $2 AND used_at IS NULL AND superseded_at IS NULL";
        const INSERT: &str = "INSERT INTO enrolment_codes (id, national_id_index, code_hash, issued_by, \
            created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
        on_engine!(self, c => {
            sqlx::query(SUPERSEDE).bind(r.created_at).bind(&r.national_id_index).execute(&mut **c).await?;
            sqlx::query(INSERT).bind(r.id).bind(&r.national_id_index).bind(&r.code_hash)
                .bind(&r.issued_by).bind(r.created_at).bind(r.expires_at).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Uses a code once; whether it was still live (a second use, or a race, gets `false`).
    pub async fn use_enrolment(&mut self, id: Uuid, now_ms: i64) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE enrolment_codes SET used_at = $1 \
            WHERE id = $2 AND used_at IS NULL AND superseded_at IS NULL AND expires_at > $3";
        Ok(on_engine!(self, c => {
            sqlx::query(SQL).bind(now_ms).bind(id).bind(now_ms).execute(&mut **c).await?.rows_affected() == 1
        }))
    }
}
