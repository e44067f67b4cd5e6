//! Rows of `citizens` and `credentials`.

use uuid::Uuid;

use crate::ids::{AuditorId, CitizenId};

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// A citizen as stored: only a blind index of the national ID, everything personal sealed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CitizenRow {
    pub id: CitizenId,
    pub national_id_index: Vec<u8>,
    pub pseudonym: String,
    pub display_name_enc: Vec<u8>,
    pub public_key: Vec<u8>,
    pub secret_key_enc: Vec<u8>,
    pub passphrase_kdf: String,
    pub vault_key_passphrase: Vec<u8>,
    pub recovery_salt: Vec<u8>,
    pub vault_key_recovery: Vec<u8>,
    pub created_at: i64,
    /// How far the citizen has looked at their trail (inserts ignore it).
    pub activity_seen_seq: i64,
    /// The national ID sealed under the identity-escrow service key.
    pub national_id_escrow: Option<Vec<u8>>,
}

/// A passkey as stored (`passkey` is webauthn-rs's JSON form; it holds no secret).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialRow {
    pub id: Uuid,
    pub citizen_id: Option<CitizenId>,
    pub auditor_id: Option<AuditorId>,
    pub credential_id: Vec<u8>,
    pub passkey: String,
    pub label: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl Store {
    /// The citizen with this id.
    pub async fn citizen(&self, id: CitizenId) -> Result<CitizenRow, StoreError> {
        const SQL: &str = "SELECT id, national_id_index, pseudonym, display_name_enc, public_key, \
            secret_key_enc, passphrase_kdf, vault_key_passphrase, recovery_salt, vault_key_recovery, \
            created_at, activity_seen_seq, national_id_escrow FROM citizens WHERE id = $1 AND disabled_at IS NULL";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, CitizenRow>(SQL).bind(id).fetch_one(p).await?
        }))
    }

    /// The citizen with this pseudonym, if any.
    pub async fn citizen_by_pseudonym(
        &self,
        pseudonym: &str,
    ) -> Result<Option<CitizenRow>, StoreError> {
        const SQL: &str = "SELECT id, national_id_index, pseudonym, display_name_enc, public_key, \
            secret_key_enc, passphrase_kdf, vault_key_passphrase, recovery_salt, vault_key_recovery, \
            created_at, activity_seen_seq, national_id_escrow FROM citizens WHERE pseudonym = $1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, CitizenRow>(SQL).bind(pseudonym).fetch_optional(p).await?
        }))
    }

    /// The citizen whose national ID has this blind index, if any.
    pub async fn citizen_by_index(&self, index: &[u8]) -> Result<Option<CitizenRow>, StoreError> {
        const SQL: &str = "SELECT id, national_id_index, pseudonym, display_name_enc, public_key, \
            secret_key_enc, passphrase_kdf, vault_key_passphrase, recovery_salt, vault_key_recovery, \
            created_at, activity_seen_seq, national_id_escrow FROM citizens WHERE national_id_index = $1 AND disabled_at IS NULL";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, CitizenRow>(SQL).bind(index).fetch_optional(p).await?
        }))
    }

    /// Every passkey of a citizen, oldest first.
    pub async fn citizen_credentials(
        &self,
        citizen: CitizenId,
    ) -> Result<Vec<CredentialRow>, StoreError> {
        const SQL: &str = "SELECT id, citizen_id, auditor_id, credential_id, passkey, label, created_at, \
            last_used_at FROM credentials WHERE citizen_id = $1 ORDER BY created_at, id";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, CredentialRow>(SQL).bind(citizen).fetch_all(p).await?
        }))
    }

    /// Updates a passkey after use (its signature counter and backup state).
    pub async fn touch_credential(
        &self,
        credential_id: &[u8],
        passkey: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE credentials SET passkey = $1, last_used_at = $2 WHERE credential_id = $3";
        on_engine!(self.pool(), p => {
            sqlx::query(SQL).bind(passkey).bind(now_ms).bind(credential_id).execute(p).await?;
        });
        Ok(())
    }
}

impl Tx {
    /// Removes every passkey of a citizen (re-enrolment replaces them) and every session.
    pub async fn clear_citizen_access(&mut self, citizen: CitizenId) -> Result<(), StoreError> {
        const CREDENTIALS: &str = "DELETE FROM credentials WHERE citizen_id = $1";
        const SESSIONS: &str = "DELETE FROM sessions WHERE citizen_id = $1";
        on_engine!(self, c => {
            sqlx::query(CREDENTIALS).bind(citizen).execute(&mut **c).await?;
            sqlx::query(SESSIONS).bind(citizen).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Inserts a new citizen.
    pub async fn insert_citizen(&mut self, row: &CitizenRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO citizens (id, national_id_index, pseudonym, display_name_enc, \
            public_key, secret_key_enc, passphrase_kdf, vault_key_passphrase, recovery_salt, \
            vault_key_recovery, created_at, national_id_escrow) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
        on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(row.id)
                .bind(&row.national_id_index)
                .bind(&row.pseudonym)
                .bind(&row.display_name_enc)
                .bind(&row.public_key)
                .bind(&row.secret_key_enc)
                .bind(&row.passphrase_kdf)
                .bind(&row.vault_key_passphrase)
                .bind(&row.recovery_salt)
                .bind(&row.vault_key_recovery)
                .bind(row.created_at)
                .bind(&row.national_id_escrow)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Inserts a passkey.
    pub async fn insert_credential(&mut self, row: &CredentialRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO credentials (id, citizen_id, auditor_id, credential_id, passkey, \
            label, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(row.id)
                .bind(row.citizen_id)
                .bind(row.auditor_id)
                .bind(&row.credential_id)
                .bind(&row.passkey)
                .bind(&row.label)
                .bind(row.created_at)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Replaces the passphrase wrap of a citizen's vault key (and its KDF parameters).
    pub async fn set_passphrase_wrap(
        &mut self,
        citizen: CitizenId,
        kdf: &str,
        wrap: &[u8],
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE citizens SET passphrase_kdf = $1, vault_key_passphrase = $2 WHERE id = $3";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(kdf).bind(wrap).bind(citizen).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Replaces what is sealed under a citizen's vault key in the citizen row (after the
    /// vault key is rotated).
    pub async fn set_vault_sealed(
        &mut self,
        citizen: CitizenId,
        display_name_enc: &[u8],
        secret_key_enc: &[u8],
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE citizens SET display_name_enc = $1, secret_key_enc = $2 WHERE id = $3";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(display_name_enc).bind(secret_key_enc).bind(citizen).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Every data-key wrap under a citizen's vault key, read inside the transaction:
    /// `(document, version, wrap)`.
    pub async fn vault_data_key_wraps(
        &mut self,
        citizen: CitizenId,
    ) -> Result<Vec<(crate::ids::DocumentId, i32, Vec<u8>)>, StoreError> {
        const SQL: &str = "SELECT v.document_id, v.version, v.data_key_wrap FROM document_versions v \
            JOIN documents d ON d.id = v.document_id \
            WHERE d.citizen_id = $1 AND v.data_key_wrap IS NOT NULL";
        Ok(on_engine!(self, c => {
            sqlx::query_as::<_, (crate::ids::DocumentId, i32, Vec<u8>)>(SQL).bind(citizen).fetch_all(&mut **c).await?
        }))
    }

    /// Replaces one version's data-key wrap.
    pub async fn set_data_key_wrap(
        &mut self,
        document: crate::ids::DocumentId,
        version: i32,
        wrap: &[u8],
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE document_versions SET data_key_wrap = $1 WHERE document_id = $2 AND version = $3";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(wrap).bind(document).bind(version).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Replaces the recovery-code wrap of a citizen's vault key.
    pub async fn set_recovery_wrap(
        &mut self,
        citizen: CitizenId,
        salt: &[u8],
        wrap: &[u8],
    ) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE citizens SET recovery_salt = $1, vault_key_recovery = $2 WHERE id = $3";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(salt).bind(wrap).bind(citizen).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// The number of passkeys a citizen has, counted inside the transaction.
    pub async fn count_citizen_credentials(
        &mut self,
        citizen: CitizenId,
    ) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM credentials WHERE citizen_id = $1";
        Ok(on_engine!(self, c => {
            sqlx::query_scalar::<_, i64>(SQL).bind(citizen).fetch_one(&mut **c).await?
        }))
    }

    /// Deletes one of a citizen's passkeys; `NotFound` if it is not theirs.
    pub async fn delete_citizen_credential(
        &mut self,
        citizen: CitizenId,
        id: Uuid,
    ) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM credentials WHERE id = $1 AND citizen_id = $2";
        let n = on_engine!(self, c => {
            sqlx::query(SQL).bind(id).bind(citizen).execute(&mut **c).await?.rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
