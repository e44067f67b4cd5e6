//! Storing a version: a draft whose id and version are fixed first (the ciphertext is
//! bound to them), the file streamed through encryption into a pending blob, and one commit
//! that makes the version visible (G7).

use std::collections::BTreeMap;

use custodia_crypto::digest::{self, Sha256Stream};
use custodia_crypto::hpke_seal::{self, HpkePublicKey};
use custodia_crypto::stream::{CHUNK_LEN, StreamEncryptor};
use custodia_crypto::{DataKey, DelegationKey, SymmetricKey, VaultKey, envelope, wrap};
use serde::Serialize;

use crate::context::Context;
use crate::error::{Error, invalid};
use crate::ids::{CitizenId, DelegationId, DocumentId};
use crate::sessions::Session;
use crate::status::DelegatedAction;
use crate::store::blob::{BlobName, BlobWriter};
use crate::store::delegations::DelegationWrapRow;
use crate::store::documents::{DocumentRow, VersionRow};

use super::media::{FileInfo, MediaType, sanitise_filename};
use super::{Issuance, Meta, content_digest};

/// A document being written: its id and version are fixed first because the ciphertext
/// is bound to them.
pub struct Draft {
    citizen: CitizenId,
    document: DocumentId,
    version: i32,
    previous: Option<i32>,
    holder: Holder,
    data_key: DataKey,
    file: Option<FileUpload>,
    expect_file_sha256: Option<String>,
    /// Does all the work of a deposit — checks, encryption, sealing, blob writes — for a
    /// national ID without an account, then keeps nothing: so the answer, and its timing,
    /// say nothing about who is registered.
    decoy: bool,
    /// The record of a deposit, staged in the transaction that stores it.
    deposit_event: Option<crate::audit::Event>,
    /// The answer to keep for a deposit's `Idempotency-Key`, in the same transaction.
    answer: Option<(crate::ids::AgencyId, crate::agencies::Retry, String)>,
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
    /// A delegate storing for her principal: sealed to the principal (received at her next
    /// unlock, already accepted) and wrapped under the delegation's key, so the delegate
    /// sees what she stored.
    Delegate(Box<DelegateHolder>),
}

/// What a delegate's upload needs: the principal's public key, the delegation's key and
/// scope, and both pseudonyms for the record.
struct DelegateHolder {
    principal_key: HpkePublicKey,
    delegation: DelegationId,
    key: DelegationKey,
    document_types: Vec<String>,
    delegate_pseudonym: String,
    principal_pseudonym: String,
}

impl Holder {
    /// The holder of a version stored in `session`: the owner's vault, or a delegation.
    async fn for_session(ctx: &Context, session: &Session) -> Result<Self, Error> {
        let Some(acting) = session.acting() else {
            return Ok(Self::Vault(session.vault_key()?));
        };
        session.may(DelegatedAction::Upload, None)?;
        let crate::sealing::Opener::Delegation { id, key, owner } =
            crate::sealing::Opener::for_session(ctx, session).await?
        else {
            return Err(Error::Internal(anyhow::anyhow!(
                "acting without a delegation"
            )));
        };
        let principal = ctx.store.citizen(owner).await?;
        let delegate = ctx.store.citizen(session.own_citizen()?).await?;
        Ok(Self::Delegate(Box::new(DelegateHolder {
            principal_key: HpkePublicKey::from_bytes(&principal.public_key)
                .map_err(|e| Error::Internal(anyhow::anyhow!("public key of a citizen: {e}")))?,
            delegation: id,
            key,
            document_types: acting.document_types.clone(),
            delegate_pseudonym: delegate.pseudonym,
            principal_pseudonym: principal.pseudonym,
        })))
    }
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
    /// The citizen's storage quota and what they already store (uploads, not deposits).
    quota: Option<(u64, u64)>,
    name: String,
    out: Vec<u8>,
}

impl Draft {
    /// A new document (version 1). The vault must be unlocked (a delegate's own, while
    /// she stores for her principal).
    pub async fn create(ctx: &Context, session: &Session) -> Result<Self, Error> {
        Ok(Self {
            citizen: session.citizen()?,
            document: DocumentId::random(),
            version: 1,
            previous: None,
            holder: Holder::for_session(ctx, session).await?,
            data_key: DataKey::generate(),
            file: None,
            expect_file_sha256: None,
            decoy: false,
            deposit_event: None,
            answer: None,
        })
    }

    /// A document an issuer deposits for `citizen` while they are away: its data key is
    /// sealed to the citizen's public key until their next unlock.
    pub fn deposit(
        citizen: CitizenId,
        public_key: &[u8],
        issuance: Issuance,
    ) -> Result<Self, Error> {
        let public_key = HpkePublicKey::from_bytes(public_key)
            .map_err(|e| Error::Internal(anyhow::anyhow!("public key of a citizen: {e}")))?;
        Ok(Self {
            citizen,
            document: DocumentId::random(),
            version: 1,
            previous: None,
            holder: Holder::Sealed {
                public_key,
                issuance: Box::new(issuance),
            },
            data_key: DataKey::generate(),
            file: None,
            expect_file_sha256: None,
            decoy: false,
            deposit_event: None,
            answer: None,
        })
    }

    /// A deposit for a national ID without an account, done in full and then discarded
    /// (see the `decoy` field): sealed to a fresh key nobody keeps.
    pub fn decoy(issuance: Issuance) -> Result<Self, Error> {
        let (_, public_key) = hpke_seal::generate_keypair();
        let mut draft = Self::deposit(CitizenId::random(), &public_key.to_bytes(), issuance)?;
        draft.decoy = true;
        Ok(draft)
    }

    /// The deposit's record, committed with it (its document id and type are added).
    pub fn record_deposit(&mut self, event: crate::audit::Event) {
        self.deposit_event = Some(event);
    }

    /// The answer to keep for the deposit's `Idempotency-Key`, committed with it. A key
    /// committed meanwhile by a racing retry fails the commit with `Conflict`.
    pub fn keep_answer(
        &mut self,
        agency: crate::ids::AgencyId,
        retry: crate::agencies::Retry,
        body: String,
    ) {
        self.answer = Some((agency, retry, body));
    }

    /// The document's id.
    pub fn id(&self) -> DocumentId {
        self.document
    }

    /// Refuses the commit unless the file's SHA-256 (hex) is `sha256`.
    pub fn expect_file_sha256(&mut self, sha256: &str) {
        self.expect_file_sha256 = Some(sha256.to_owned());
    }

    /// The next version of an existing document of this citizen.
    #[tracing::instrument(skip_all, fields(document = %document))]
    pub async fn replace(
        ctx: &Context,
        session: &Session,
        document: DocumentId,
    ) -> Result<Self, Error> {
        let citizen = session.citizen()?;
        let row = ctx.store.citizen_document(citizen, document).await?;
        if !session.covers(&row.doc_type) {
            return Err(Error::NotFound);
        }
        session.may(DelegatedAction::Upload, Some(&row.doc_type))?;
        let holder = Holder::for_session(ctx, session).await?;
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
            holder,
            data_key: DataKey::generate(),
            file: None,
            expect_file_sha256: None,
            decoy: false,
            deposit_event: None,
            answer: None,
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
        // A citizen's own uploads (and her delegate's for her) count against her quota; an
        // issuer's deposits do not (the citizen did not choose them).
        let quota = match self.holder {
            Holder::Vault(_) | Holder::Delegate(_) => {
                let used = ctx.store.citizen_stored_bytes(self.citizen).await?;
                let used = u64::try_from(used).unwrap_or(0);
                if used >= ctx.config.quota_bytes {
                    return Err(quota_full(ctx.config.quota_bytes, used));
                }
                Some((ctx.config.quota_bytes, used))
            }
            Holder::Sealed { .. } => None,
        };
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
            quota,
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
        if let Some((quota, used)) = file.quota
            && used + file.size > quota
        {
            return Err(quota_full(quota, used));
        }
        if file.media_type.is_none() {
            file.head.extend(bytes.iter().take(16));
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
    #[tracing::instrument(skip_all, fields(document = %self.document))]
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
            Holder::Vault(_) | Holder::Delegate(_) => None,
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
        let recipient = match &self.holder {
            Holder::Vault(_) => None,
            Holder::Sealed { public_key, .. } => Some(public_key),
            Holder::Delegate(d) => Some(&d.principal_key),
        };
        let (data_key_wrap, sealed_deposit) = match (&self.holder, recipient) {
            (Holder::Vault(vault_key), _) => (
                Some(wrap::wrap_key(vault_key, &self.data_key, &key_aad)),
                None,
            ),
            (_, None) => (None, None),
            (_, Some(recipient)) => {
                let sealed = hpke_seal::seal_key(recipient, &key_aad, &self.data_key)
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
        if self.decoy {
            if let Some((name, _)) = &blob {
                discard_blob(ctx, name).await;
            }
            return Ok(Stored {
                id: self.document,
                version: self.version,
                doc_type: doc_type.to_owned(),
            });
        }
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
        // A deposit joins grants when its owner accepts it; an upload joins them now.
        // A deposit joins grants and delegations when its owner accepts it; an upload
        // joins them now (a delegate's joins the other delegations at the owner's unlock).
        let wraps = async {
            match &self.holder {
                Holder::Sealed { .. } => Ok((Vec::new(), Vec::new())),
                Holder::Vault(vault_key) => Ok((
                    crate::sealing::wraps_for_new_version(
                        ctx,
                        self.citizen,
                        self.document,
                        doc_type,
                        self.version,
                        &self.data_key,
                    )
                    .await?,
                    crate::sealing::delegation_wraps_for_new_version(
                        ctx,
                        self.citizen,
                        vault_key,
                        self.document,
                        doc_type,
                        self.version,
                        &self.data_key,
                    )
                    .await?,
                )),
                Holder::Delegate(d) => Ok((
                    crate::sealing::wraps_for_new_version(
                        ctx,
                        self.citizen,
                        self.document,
                        doc_type,
                        self.version,
                        &self.data_key,
                    )
                    .await?,
                    vec![DelegationWrapRow {
                        delegation_id: d.delegation,
                        document_id: self.document,
                        version: self.version,
                        wrapped_key: wrap::wrap_key(
                            &d.key,
                            &self.data_key,
                            &crate::sealing::delegation_data_key_aad(
                                d.delegation,
                                self.document,
                                self.version,
                            ),
                        ),
                    }],
                )),
            }
        }
        .await;
        let (grant_wraps, delegation_wraps) = match wraps {
            Ok(w) => w,
            Err(e) => {
                if let Some((name, _)) = &blob {
                    discard_blob(ctx, name).await;
                }
                return Err(e);
            }
        };
        // The record commits with the version: an upload, a replacement, a deposit.
        let action = if self.previous.is_some() {
            crate::audit::Action::DocumentReplace
        } else {
            crate::audit::Action::DocumentUpload
        };
        let record = match &self.holder {
            Holder::Vault(_) => Some(
                crate::audit::citizen_event(&ctx.store, self.citizen, action)
                    .await
                    .objects([self.document.to_string(), doc_type.to_owned()])
                    .bytes(blob.as_ref().map(|(_, s)| *s)),
            ),
            Holder::Delegate(d) => Some(
                crate::audit::Event::new(
                    crate::audit::ActorKind::Delegate,
                    Some(d.delegate_pseudonym.clone()),
                    action,
                )
                .citizen(Some(&d.principal_pseudonym))
                .objects([self.document.to_string(), doc_type.to_owned()])
                .bytes(blob.as_ref().map(|(_, s)| *s)),
            ),
            Holder::Sealed { .. } => self
                .deposit_event
                .take()
                .map(|e| e.objects([self.document.to_string(), doc_type.to_owned()])),
        };
        let record = match record.map(crate::audit::staged_json).transpose() {
            Ok(r) => r,
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
                        // A deposit waits as `received` until its owner accepts it.
                        accepted_at: issuer_agency_id.is_none().then_some(now),
                    })
                    .await?
                }
                Some(prev) => {
                    tx.bump_version(self.document, self.citizen, prev, self.version, now)
                        .await?;
                    tx.delete_superseded_grant_wraps(self.document, self.version)
                        .await?
                }
            }
            tx.insert_version(&version).await?;
            for w in &grant_wraps {
                tx.insert_grant_wrap_if_active(w).await?;
            }
            for w in &delegation_wraps {
                tx.insert_delegation_wrap(w).await?;
            }
            // An accepted version of an emergency-available type is wrapped for emergencies
            // too (stored only while its type is available); a deposit joins at acceptance.
            if !matches!(self.holder, Holder::Sealed { .. }) {
                tx.insert_emergency_wrap(&crate::sealing::emergency_wrap(
                    ctx,
                    self.citizen,
                    self.document,
                    doc_type,
                    self.version,
                    &self.data_key,
                ))
                .await?;
            }
            if let Some((name, _)) = &blob {
                tx.settle_blob(name.as_str()).await?;
            }
            if let Some(json) = &record {
                tx.stage_audit_event(json, now).await?;
            }
            if let Some((agency, retry, body)) = &self.answer {
                tx.insert_idempotent_answer(
                    *agency,
                    &retry.key,
                    &retry.fingerprint,
                    202,
                    body,
                    now,
                )
                .await?;
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
        if self.previous.is_some() {
            ctx.store.scrub().await;
        }
        tracing::info!(document = %self.document, version = self.version, "document stored");
        ctx.audit.flush().await;
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
        if let Holder::Delegate(d) = &self.holder
            && !d.document_types.iter().any(|t| t == doc_type)
        {
            return Err(Error::Forbidden(format!(
                "Your delegation does not cover documents of type '{doc_type}'."
            )));
        }
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

fn quota_full(quota: u64, used: u64) -> Error {
    const MIB: u64 = 1024 * 1024;
    Error::TooLarge(format!(
        "Your storage quota of {} MiB would be exceeded ({} MiB used). Delete documents you \
         no longer need, or store a smaller file.",
        quota / MIB,
        used.div_ceil(MIB)
    ))
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

pub(super) async fn discard_blob(ctx: &Context, name: &BlobName) {
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
    pub id: DocumentId,
    /// The new version.
    pub version: i32,
    /// The type.
    #[serde(rename = "type")]
    pub doc_type: String,
}
