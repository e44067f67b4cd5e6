//! Rows of `agencies` and `agency_keys`.

use uuid::Uuid;

use crate::ids::{AgencyId, CitizenId};

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// An agency as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgencyRow {
    pub id: AgencyId,
    pub name: String,
    pub level: String,
    pub is_consumer: bool,
    pub is_issuer: bool,
    pub issuer_public_key: Option<Vec<u8>>,
    /// The document types an issuer may deposit (a JSON list).
    pub issuer_types: String,
    /// Issues enrolment codes (a service hall).
    pub is_enroller: bool,
    /// Declares guardianships (a court, a civil-affairs office).
    pub is_guardianship_authority: bool,
    /// Breaks the glass: emergency reads of what citizens allowed in advance (SPEC §6).
    pub is_emergency: bool,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// An API key as stored: only its SHA-256 and a short readable prefix.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgencyKeyRow {
    pub id: Uuid,
    pub agency_id: AgencyId,
    pub prefix: String,
    pub key_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// An issuer key as registered: when, until when it was current, and whether it was
/// revoked as compromised (and since when).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IssuerKeyRow {
    pub agency_id: AgencyId,
    pub public_key: Vec<u8>,
    pub registered_at: i64,
    pub retired_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub compromised_from: Option<i64>,
}

impl Store {
    /// The first answer given to `agency` for Idempotency-Key `key`: the request's
    /// fingerprint, the status and the body.
    pub async fn idempotent_answer(
        &self,
        agency: AgencyId,
        key: &str,
    ) -> Result<Option<(Vec<u8>, i32, String)>, StoreError> {
        const SQL: &str = "SELECT request_hash, status, body FROM idempotency_keys \
            WHERE agency_id = $1 AND key = $2 AND status IS NOT NULL AND body IS NOT NULL";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, (Vec<u8>, i32, String)>(SQL)
                .bind(agency)
                .bind(key)
                .fetch_optional(p)
                .await?
        }))
    }

    /// The agency with this id.
    pub async fn agency(&self, id: AgencyId) -> Result<AgencyRow, StoreError> {
        const SQL: &str = "SELECT id, name, level, is_consumer, is_issuer, issuer_public_key, issuer_types, \
            is_enroller, is_guardianship_authority, is_emergency, created_at, disabled_at FROM agencies WHERE id = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, AgencyRow>(SQL).bind(id).fetch_one(p).await?
        }))
    }

    /// The agencies that have asked this citizen for access, in one query.
    pub async fn agencies_asking(&self, citizen: CitizenId) -> Result<Vec<AgencyRow>, StoreError> {
        const SQL: &str = "SELECT id, name, level, is_consumer, is_issuer, issuer_public_key, issuer_types, \
            is_enroller, is_guardianship_authority, is_emergency, created_at, disabled_at FROM agencies WHERE id IN (SELECT agency_id FROM access_requests WHERE citizen_id = $1)";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, AgencyRow>(SQL).bind(citizen).fetch_all(p).await?
        }))
    }

    /// Agencies that may receive grants (enabled consumers), highest level first.
    pub async fn consumer_agencies(&self) -> Result<Vec<AgencyRow>, StoreError> {
        const SQL: &str = "SELECT id, name, level, is_consumer, is_issuer, issuer_public_key, issuer_types, \
            is_enroller, is_guardianship_authority, is_emergency, created_at, disabled_at FROM agencies WHERE is_consumer AND disabled_at IS NULL ORDER BY name, id";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, AgencyRow>(SQL).fetch_all(p).await?
        }))
    }

    /// An issuer key as registered for `agency`, if it ever was.
    pub async fn issuer_key(
        &self,
        agency: AgencyId,
        key: &[u8],
    ) -> Result<Option<IssuerKeyRow>, StoreError> {
        const SQL: &str = "SELECT agency_id, public_key, registered_at, retired_at, revoked_at, \
            compromised_from FROM issuer_keys WHERE agency_id = $1 AND public_key = $2";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, IssuerKeyRow>(SQL).bind(agency).bind(key).fetch_optional(p).await?
        }))
    }

    /// The key whose hash this is, with its agency.
    pub async fn agency_key_by_hash(
        &self,
        hash: &[u8],
    ) -> Result<Option<AgencyKeyRow>, StoreError> {
        const SQL: &str = "SELECT id, agency_id, prefix, key_hash, created_at, expires_at \
            FROM agency_keys WHERE key_hash = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, AgencyKeyRow>(SQL).bind(hash).fetch_optional(p).await?
        }))
    }
}

impl Tx {
    /// Keeps the answer to `agency`'s request with Idempotency-Key `key`, in the
    /// transaction of the change it answers; a second one for the key is a `Conflict`.
    pub async fn insert_idempotent_answer(
        &mut self,
        agency: AgencyId,
        key: &str,
        request_hash: &[u8],
        status: i32,
        body: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO idempotency_keys \
            (agency_id, key, request_hash, status, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
        on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(agency)
                .bind(key)
                .bind(request_hash)
                .bind(status)
                .bind(body)
                .bind(now_ms)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Inserts an agency.
    pub async fn insert_agency(&mut self, row: &AgencyRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO agencies (id, name, level, is_consumer, is_issuer, issuer_public_key, \
            issuer_types, is_enroller, is_guardianship_authority, is_emergency, created_at, disabled_at) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
        on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(row.id)
                .bind(&row.name)
                .bind(&row.level)
                .bind(row.is_consumer)
                .bind(row.is_issuer)
                .bind(&row.issuer_public_key)
                .bind(&row.issuer_types)
                .bind(row.is_enroller)
                .bind(row.is_guardianship_authority)
                .bind(row.is_emergency)
                .bind(row.created_at)
                .bind(row.disabled_at)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Ends every current key of an agency at `until` (now, or after an overlap); keys
    /// already ending sooner keep their end. Returns how many keys changed.
    pub async fn expire_agency_keys(
        &mut self,
        agency: AgencyId,
        until: i64,
    ) -> Result<u64, StoreError> {
        const SQL: &str = "UPDATE agency_keys SET expires_at = $1 \
            WHERE agency_id = $2 AND (expires_at IS NULL OR expires_at > $3)";
        Ok(on_engine!(self, c => {
            sqlx::query(SQL).bind(until).bind(agency).bind(until).execute(&mut **c).await?.rows_affected()
        }))
    }

    /// Disables an agency. Returns whether it was enabled.
    pub async fn disable_agency(
        &mut self,
        agency: AgencyId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE agencies SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL";
        Ok(on_engine!(self, c => {
            sqlx::query(SQL).bind(now_ms).bind(agency).execute(&mut **c).await?.rows_affected() == 1
        }))
    }

    /// Makes an agency an issuer with this Ed25519 public key: the key is registered (kept
    /// for the checks of what it signed) and every other current key of the agency retired.
    pub async fn set_issuer_key(
        &mut self,
        agency: AgencyId,
        key: &[u8],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SET: &str =
            "UPDATE agencies SET is_issuer = $1, issuer_public_key = $2 WHERE id = $3";
        const REGISTER: &str = "INSERT INTO issuer_keys (agency_id, public_key, registered_at) \
            VALUES ($1, $2, $3) ON CONFLICT (agency_id, public_key) DO NOTHING";
        const RETIRE: &str = "UPDATE issuer_keys SET retired_at = $1 \
            WHERE agency_id = $2 AND public_key <> $3 AND retired_at IS NULL";
        Ok(on_engine!(self, c => {
            sqlx::query(REGISTER).bind(agency).bind(key).bind(now_ms).execute(&mut **c).await?;
            sqlx::query(RETIRE).bind(now_ms).bind(agency).bind(key).execute(&mut **c).await?;
            sqlx::query(SET).bind(true).bind(key).bind(agency).execute(&mut **c).await?.rows_affected() == 1
        }))
    }

    /// Sets the document types an issuer may deposit (a JSON list).
    pub async fn set_issuer_types(
        &mut self,
        agency: AgencyId,
        types: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE agencies SET issuer_types = $1 WHERE id = $2";
        Ok(on_engine!(self, c => {
            sqlx::query(SQL).bind(types).bind(agency).execute(&mut **c).await?.rows_affected() == 1
        }))
    }

    /// Revokes an issuer key as compromised since `compromised_from`; a current key stops
    /// signing deposits at once. Returns whether the key was registered and not yet revoked.
    pub async fn revoke_issuer_key(
        &mut self,
        agency: AgencyId,
        key: &[u8],
        compromised_from: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const REVOKE: &str = "UPDATE issuer_keys SET revoked_at = $1, compromised_from = $2, \
            retired_at = COALESCE(retired_at, $3) \
            WHERE agency_id = $4 AND public_key = $5 AND revoked_at IS NULL";
        const UNSET: &str = "UPDATE agencies SET issuer_public_key = NULL \
            WHERE id = $1 AND issuer_public_key = $2";
        Ok(on_engine!(self, c => {
            let revoked = sqlx::query(REVOKE)
                .bind(now_ms)
                .bind(compromised_from)
                .bind(now_ms)
                .bind(agency)
                .bind(key)
                .execute(&mut **c)
                .await?
                .rows_affected()
                == 1;
            sqlx::query(UNSET).bind(agency).bind(key).execute(&mut **c).await?;
            revoked
        }))
    }

    /// Inserts an API key.
    pub async fn insert_agency_key(&mut self, row: &AgencyKeyRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO agency_keys (id, agency_id, prefix, key_hash, created_at, expires_at) \
            VALUES ($1, $2, $3, $4, $5, $6)";
        on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(row.id)
                .bind(row.agency_id)
                .bind(&row.prefix)
                .bind(&row.key_hash)
                .bind(row.created_at)
                .bind(row.expires_at)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }
}
