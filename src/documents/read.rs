//! Reading one's own documents: the list, a version's view, and opening a version's file.

use std::collections::BTreeMap;

use custodia_crypto::{DataKey, envelope};
use serde::Serialize;

use crate::context::Context;
use crate::error::Error;
use crate::ids::{AgencyId, DocumentId};
use crate::sessions::Session;
use crate::status::DelegatedAction;
use crate::store::blob::BlobName;
use crate::store::documents::{DocumentRow, VersionRow};

use super::Meta;
use super::files::{self, Delivery, FileStream};
use super::media::FileInfo;

/// A document in the citizen's list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Summary {
    /// Document id.
    pub id: DocumentId,
    /// Type id.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Latest version.
    pub version: i32,
    /// The issuing agency, for deposited documents.
    pub issuer_agency_id: Option<AgencyId>,
    /// Its name.
    pub issuer_name: Option<String>,
    /// First stored (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
    /// `received`: a deposit the citizen has not accepted yet (it joins no grant);
    /// `accepted`: everything else.
    #[schema(example = "accepted")]
    pub status: &'static str,
}

/// The signed-in citizen's documents (metadata only: no vault key needed).
/// How many documents the citizen holds, deposits still waiting included; for a count
/// only, so it neither picks deposits up nor looks up issuers.
#[tracing::instrument(skip_all)]
pub async fn count(ctx: &Context, session: &Session) -> Result<usize, Error> {
    let citizen = session.citizen()?;
    session.may(DelegatedAction::View, None)?;
    Ok(ctx
        .store
        .citizen_documents(citizen)
        .await?
        .iter()
        .filter(|d| session.covers(&d.doc_type))
        .count())
}

#[tracing::instrument(skip_all)]
pub async fn list(ctx: &Context, session: &Session) -> Result<Vec<Summary>, Error> {
    let citizen = session.citizen()?;
    // A delegate sees the documents of the delegation's types only.
    session.may(DelegatedAction::View, None)?;
    if session.is_unlocked() && session.acting().is_none() {
        crate::sealing::pick_up_deposits(ctx, citizen, &session.vault_key()?).await?;
    }
    let mut names: BTreeMap<AgencyId, String> = BTreeMap::new();
    let mut out = Vec::new();
    for d in ctx
        .store
        .citizen_documents(citizen)
        .await?
        .into_iter()
        .filter(|d| session.covers(&d.doc_type))
    {
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
            status: status(&d),
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

/// `received` or `accepted` (see [`Summary::status`]).
pub fn status(row: &DocumentRow) -> &'static str {
    if row.accepted_at.is_some() {
        "accepted"
    } else {
        "received"
    }
}

/// One version of a document, opened.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct View {
    /// Document id.
    pub id: DocumentId,
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
    pub issuer_agency_id: Option<AgencyId>,
    /// Who issued it and whether their signature holds, for deposited documents.
    pub issuer: Option<IssuerCheck>,
    /// `received` until the citizen accepts a deposit, else `accepted`.
    pub status: &'static str,
}

/// A deposited document's issuer, as the citizen sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuerCheck {
    /// The issuing agency.
    pub agency_id: AgencyId,
    /// Its name.
    pub name: String,
    /// Issue date (RFC 3339).
    pub issued_at: String,
    /// Expiry (RFC 3339), if set.
    pub expires_at: Option<String>,
    /// Whether the issuer's signature over the document holds.
    pub signature_valid: bool,
    /// `valid`, `untrusted` (signed with a key the issuer revoked as compromised before
    /// this arrived, or never registered) or `invalid`.
    pub trust: &'static str,
}

/// A version number and when it was stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    /// Version number.
    pub version: i32,
    /// Stored at (ms).
    pub created_at: i64,
}

struct OpenedVersion {
    row: DocumentRow,
    versions: Vec<VersionRow>,
    chosen: VersionRow,
    data_key: DataKey,
    meta: Meta,
}

async fn open_version(
    ctx: &Context,
    session: &Session,
    id: DocumentId,
    version: Option<i32>,
) -> Result<OpenedVersion, Error> {
    let citizen = session.citizen()?;
    let row = ctx.store.citizen_document(citizen, id).await?;
    // Outside a delegate's scope a document is as absent as another citizen's.
    if !session.covers(&row.doc_type) {
        return Err(Error::NotFound);
    }
    session.may(DelegatedAction::View, Some(&row.doc_type))?;
    let opener = crate::sealing::Opener::for_session(ctx, session).await?;
    let versions = ctx.store.document_versions(id).await?;
    let wanted = version.unwrap_or(row.current_version);
    let chosen = versions
        .iter()
        .find(|v| v.version == wanted)
        .cloned()
        .ok_or(Error::NotFound)?;
    let data_key: DataKey = opener
        .data_key(ctx, id, wanted, chosen.data_key_wrap.as_deref())
        .await?;
    let sealed = chosen.meta_enc.as_deref().ok_or(Error::NotFound)?;
    let json = envelope::open(
        &data_key,
        &crate::sealing::document_aad("document-meta", id, wanted, citizen),
        sealed,
    )
    .map_err(|e| Error::Internal(anyhow::anyhow!("contents of {id} v{wanted}: {e}")))?;
    let meta: Meta = serde_json::from_slice(&json).map_err(|e| Error::Internal(e.into()))?;
    Ok(OpenedVersion {
        row,
        versions,
        chosen,
        data_key,
        meta,
    })
}

/// Opens a version (the latest unless `version` is given). Needs an unlocked vault.
#[tracing::instrument(skip_all, fields(document = %id))]
pub async fn get(
    ctx: &Context,
    session: &Session,
    id: DocumentId,
    version: Option<i32>,
) -> Result<View, Error> {
    let o = open_version(ctx, session, id, version).await?;
    let issuer = match (&o.meta.issuance, o.row.issuer_agency_id) {
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
            trust: super::issuer_trust(ctx, i, o.chosen.created_at).await?,
        }),
        _ => None,
    };
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
        issuer,
        issuer_agency_id: o.row.issuer_agency_id,
        status: status(&o.row),
    })
}

/// Opens the file of a version for delivery: `decide` picks the part from the file's
/// size and entity tag (ranges, revalidation, `HEAD`).
#[tracing::instrument(skip_all, fields(document = %id))]
pub async fn open_file(
    ctx: &Context,
    session: &Session,
    id: DocumentId,
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
