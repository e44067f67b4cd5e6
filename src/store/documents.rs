//! Rows of `documents`, `document_versions` and `pending_blobs`.

use crate::ids::{AgencyId, CitizenId, DocumentId};

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// A document: who owns it, its type and latest version. Contents live in versions.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DocumentRow {
    pub id: DocumentId,
    pub citizen_id: CitizenId,
    pub doc_type: String,
    pub current_version: i32,
    pub issuer_agency_id: Option<AgencyId>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the citizen accepted it (at once for what they stored themselves); `None`
    /// for a deposit still `received`, which joins no grant.
    pub accepted_at: Option<i64>,
}

/// One version's sealed contents.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VersionRow {
    pub document_id: DocumentId,
    pub version: i32,
    pub data_key_wrap: Option<Vec<u8>>,
    pub sealed_deposit: Option<Vec<u8>>,
    pub meta_enc: Option<Vec<u8>>,
    pub blob_name: Option<String>,
    pub blob_size: Option<i64>,
    pub created_at: i64,
}

impl Store {
    /// Bytes a citizen's stored files take (every version of every live document).
    pub async fn citizen_stored_bytes(&self, citizen: CitizenId) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT CAST(COALESCE(SUM(v.blob_size), 0) AS BIGINT) FROM document_versions v \
            JOIN documents d ON d.id = v.document_id \
            WHERE d.citizen_id = $1 AND d.deleted_at IS NULL";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, i64>(SQL).bind(citizen).fetch_one(p).await?
        }))
    }

    /// A citizen's live documents, newest first.
    pub async fn citizen_documents(
        &self,
        citizen: CitizenId,
    ) -> Result<Vec<DocumentRow>, StoreError> {
        const SQL: &str = "SELECT id, citizen_id, doc_type, current_version, issuer_agency_id, created_at, \
            updated_at, accepted_at FROM documents WHERE citizen_id = $1 AND deleted_at IS NULL \
            ORDER BY doc_type, updated_at DESC";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, DocumentRow>(SQL).bind(citizen).fetch_all(p).await?
        }))
    }

    /// One live document of this citizen; `NotFound` for anyone else's.
    pub async fn citizen_document(
        &self,
        citizen: CitizenId,
        id: DocumentId,
    ) -> Result<DocumentRow, StoreError> {
        const SQL: &str = "SELECT id, citizen_id, doc_type, current_version, issuer_agency_id, created_at, \
            updated_at, accepted_at FROM documents WHERE id = $1 AND citizen_id = $2 AND deleted_at IS NULL";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, DocumentRow>(SQL).bind(id).bind(citizen).fetch_one(p).await?
        }))
    }

    /// The versions of a document, oldest first.
    pub async fn document_versions(
        &self,
        document: DocumentId,
    ) -> Result<Vec<VersionRow>, StoreError> {
        const SQL: &str = "SELECT document_id, version, data_key_wrap, sealed_deposit, meta_enc, blob_name, \
            blob_size, created_at FROM document_versions WHERE document_id = $1 ORDER BY version";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, VersionRow>(SQL).bind(document).fetch_all(p).await?
        }))
    }

    /// Records a blob before its first byte is written, so an interrupted upload is
    /// always found by the sweeper.
    pub async fn insert_pending_blob(&self, name: &str, now_ms: i64) -> Result<(), StoreError> {
        on_engine!(self.pool(), p => {
            sqlx::query("INSERT INTO pending_blobs (blob_name, started_at) VALUES ($1, $2)")
                .bind(name)
                .bind(now_ms)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Forgets a pending blob (after it was removed).
    pub async fn delete_pending_blob(&self, name: &str) -> Result<(), StoreError> {
        on_engine!(self.pool(), p => {
            sqlx::query("DELETE FROM pending_blobs WHERE blob_name = $1").bind(name).execute(p).await?;
        });
        Ok(())
    }

    /// Pending blobs started before `before_ms`: uploads that never finished.
    pub async fn stale_pending_blobs(&self, before_ms: i64) -> Result<Vec<String>, StoreError> {
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, String>("SELECT blob_name FROM pending_blobs WHERE started_at < $1")
                .bind(before_ms)
                .fetch_all(p)
                .await?
        }))
    }
}

/// A deposit waiting for its owner: the data key still sealed to their public key.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WaitingDeposit {
    pub document_id: DocumentId,
    pub version: i32,
    pub doc_type: String,
    pub sealed_deposit: Vec<u8>,
    /// Whether its owner already accepted it (then it joins grants when picked up).
    pub accepted_at: Option<i64>,
}

impl Store {
    /// A citizen's deposits not yet picked up.
    pub async fn waiting_deposits(
        &self,
        citizen: CitizenId,
    ) -> Result<Vec<WaitingDeposit>, StoreError> {
        const SQL: &str = "SELECT v.document_id, v.version, d.doc_type, v.sealed_deposit, d.accepted_at \
            FROM document_versions v JOIN documents d ON d.id = v.document_id \
            WHERE d.citizen_id = $1 AND d.deleted_at IS NULL AND v.data_key_wrap IS NULL \
            AND v.sealed_deposit IS NOT NULL";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, WaitingDeposit>(SQL).bind(citizen).fetch_all(p).await?
        }))
    }
}

impl Tx {
    /// Replaces a deposit's sealed key by its owner's vault wrap (once: a second node
    /// picking up the same deposit changes nothing). Returns whether this call did it.
    pub async fn receive_deposit(
        &mut self,
        document: DocumentId,
        version: i32,
        data_key_wrap: &[u8],
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE document_versions SET data_key_wrap = $1, sealed_deposit = NULL \
            WHERE document_id = $2 AND version = $3 AND data_key_wrap IS NULL";
        let n = on_engine!(self, c => {
            sqlx::query(SQL).bind(data_key_wrap).bind(document).bind(version).execute(&mut **c).await?.rows_affected()
        });
        Ok(n == 1)
    }

    /// Inserts a new document row.
    pub async fn insert_document(&mut self, row: &DocumentRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO documents (id, citizen_id, doc_type, current_version, issuer_agency_id, \
            created_at, updated_at, accepted_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(row.id)
                .bind(row.citizen_id)
                .bind(&row.doc_type)
                .bind(row.current_version)
                .bind(row.issuer_agency_id)
                .bind(row.created_at)
                .bind(row.updated_at)
                .bind(row.accepted_at)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Marks a received deposit accepted by its owner. Returns whether this call did it.
    pub async fn accept_document(
        &mut self,
        citizen: CitizenId,
        document: DocumentId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE documents SET accepted_at = $1 \
            WHERE id = $2 AND citizen_id = $3 AND deleted_at IS NULL AND accepted_at IS NULL";
        Ok(on_engine!(self, c => {
            sqlx::query(SQL).bind(now_ms).bind(document).bind(citizen).execute(&mut **c).await?.rows_affected() == 1
        }))
    }

    /// Moves a document to `version`, only if it is still at `expected` (so two replaces
    /// racing cannot both claim the same version number).
    pub async fn bump_version(
        &mut self,
        id: DocumentId,
        citizen: CitizenId,
        expected: i32,
        version: i32,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE documents SET current_version = $1, updated_at = $2 \
            WHERE id = $3 AND citizen_id = $4 AND current_version = $5 AND deleted_at IS NULL";
        let n = on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(version)
                .bind(now_ms)
                .bind(id)
                .bind(citizen)
                .bind(expected)
                .execute(&mut **c)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::Conflict("document changed meanwhile".into()));
        }
        Ok(())
    }

    /// Inserts a version row.
    pub async fn insert_version(&mut self, row: &VersionRow) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO document_versions (document_id, version, data_key_wrap, sealed_deposit, \
            meta_enc, blob_name, blob_size, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        on_engine!(self, c => {
            sqlx::query(SQL)
                .bind(row.document_id)
                .bind(row.version)
                .bind(&row.data_key_wrap)
                .bind(&row.sealed_deposit)
                .bind(&row.meta_enc)
                .bind(&row.blob_name)
                .bind(row.blob_size)
                .bind(row.created_at)
                .execute(&mut **c)
                .await?;
        });
        Ok(())
    }

    /// Marks a blob as referenced (no longer pending).
    pub async fn settle_blob(&mut self, name: &str) -> Result<(), StoreError> {
        on_engine!(self, c => {
            sqlx::query("DELETE FROM pending_blobs WHERE blob_name = $1").bind(name).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Crypto-shreds a document: deletes every version (data key wraps, sealed contents),
    /// every grant's wrap of its keys, and marks the document deleted. Returns the blob
    /// names to remove; they are registered as pending so a crash before removal is swept.
    pub async fn shred_document(
        &mut self,
        id: DocumentId,
        citizen: CitizenId,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let n = on_engine!(self, c => {
            sqlx::query("UPDATE documents SET deleted_at = $1 WHERE id = $2 AND citizen_id = $3 AND deleted_at IS NULL")
                .bind(now_ms)
                .bind(id)
                .bind(citizen)
                .execute(&mut **c)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        let blobs = on_engine!(self, c => {
            let blobs: Vec<String> = sqlx::query_scalar(
                "SELECT blob_name FROM document_versions WHERE document_id = $1 AND blob_name IS NOT NULL",
            )
            .bind(id)
            .fetch_all(&mut **c)
            .await?;
            for name in &blobs {
                sqlx::query("INSERT INTO pending_blobs (blob_name, started_at) VALUES ($1, $2) ON CONFLICT (blob_name) DO NOTHING")
                    .bind(name)
                    .bind(0i64)
                    .execute(&mut **c)
                    .await?;
            }
            sqlx::query("DELETE FROM grant_key_wraps WHERE document_id = $1").bind(id).execute(&mut **c).await?;
            sqlx::query("DELETE FROM delegation_key_wraps WHERE document_id = $1").bind(id).execute(&mut **c).await?;
            sqlx::query("DELETE FROM emergency_key_wraps WHERE document_id = $1").bind(id).execute(&mut **c).await?;
            sqlx::query("DELETE FROM document_versions WHERE document_id = $1").bind(id).execute(&mut **c).await?;
            blobs
        });
        Ok(blobs)
    }
}
