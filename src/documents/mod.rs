//! Documents: typed materials, each stored once, encrypted, versioned (SPEC §2, G4, G5, G7).
//!
//! Every version has its own random data key, wrapped under the owner's vault key. The
//! fields (with the file's name, type, size and digest) are sealed as one envelope; the
//! file is a STREAM ciphertext in the blob store under a random name. Both carry
//! associated data binding document id, version and owner, so ciphertext moved to another
//! row or owner fails to open. Uploads stream through encryption: memory does not grow with
//! file size. Deletion destroys the keys (crypto-shredding) and removes the blobs.
//!
//! Upload order (G7): the blob name is recorded as pending, the file is written to a
//! temporary name and synced, renamed into place, and only then is the version committed in
//! the same transaction that clears the pending record. A crash at any point leaves either
//! no visible document, or a committed one; the sweeper removes what a crash left behind.

pub mod deposit;
pub mod files;

pub use files::{Delivery, FileStream, Part};

use std::collections::BTreeMap;

use custodia_crypto::digest::{self, Sha256Stream};
use custodia_crypto::hpke_seal::{self, HpkePublicKey};
use custodia_crypto::stream::{CHUNK_LEN, StreamEncryptor};
use custodia_crypto::{DataKey, SymmetricKey, VaultKey, envelope, wrap};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::context::Context;
use crate::error::{Error, invalid};
use crate::sessions::Session;
use crate::store::blob::{BlobName, BlobWriter};
use crate::store::documents::{DocumentRow, VersionRow};

/// Kinds of file accepted, recognised from their first bytes (never from the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum MediaType {
    /// `application/pdf`
    #[serde(rename = "application/pdf")]
    Pdf,
    /// `image/png`
    #[serde(rename = "image/png")]
    Png,
    /// `image/jpeg`
    #[serde(rename = "image/jpeg")]
    Jpeg,
}

impl MediaType {
    /// Recognises a file from its first bytes (at least 8 are needed for PNG).
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else {
            None
        }
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
        }
    }

    /// Whether browsers show it as an image.
    pub fn is_image(self) -> bool {
        matches!(self, Self::Png | Self::Jpeg)
    }
}

/// What is known of a stored file (sealed with the fields).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileInfo {
    /// Sanitised original name.
    pub name: String,
    /// Sniffed kind.
    pub media_type: MediaType,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext, hex.
    pub sha256: String,
}

/// How an issuer vouched for a deposited document: what it signed, with which key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issuance {
    /// The issuing agency.
    pub issuer_agency_id: Uuid,
    /// When the issuer issued it (RFC 3339).
    pub issued_at: String,
    /// When it stops being valid (RFC 3339).
    pub expires_at: Option<String>,
    /// The RFC 8785 canonical JSON the issuer signed.
    pub signed: String,
    /// The Ed25519 signature (base64url).
    pub signature: String,
    /// The issuer's public key at deposit time (base64url).
    pub issuer_public_key: String,
}

impl Issuance {
    /// Whether the issuer's signature over the signed form holds.
    pub fn signature_holds(&self) -> bool {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (Ok(key), Ok(sig)) = (
            b64.decode(&self.issuer_public_key),
            b64.decode(&self.signature),
        ) else {
            return false;
        };
        custodia_crypto::sign::VerifyingKey::from_bytes(&key)
            .and_then(|k| k.verify_raw(self.signed.as_bytes(), &sig))
            .is_ok()
    }
}

/// The sealed part of a version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) doc_type: String,
    pub(crate) fields: BTreeMap<String, String>,
    pub(crate) file: Option<FileInfo>,
    pub(crate) content_sha256: String,
    #[serde(default)]
    pub(crate) issuance: Option<Issuance>,
}

/// Makes a filename safe to show and to put in a header: no path, no control or quote
/// characters, at most 200 characters, never empty.
pub fn sanitise_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\\' | '/' | ';' | '<' | '>'))
        .take(200)
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').to_owned();
    if trimmed.is_empty() {
        "document".to_owned()
    } else {
        trimmed
    }
}

/// The SHA-256 digest of a version's canonical content (RFC 8785 JSON of type, fields and
/// file digest): what `verify` reads attest to.
pub fn content_digest(
    doc_type: &str,
    fields: &BTreeMap<String, String>,
    file_sha256: Option<&str>,
) -> Result<String, Error> {
    let value =
        serde_json::json!({ "type": doc_type, "fields": fields, "file_sha256": file_sha256 });
    let canonical = digest::canonical_json(&value).map_err(|e| Error::Internal(e.into()))?;
    Ok(digest::hex(&digest::sha256(canonical.as_bytes())))
}

/// A document being written: its id and version are fixed first because the ciphertext
/// is bound to them.
pub struct Draft {
    citizen: Uuid,
    document: Uuid,
    version: i32,
    previous: Option<i32>,
    holder: Holder,
    data_key: DataKey,
    file: Option<FileUpload>,
    expect_file_sha256: Option<String>,
}

/// Who will hold the new version's data key.
enum Holder {
    /// The owner, now: wrapped under their vault key.
    Vault(VaultKey),
    /// The owner, at their next unlock: sealed to their public key (issuer deposits).
    Sealed {
        public_key: HpkePublicKey,
        issuance: Box<Issuance>,
    },
}

/// A file streaming into the blob store through encryption.
pub struct FileUpload {
    writer: BlobWriter,
    encryptor: Option<StreamEncryptor>,
    sha: Sha256Stream,
    head: Vec<u8>,
    media_type: Option<MediaType>,
    size: u64,
    limit: u64,
    name: String,
    out: Vec<u8>,
}

impl Draft {
    /// A new document (version 1). The vault must be unlocked.
    pub fn create(session: &Session) -> Result<Self, Error> {
        Ok(Self {
            citizen: session.citizen()?,
            document: Uuid::new_v4(),
            version: 1,
            previous: None,
            holder: Holder::Vault(session.vault_key()?),
            data_key: DataKey::generate(),
            file: None,
            expect_file_sha256: None,
        })
    }

    /// A document an issuer deposits for `citizen` while they are away: its data key is
    /// sealed to the citizen's public key until their next unlock.
    pub fn deposit(citizen: Uuid, public_key: &[u8], issuance: Issuance) -> Result<Self, Error> {
        let public_key = HpkePublicKey::from_bytes(public_key)
            .map_err(|e| Error::Internal(anyhow::anyhow!("public key of a citizen: {e}")))?;
        Ok(Self {
            citizen,
            document: Uuid::new_v4(),
            version: 1,
            previous: None,
            holder: Holder::Sealed {
                public_key,
                issuance: Box::new(issuance),
            },
            data_key: DataKey::generate(),
            file: None,
            expect_file_sha256: None,
        })
    }

    /// The document's id.
    pub fn id(&self) -> Uuid {
        self.document
    }

    /// Refuses the commit unless the file's SHA-256 (hex) is `sha256`.
    pub fn expect_file_sha256(&mut self, sha256: &str) {
        self.expect_file_sha256 = Some(sha256.to_owned());
    }

    /// The next version of an existing document of this citizen.
    pub async fn replace(ctx: &Context, session: &Session, document: Uuid) -> Result<Self, Error> {
        let citizen = session.citizen()?;
        let vault_key = session.vault_key()?;
        let row = ctx.store.citizen_document(citizen, document).await?;
        if row.issuer_agency_id.is_some() {
            return Err(Error::Conflict(
                "This document was issued by an agency and cannot be edited; ask the issuer for a new one.".into(),
            ));
        }
        Ok(Self {
            citizen,
            document,
            version: row.current_version + 1,
            previous: Some(row.current_version),
            holder: Holder::Vault(vault_key),
            data_key: DataKey::generate(),
            file: None,
            expect_file_sha256: None,
        })
    }

    /// Starts receiving the file part.
    pub async fn begin_file(&mut self, ctx: &Context, filename: &str) -> Result<(), Error> {
        if self.file.is_some() {
            return Err(invalid("file", "only one file per document"));
        }
        let writer = ctx
            .blobs
            .create()
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        ctx.store
            .insert_pending_blob(writer.name().as_str(), ctx.clock.now_ms())
            .await?;
        let encryptor = StreamEncryptor::new(
            &self.data_key,
            &crate::sealing::document_aad(
                "document-file",
                self.document,
                self.version,
                self.citizen,
            ),
        );
        self.file = Some(FileUpload {
            writer,
            encryptor: Some(encryptor),
            sha: Sha256Stream::default(),
            head: Vec::new(),
            media_type: None,
            size: 0,
            limit: ctx.config.max_upload_bytes,
            name: sanitise_filename(filename),
            out: Vec::with_capacity(CHUNK_LEN + 64),
        });
        Ok(())
    }

    /// Feeds file bytes: checks size and kind, encrypts, writes.
    pub async fn push_file(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| invalid("file", "no file part started"))?;
        file.size += bytes.len() as u64;
        if file.size > file.limit {
            return Err(Error::TooLarge(format!(
                "The file is larger than the limit of {} MiB.",
                file.limit / (1024 * 1024)
            )));
        }
        if file.media_type.is_none() {
            file.head.extend_from_slice(&bytes[..bytes.len().min(16)]);
            if file.head.len() >= 8 {
                file.media_type = Some(MediaType::sniff(&file.head).ok_or_else(unsupported)?);
            }
        }
        file.sha.update(bytes);
        let encryptor = file
            .encryptor
            .as_mut()
            .ok_or_else(|| invalid("file", "file already finished"))?;
        encryptor
            .push(bytes, &mut file.out)
            .map_err(|e| Error::Internal(e.into()))?;
        if file.out.len() >= CHUNK_LEN {
            file.writer
                .write(&file.out)
                .await
                .map_err(|e| Error::Internal(e.into()))?;
            file.out.clear();
        }
        Ok(())
    }

    /// Validates the fields, seals everything and commits the version.
    pub async fn commit(
        mut self,
        ctx: &Context,
        doc_type: &str,
        fields: &serde_json::Value,
    ) -> Result<Stored, Error> {
        let checked = self.check(ctx, doc_type, fields).await;
        let fields = match checked {
            Ok(fields) => fields,
            Err(e) => {
                self.abandon(ctx).await;
                return Err(e);
            }
        };
        let (file_info, blob) = match self.file.take() {
            None => (None, None),
            Some(file) => {
                let name = file.writer.name().clone();
                match file.finish().await {
                    Ok((info, name, _))
                        if self
                            .expect_file_sha256
                            .as_ref()
                            .is_some_and(|want| !want.eq_ignore_ascii_case(&info.sha256)) =>
                    {
                        discard_blob(ctx, &name).await;
                        return Err(invalid("file_sha256", "does not match the attached file"));
                    }
                    Ok((info, name, size)) => (Some(info), Some((name, size))),
                    Err(e) => {
                        discard_blob(ctx, &name).await;
                        return Err(e);
                    }
                }
            }
        };
        let content_sha256 = content_digest(
            doc_type,
            &fields,
            file_info.as_ref().map(|f| f.sha256.as_str()),
        )?;
        let issuance = match &self.holder {
            Holder::Vault(_) => None,
            Holder::Sealed { issuance, .. } => Some((**issuance).clone()),
        };
        let issuer_agency_id = issuance.as_ref().map(|i| i.issuer_agency_id);
        let meta = Meta {
            doc_type: doc_type.to_owned(),
            fields,
            file: file_info,
            content_sha256,
            issuance,
        };
        let meta_json = zeroize::Zeroizing::new(
            serde_json::to_vec(&meta).map_err(|e| Error::Internal(e.into()))?,
        );
        let now = ctx.clock.now_ms();
        let key_aad =
            crate::sealing::document_aad("data-key", self.document, self.version, self.citizen);
        let (data_key_wrap, sealed_deposit) = match &self.holder {
            Holder::Vault(vault_key) => (
                Some(wrap::wrap_key(vault_key, &self.data_key, &key_aad)),
                None,
            ),
            Holder::Sealed { public_key, .. } => {
                let sealed = hpke_seal::seal_key(public_key, &key_aad, &self.data_key)
                    .map_err(|e| Error::Internal(anyhow::anyhow!("sealing a deposit: {e}")));
                match sealed {
                    Ok(sealed) => (None, Some(sealed)),
                    Err(e) => {
                        if let Some((name, _)) = &blob {
                            discard_blob(ctx, name).await;
                        }
                        return Err(e);
                    }
                }
            }
        };
        let version = VersionRow {
            document_id: self.document,
            version: self.version,
            data_key_wrap,
            sealed_deposit,
            meta_enc: Some(envelope::seal(
                &self.data_key,
                &crate::sealing::document_aad(
                    "document-meta",
                    self.document,
                    self.version,
                    self.citizen,
                ),
                &meta_json,
            )),
            blob_name: blob.as_ref().map(|(n, _)| n.as_str().to_owned()),
            blob_size: blob
                .as_ref()
                .map(|(_, s)| i64::try_from(*s).unwrap_or(i64::MAX)),
            created_at: now,
        };
        // A deposit joins grants when its owner picks it up; an upload joins them now.
        let grant_wraps = match self.holder {
            Holder::Sealed { .. } => Ok(Vec::new()),
            Holder::Vault(_) => {
                crate::sealing::wraps_for_new_version(
                    ctx,
                    self.citizen,
                    self.document,
                    doc_type,
                    self.version,
                    &self.data_key,
                )
                .await
            }
        };
        let grant_wraps = match grant_wraps {
            Ok(w) => w,
            Err(e) => {
                if let Some((name, _)) = &blob {
                    discard_blob(ctx, name).await;
                }
                return Err(e);
            }
        };
        let result = async {
            let mut tx = ctx.store.begin().await?;
            match self.previous {
                None => {
                    tx.insert_document(&DocumentRow {
                        id: self.document,
                        citizen_id: self.citizen,
                        doc_type: doc_type.to_owned(),
                        current_version: self.version,
                        issuer_agency_id,
                        created_at: now,
                        updated_at: now,
                    })
                    .await?
                }
                Some(prev) => {
                    tx.bump_version(self.document, self.citizen, prev, self.version, now)
                        .await?
                }
            }
            tx.insert_version(&version).await?;
            for w in &grant_wraps {
                tx.insert_grant_wrap_if_active(w).await?;
            }
            if let Some((name, _)) = &blob {
                tx.settle_blob(name.as_str()).await?;
            }
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            if let Some((name, _)) = &blob {
                discard_blob(ctx, name).await;
            }
            return Err(match e {
                crate::store::StoreError::Conflict(_) => {
                    Error::Conflict("The document changed meanwhile; reload and try again.".into())
                }
                other => other.into(),
            });
        }
        tracing::info!(document = %self.document, version = self.version, "document stored");
        if let Holder::Vault(_) = self.holder {
            let action = if self.previous.is_some() {
                "document.replace"
            } else {
                "document.upload"
            };
            let event = crate::audit::citizen_event(&ctx.store, self.citizen, action)
                .await
                .objects([self.document.to_string(), doc_type.to_owned()])
                .bytes(blob.as_ref().map(|(_, s)| *s));
            ctx.audit.record(event).await;
        }
        Ok(Stored {
            id: self.document,
            version: self.version,
            doc_type: doc_type.to_owned(),
        })
    }

    async fn check(
        &self,
        ctx: &Context,
        doc_type: &str,
        fields: &serde_json::Value,
    ) -> Result<BTreeMap<String, String>, Error> {
        let spec = ctx.catalog.document_type(doc_type).ok_or_else(|| {
            invalid(
                "type",
                format!("'{doc_type}' is not a document type in the catalog"),
            )
        })?;
        let fields = ctx.catalog.validate_fields(spec, fields)?;
        if self.file.is_some() && !spec.has_file {
            return Err(invalid(
                "file",
                format!("a {} carries no file", spec.names.en),
            ));
        }
        if let Some(prev) = self.previous {
            let row = ctx
                .store
                .citizen_document(self.citizen, self.document)
                .await?;
            if row.doc_type != doc_type {
                return Err(invalid(
                    "type",
                    format!("a new version must keep the type '{}'", row.doc_type),
                ));
            }
            if row.current_version != prev {
                return Err(Error::Conflict(
                    "The document changed meanwhile; reload and try again.".into(),
                ));
            }
        }
        Ok(fields)
    }

    /// Abandons the draft: removes the partial blob and its pending record.
    pub async fn abandon(mut self, ctx: &Context) {
        if let Some(file) = self.file.take() {
            let name = file.writer.name().clone();
            drop(file);
            discard_blob(ctx, &name).await;
        }
    }
}

fn unsupported() -> Error {
    Error::UnsupportedMedia("Only PDF, PNG and JPEG files are accepted.".into())
}

impl FileUpload {
    async fn finish(mut self) -> Result<(FileInfo, BlobName, u64), Error> {
        if self.size == 0 {
            return Err(invalid("file", "the file is empty"));
        }
        let media_type = match self.media_type {
            Some(m) => m,
            None => MediaType::sniff(&self.head).ok_or_else(unsupported)?,
        };
        let encryptor = self
            .encryptor
            .take()
            .ok_or_else(|| invalid("file", "file already finished"))?;
        encryptor
            .finish(&mut self.out)
            .map_err(|e| Error::Internal(e.into()))?;
        self.writer
            .write(&self.out)
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        let blob_size = self.writer.written();
        let name = self
            .writer
            .commit()
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        Ok((
            FileInfo {
                name: self.name,
                media_type,
                size: self.size,
                sha256: digest::hex(&self.sha.finish()),
            },
            name,
            blob_size,
        ))
    }
}

async fn discard_blob(ctx: &Context, name: &BlobName) {
    if let Err(e) = ctx.blobs.delete(name).await {
        tracing::warn!(error = %e, "could not remove an abandoned blob; the sweeper will");
        return;
    }
    if let Err(e) = ctx.store.delete_pending_blob(name.as_str()).await {
        tracing::warn!(error = %e, "could not clear a pending blob record; the sweeper will");
    }
}

/// What a successful store returns (`{id, version, type}`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stored {
    /// Document id.
    pub id: Uuid,
    /// The new version.
    pub version: i32,
    /// The type.
    #[serde(rename = "type")]
    pub doc_type: String,
}

/// A document in the citizen's list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Document id.
    pub id: Uuid,
    /// Type id.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Latest version.
    pub version: i32,
    /// The issuing agency, for deposited documents.
    pub issuer_agency_id: Option<Uuid>,
    /// Its name.
    pub issuer_name: Option<String>,
    /// First stored (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
}

/// The signed-in citizen's documents (metadata only: no vault key needed).
/// How many documents the citizen holds, deposits still waiting included; for a count
/// only, so it neither picks deposits up nor looks up issuers.
pub async fn count(ctx: &Context, session: &Session) -> Result<usize, Error> {
    let citizen = session.citizen()?;
    Ok(ctx.store.citizen_documents(citizen).await?.len())
}

pub async fn list(ctx: &Context, session: &Session) -> Result<Vec<Summary>, Error> {
    let citizen = session.citizen()?;
    if session.is_unlocked() {
        crate::sealing::pick_up_deposits(ctx, citizen, &session.vault_key()?).await?;
    }
    let mut names: BTreeMap<Uuid, String> = BTreeMap::new();
    let mut out = Vec::new();
    for d in ctx.store.citizen_documents(citizen).await? {
        let issuer_name = match d.issuer_agency_id {
            Some(a) => match names.get(&a) {
                Some(name) => Some(name.clone()),
                None => {
                    let name = ctx
                        .store
                        .agency(a)
                        .await
                        .map(|r| r.name)
                        .unwrap_or_default();
                    names.insert(a, name.clone());
                    Some(name)
                }
            },
            None => None,
        };
        out.push(Summary {
            id: d.id,
            doc_type: d.doc_type,
            version: d.current_version,
            issuer_agency_id: d.issuer_agency_id,
            issuer_name,
            created_at: d.created_at,
            updated_at: d.updated_at,
        });
    }
    Ok(out)
}

/// One version of a document, opened.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct View {
    /// Document id.
    pub id: Uuid,
    /// Type id.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// The version shown.
    pub version: i32,
    /// The latest version.
    pub current_version: i32,
    /// Every version number with its time (ms).
    pub versions: Vec<VersionInfo>,
    /// Field values.
    pub fields: BTreeMap<String, String>,
    /// The file, if any.
    pub file: Option<FileInfo>,
    /// SHA-256 of the canonical content.
    pub content_sha256: String,
    /// The issuing agency, for deposited documents.
    pub issuer_agency_id: Option<Uuid>,
    /// Who issued it and whether their signature holds, for deposited documents.
    pub issuer: Option<IssuerCheck>,
}

/// A deposited document's issuer, as the citizen sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuerCheck {
    /// The issuing agency.
    pub agency_id: Uuid,
    /// Its name.
    pub name: String,
    /// Issue date (RFC 3339).
    pub issued_at: String,
    /// Expiry (RFC 3339), if set.
    pub expires_at: Option<String>,
    /// Whether the issuer's signature over the document holds.
    pub signature_valid: bool,
}

/// A version number and when it was stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// Version number.
    pub version: i32,
    /// Stored at (ms).
    pub created_at: i64,
}

struct Opened {
    row: DocumentRow,
    versions: Vec<VersionRow>,
    chosen: VersionRow,
    data_key: DataKey,
    meta: Meta,
}

async fn open_version(
    ctx: &Context,
    session: &Session,
    id: Uuid,
    version: Option<i32>,
) -> Result<Opened, Error> {
    let citizen = session.citizen()?;
    let vault_key = session.vault_key()?;
    let row = ctx.store.citizen_document(citizen, id).await?;
    let versions = ctx.store.document_versions(id).await?;
    let wanted = version.unwrap_or(row.current_version);
    let chosen = versions
        .iter()
        .find(|v| v.version == wanted)
        .cloned()
        .ok_or(Error::NotFound)?;
    let wrapped = chosen.data_key_wrap.as_deref().ok_or(Error::NotFound)?;
    let data_key: DataKey = wrap::unwrap_key(
        &vault_key,
        wrapped,
        &crate::sealing::document_aad("data-key", id, wanted, citizen),
    )
    .map_err(|e| Error::Internal(anyhow::anyhow!("data key of {id} v{wanted}: {e}")))?;
    let sealed = chosen.meta_enc.as_deref().ok_or(Error::NotFound)?;
    let json = envelope::open(
        &data_key,
        &crate::sealing::document_aad("document-meta", id, wanted, citizen),
        sealed,
    )
    .map_err(|e| Error::Internal(anyhow::anyhow!("contents of {id} v{wanted}: {e}")))?;
    let meta: Meta = serde_json::from_slice(&json).map_err(|e| Error::Internal(e.into()))?;
    Ok(Opened {
        row,
        versions,
        chosen,
        data_key,
        meta,
    })
}

/// Opens a version (the latest unless `version` is given). Needs an unlocked vault.
pub async fn get(
    ctx: &Context,
    session: &Session,
    id: Uuid,
    version: Option<i32>,
) -> Result<View, Error> {
    let o = open_version(ctx, session, id, version).await?;
    Ok(View {
        id,
        doc_type: o.meta.doc_type,
        version: o.chosen.version,
        current_version: o.row.current_version,
        versions: o
            .versions
            .iter()
            .map(|v| VersionInfo {
                version: v.version,
                created_at: v.created_at,
            })
            .collect(),
        fields: o.meta.fields,
        file: o.meta.file,
        content_sha256: o.meta.content_sha256,
        issuer: match (&o.meta.issuance, o.row.issuer_agency_id) {
            (Some(i), Some(agency_id)) => Some(IssuerCheck {
                agency_id,
                name: ctx
                    .store
                    .agency(agency_id)
                    .await
                    .map(|a| a.name)
                    .unwrap_or_default(),
                issued_at: i.issued_at.clone(),
                expires_at: i.expires_at.clone(),
                signature_valid: i.signature_holds(),
            }),
            _ => None,
        },
        issuer_agency_id: o.row.issuer_agency_id,
    })
}

/// Opens the file of a version for delivery: `decide` picks the part from the file's
/// size and entity tag (ranges, revalidation, `HEAD`).
pub async fn open_file(
    ctx: &Context,
    session: &Session,
    id: Uuid,
    version: Option<i32>,
    decide: impl FnOnce(&FileInfo) -> Delivery,
) -> Result<FileStream, Error> {
    let o = open_version(ctx, session, id, version).await?;
    let info = o.meta.file.clone().ok_or(Error::NotFound)?;
    let name = o
        .chosen
        .blob_name
        .as_deref()
        .and_then(BlobName::parse)
        .ok_or(Error::NotFound)?;
    let delivery = decide(&info);
    files::open(
        &ctx.blobs,
        &name,
        &o.data_key,
        &crate::sealing::document_aad("document-file", id, o.chosen.version, o.row.citizen_id),
        info,
        delivery,
    )
    .await
}

/// Deletes a document: every version's keys and sealed contents, every grant's wraps of
/// them, and the blobs (crypto-shredding).
pub async fn delete(ctx: &Context, session: &Session, id: Uuid) -> Result<(), Error> {
    let citizen = session.citizen()?;
    let mut tx = ctx.store.begin().await?;
    let blobs = tx.shred_document(id, citizen, ctx.clock.now_ms()).await?;
    tx.commit().await?;
    for name in blobs.iter().filter_map(|n| BlobName::parse(n)) {
        discard_blob(ctx, &name).await;
    }
    tracing::info!(document = %id, "document deleted (keys destroyed)");
    let event = crate::audit::citizen_event(&ctx.store, citizen, "document.delete")
        .await
        .objects([id.to_string()]);
    ctx.audit.record(event).await;
    Ok(())
}

/// Removes blobs of uploads that never committed (pending for over an hour) and of
/// deletions interrupted before their blobs went. Safe on several nodes at once.
pub async fn sweep_orphans(ctx: &Context) -> Result<usize, Error> {
    let cutoff = ctx.clock.now_ms() - 60 * 60 * 1000;
    let stale = ctx.store.stale_pending_blobs(cutoff).await?;
    for name in stale.iter().filter_map(|n| BlobName::parse(n)) {
        discard_blob(ctx, &name).await;
    }
    Ok(stale.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kinds_are_sniffed_from_bytes() {
        assert_eq!(MediaType::sniff(b"%PDF-1.7\n"), Some(MediaType::Pdf));
        assert_eq!(
            MediaType::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(MediaType::Png)
        );
        assert_eq!(
            MediaType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 0, 0]),
            Some(MediaType::Jpeg)
        );
        assert_eq!(MediaType::sniff(b"<html><script>"), None);
        assert_eq!(MediaType::sniff(b"MZ\x90\0"), None);
    }

    #[test]
    fn filenames_are_sanitised() {
        assert_eq!(sanitise_filename("../../etc/passwd"), "passwd");
        assert_eq!(
            sanitise_filename("C:\\Users\\x\\营业执照.pdf"),
            "营业执照.pdf"
        );
        assert_eq!(sanitise_filename("a\"b;c\r\n.pdf"), "abc.pdf");
        assert_eq!(sanitise_filename("..."), "document");
        assert_eq!(sanitise_filename(&"x".repeat(500)).chars().count(), 200);
    }
}
