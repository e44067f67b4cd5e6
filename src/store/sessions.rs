//! Rows of `sessions`, `ceremonies` and `rate_limits`: the short-lived state every node
//! must share.

use uuid::Uuid;

use crate::ids::{AuditorId, CitizenId};

use crate::on_engine;

use super::{Store, StoreError};

/// A session as stored. `id_hash` is SHA-256 of the cookie secret; the vault key wrap is
/// under a key only the cookie secret derives.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id_hash: Vec<u8>,
    pub citizen_id: Option<CitizenId>,
    pub auditor_id: Option<AuditorId>,
    pub csrf_hash: Vec<u8>,
    pub vault_key_wrap: Option<Vec<u8>>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    /// When a passkey was last proved in this session (step-up).
    pub verified_at: Option<i64>,
}

/// A WebAuthn ceremony between start and finish. `state` is sealed under a key derived
/// from the ceremony secret held by the client.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CeremonyRow {
    pub id: Uuid,
    pub kind: String,
    pub state: String,
    pub subject: Option<Vec<u8>>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Store {
    /// The session with this id hash, if it exists.
    pub async fn session(&self, id_hash: &[u8]) -> Result<Option<SessionRow>, StoreError> {
        const SQL: &str = "SELECT id_hash, citizen_id, auditor_id, csrf_hash, vault_key_wrap, \
            created_at, last_seen_at, expires_at, verified_at FROM sessions WHERE id_hash = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, SessionRow>(SQL).bind(id_hash).fetch_optional(p).await?
        }))
    }

    /// Records activity on a session (for the idle timeout).
    pub async fn touch_session(&self, id_hash: &[u8], now_ms: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2";
        on_engine!(self.pool(), p => {
            sqlx::query(SQL).bind(now_ms).bind(id_hash).execute(p).await?;
        });
        Ok(())
    }

    /// Ends one session.
    pub async fn delete_session(&self, id_hash: &[u8]) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM sessions WHERE id_hash = $1";
        on_engine!(self.pool(), p => {
            sqlx::query(SQL).bind(id_hash).execute(p).await?;
        });
        Ok(())
    }

    /// Removes sessions past their absolute or idle limit, expired ceremonies, and rate
    /// counters whose window ended before `counters_before_ms`.
    pub async fn sweep_expired(
        &self,
        now_ms: i64,
        idle_before_ms: i64,
        counters_before_ms: i64,
    ) -> Result<(), StoreError> {
        on_engine!(self.pool(), p => {
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
                .bind(now_ms)
                .bind(idle_before_ms)
                .execute(p)
                .await?;
            sqlx::query("DELETE FROM ceremonies WHERE expires_at <= $1").bind(now_ms).execute(p).await?;
            sqlx::query("DELETE FROM rate_limits WHERE window_start <= $1")
                .bind(counters_before_ms)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Stores a ceremony.
    pub async fn insert_ceremony(&self, row: &CeremonyRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO ceremonies (id, kind, state, subject, created_at, expires_at) \
            VALUES ($1, $2, $3, $4, $5, $6)";
        on_engine!(self.pool(), p => {
            sqlx::query(SQL)
                .bind(row.id)
                .bind(&row.kind)
                .bind(&row.state)
                .bind(&row.subject)
                .bind(row.created_at)
                .bind(row.expires_at)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// The kind of a ceremony that is still open, without taking it.
    pub async fn ceremony_kind(&self, id: Uuid) -> Result<Option<String>, StoreError> {
        const SQL: &str = "SELECT kind FROM ceremonies WHERE id = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, String>(SQL).bind(id).fetch_optional(p).await?
        }))
    }

    /// Removes and returns a ceremony in one statement, so it can be finished only once
    /// even when two finishes race.
    pub async fn take_ceremony(&self, id: Uuid) -> Result<Option<CeremonyRow>, StoreError> {
        const SQL: &str = "DELETE FROM ceremonies WHERE id = $1 \
            RETURNING id, kind, state, subject, created_at, expires_at";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, CeremonyRow>(SQL).bind(id).fetch_optional(p).await?
        }))
    }

    /// Takes back one hit counted in `bucket`'s window that started at `window_start`.
    pub async fn rate_release(&self, bucket: &str, window_start: i64) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE rate_limits SET hits = hits - 1 \
            WHERE bucket = $1 AND window_start = $2 AND hits > 0";
        on_engine!(self.pool(), p => {
            sqlx::query(SQL).bind(bucket).bind(window_start).execute(p).await?;
        });
        Ok(())
    }

    /// Counts one hit in a fixed window of `window_ms` for `bucket`; returns the hits in the
    /// current window (this one included) and when the window started.
    /// A bucket's hits and window start as they stand (no write), if it exists.
    pub async fn rate_peek(&self, bucket: &str) -> Result<Option<(i64, i64)>, StoreError> {
        const SQL: &str = "SELECT hits, window_start FROM rate_limits WHERE bucket = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, (i64, i64)>(SQL).bind(bucket).fetch_optional(p).await?
        }))
    }

    pub async fn rate_hit(
        &self,
        bucket: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<(i64, i64), StoreError> {
        const SQL: &str = "INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, $2, 1) \
            ON CONFLICT (bucket) DO UPDATE SET \
              hits = CASE WHEN rate_limits.window_start <= $3 THEN 1 ELSE rate_limits.hits + 1 END, \
              window_start = CASE WHEN rate_limits.window_start <= $3 THEN $2 ELSE rate_limits.window_start END \
            RETURNING hits, window_start";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, (i64, i64)>(SQL)
                .bind(bucket)
                .bind(now_ms)
                .bind(now_ms - window_ms)
                .fetch_one(p)
                .await?
        }))
    }
}

impl super::Tx {
    /// Sets or clears the session's wrapped vault key.
    pub async fn set_session_vault(
        &mut self,
        id_hash: &[u8],
        wrap: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE sessions SET vault_key_wrap = $1 WHERE id_hash = $2";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(wrap).bind(id_hash).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Stores a new session.
    pub async fn insert_session(&mut self, row: &SessionRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sessions (id_hash, citizen_id, auditor_id, csrf_hash, \
            vault_key_wrap, created_at, last_seen_at, expires_at, verified_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(&row.id_hash)
                .bind(row.citizen_id)
                .bind(row.auditor_id)
                .bind(&row.csrf_hash)
                .bind(&row.vault_key_wrap)
                .bind(row.created_at)
                .bind(row.last_seen_at)
                .bind(row.expires_at)
                .bind(row.verified_at)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Records a passkey proved in this session now (step-up).
    pub async fn set_session_verified(
        &mut self,
        id_hash: &[u8],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE sessions SET verified_at = $1 WHERE id_hash = $2";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(now_ms).bind(id_hash).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Ends every session of a citizen except `keep`.
    pub async fn delete_other_citizen_sessions(
        &mut self,
        citizen: CitizenId,
        keep: &[u8],
    ) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM sessions WHERE citizen_id = $1 AND id_hash <> $2";
        Ok(on_engine!(self, c => {
            sqlx::query(SQL).bind(citizen).bind(keep).execute(&mut **c).await?.rows_affected()
        }))
    }

    /// Ends every session of a citizen ("sign out everywhere"); returns how many.
    pub async fn delete_citizen_sessions(&mut self, citizen: CitizenId) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM sessions WHERE citizen_id = $1";
        Ok(on_engine!(self, c => {
            sqlx::query(SQL).bind(citizen).execute(&mut **c).await?.rows_affected()
        }))
    }
}
