//! What an agency receives under a grant (SPEC §2 tiers, G1, G2).
//!
//! Every read follows one path: the grant must be the agency's, live by status *and* by
//! time, and hold a wrap of the document's current version (keys follow consent, so a
//! document outside the scope simply cannot be opened). The data key is unwrapped through
//! the grant key, the disclosure is cut to the tier, and only then is the read recorded —
//! the record and the read count commit together ([`crate::audit::AuditLog::append_read`]),
//! and nothing is returned unless they did. Every refusal is recorded too.
//!
//! Refusals never say whether a document exists: a document the grant does not cover, of
//! this or another citizen, and a grant of another agency, all answer 404.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia_crypto::{DataKey, GrantKey, envelope, wrap};
use serde::Serialize;

use super::refusals::{Refusal, ended, refuse};
use super::{GrantView, view};
use crate::audit::{ActorKind, Claim, Event, ReadClaim};
use crate::catalog::Tier;
use crate::context::Context;
use crate::documents::{self, Delivery, FileInfo, FileStream, Meta};
use crate::error::Error;
use crate::ids::{AgencyId, DocumentId, GrantId};
use crate::status::GrantStatus;
use crate::store::StoreError;
use crate::store::agencies::AgencyRow;
use crate::store::blob::BlobName;
use crate::store::documents::DocumentRow;
use crate::store::grants::GrantRow;
use crate::store::reads::{DocumentLoad, GrantLoad, ReadCover, ReadLoad};

/// Who is reading, and in which case (both recorded, both shown to the citizen).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The authenticated agency.
    pub agency: &'a AgencyRow,
    /// `X-Officer-Id`.
    pub officer: &'a str,
    /// `X-Case-Id`.
    pub case: &'a str,
    /// The HTTP request id.
    pub request_id: Option<&'a str>,
}

impl Caller<'_> {
    pub(super) fn event(&self, action: crate::audit::Action) -> Event {
        Event::new(ActorKind::Agency, Some(self.agency.id.to_string()), action)
            .officer(Some(self.officer), Some(self.case))
            .request(self.request_id)
    }
}

/// The issuer of a deposited document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IssuerView {
    /// The issuing agency.
    pub agency_id: AgencyId,
    /// Its name.
    pub name: String,
}

/// What one read returns, cut to the grant's tier.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Disclosure {
    /// Document id.
    pub document_id: DocumentId,
    /// Type id.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// The version read (always the current one).
    pub version: i32,
    /// The tier this was cut to.
    pub tier: Tier,
    /// The issuer, for deposited documents.
    pub issuer: Option<IssuerView>,
    /// Issue date (RFC 3339), for deposited documents.
    pub issued_at: Option<String>,
    /// Expiry date (RFC 3339), if the issuer set one.
    pub expires_at: Option<String>,
    /// For deposited documents: `valid` (the signature holds under a key the issuer
    /// registered), `untrusted` (it holds, but under a key the issuer revoked as
    /// compromised before this deposit arrived) or `invalid`; `none` for documents the
    /// citizen uploaded (self-declared, unsigned).
    pub issuer_signature: &'static str,
    /// SHA-256 of the canonical content (type, fields, file digest), hex.
    pub content_sha256: String,
    /// `fields`: the granted fields only; `full`: every field. Absent at `verify`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// `full` only: the file's name, type, size and digest (bytes at `.../file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
}

/// A document a grant covers, as listed to the agency (no contents).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Covered {
    /// Document id.
    pub id: DocumentId,
    /// Type id.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Current version.
    pub version: i32,
    /// The issuing agency, for deposited documents.
    pub issuer_agency_id: Option<AgencyId>,
}

/// Where a page of an agency's grants ends: the last grant's creation time and id.
pub type Cursor = (i64, GrantId);

/// The agency's grants, newest first, from `after` (a cursor), at most `limit`.
#[tracing::instrument(skip_all)]
pub async fn list(
    ctx: &Context,
    agency: &AgencyRow,
    after: Option<Cursor>,
    limit: i64,
) -> Result<(Vec<GrantView>, Option<Cursor>), Error> {
    let rows = ctx.store.agency_grants(agency.id, after, limit).await?;
    let now = ctx.clock.now_ms();
    let next = if rows.len() as i64 == limit {
        rows.last().map(|g| (g.created_at, g.id))
    } else {
        None
    };
    Ok((rows.iter().map(|g| view(g, now)).collect(), next))
}

/// One of the agency's grants; `NotFound` for any other.
#[tracing::instrument(skip_all, fields(agency = %agency.id, grant = %id))]
pub async fn get(ctx: &Context, agency: &AgencyRow, id: GrantId) -> Result<GrantView, Error> {
    let g = own_grant(ctx, agency, id).await?.ok_or(Error::NotFound)?;
    Ok(view(&g, ctx.clock.now_ms()))
}

async fn own_grant(
    ctx: &Context,
    agency: &AgencyRow,
    id: GrantId,
) -> Result<Option<GrantRow>, Error> {
    match ctx.store.grant(id).await {
        Ok(g) if g.agency_id == agency.id => Ok(Some(g)),
        Ok(_) | Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Checks that the grant is the caller's and live now; refusals are recorded.
async fn live_grant(
    ctx: &Context,
    caller: &Caller<'_>,
    action: crate::audit::Action,
    grant_id: GrantId,
    objects: &[String],
) -> Result<GrantRow, Error> {
    let grant = own_grant(ctx, caller.agency, grant_id).await?;
    check_live(ctx, caller, action, grant_id, grant, objects).await
}

/// Refuses (and records) a grant that is not the caller's, or not live now.
async fn check_live(
    ctx: &Context,
    caller: &Caller<'_>,
    action: crate::audit::Action,
    grant_id: GrantId,
    grant: Option<GrantRow>,
    objects: &[String],
) -> Result<GrantRow, Error> {
    let Some(g) = grant else {
        let mut objs = vec![grant_id.to_string()];
        objs.extend_from_slice(objects);
        return Err(refuse(
            ctx,
            caller,
            action,
            None,
            objs,
            Refusal::NoGrant,
            Error::NotFound,
        )
        .await);
    };
    let now = ctx.clock.now_ms();
    let status = g.status_at(now);
    if status != GrantStatus::Active {
        return Err(refuse(
            ctx,
            caller,
            action,
            Some(&g),
            objects.to_vec(),
            Refusal::NotLive(status),
            ended(status),
        )
        .await);
    }
    if g.valid_from > now {
        return Err(refuse(
            ctx,
            caller,
            action,
            Some(&g),
            objects.to_vec(),
            Refusal::NotYetValid,
            Error::Forbidden("This grant is not valid yet.".into()),
        )
        .await);
    }
    Ok(g)
}

/// The documents a live grant covers now.
#[tracing::instrument(skip_all, fields(agency = %caller.agency.id, grant = %grant_id))]
pub async fn documents(
    ctx: &Context,
    caller: &Caller<'_>,
    grant_id: GrantId,
) -> Result<Vec<Covered>, Error> {
    let g = live_grant(
        ctx,
        caller,
        crate::audit::Action::GrantDocuments,
        grant_id,
        &[],
    )
    .await?;
    let docs = ctx.store.grant_documents(g.id).await?;
    let pseudonym = ctx.store.citizen(g.citizen_id).await?.pseudonym;
    ctx.audit
        .append(
            caller
                .event(crate::audit::Action::GrantDocuments)
                .citizen(Some(&pseudonym))
                .grant(Some(g.id))
                .purpose(Some(&g.purpose))
                .objects(docs.iter().map(|d| d.id.to_string())),
        )
        .await?;
    Ok(docs
        .into_iter()
        .map(|d| Covered {
            id: d.id,
            doc_type: d.doc_type,
            version: d.current_version,
            issuer_agency_id: d.issuer_agency_id,
        })
        .collect())
}

/// An agency's read as it arrives: the presented API key, the official and the case.
#[derive(Debug, Clone, Copy)]
pub struct ReadRequest<'a> {
    /// The API key as presented (`Authorization: Bearer`).
    pub api_key: &'a str,
    /// `X-Officer-Id`.
    pub officer: &'a str,
    /// `X-Case-Id`.
    pub case: &'a str,
    /// The HTTP request id.
    pub request_id: Option<&'a str>,
}

impl<'a> ReadRequest<'a> {
    fn caller(&self, agency: &'a AgencyRow) -> Caller<'a> {
        Caller {
            agency,
            officer: self.officer,
            case: self.case,
            request_id: self.request_id,
        }
    }
}

/// Authenticates a read and loads what it needs in one statement
/// ([`crate::store::Store::read_load`]), or from a load kept from the last seconds when
/// `fresh` is false. Either way the read's claim checks again, in the batch that records
/// it, that the key, the agency, the grant and the document still hold (a rotated key, a
/// disabled agency, a revoke stop the read there on every node); a kept load that no
/// longer holds makes the read start again here with `fresh`.
async fn load(
    ctx: &Context,
    request: &ReadRequest<'_>,
    grant_id: GrantId,
    doc_id: DocumentId,
    fresh: bool,
) -> Result<ReadLoad, Error> {
    let hash = crate::agencies::presented_key_hash(request.api_key)?;
    let loaded = ctx
        .store
        .read_load(&hash, grant_id, doc_id, fresh)
        .await?
        .ok_or_else(|| Error::Unauthenticated("The API key is not valid.".into()))?;
    crate::agencies::admit(
        ctx,
        &hash,
        &loaded.key_hash,
        loaded.key_expires_at,
        &loaded.agency,
    )?;
    Ok(loaded)
}

struct GrantedDocument {
    grant: GrantRow,
    /// What the read's claim checks besides the grant, and whether it came from a kept load.
    cover: ReadCover,
    cached: bool,
    doc: DocumentRow,
    version_created_at: i64,
    blob_name: Option<String>,
    issuer_name: Option<String>,
    data_key: DataKey,
    meta: Meta,
    pseudonym: String,
}

/// Authenticates a read ([`load`]) and opens the document it names ([`open`]): the
/// agency, and what it may read.
async fn prepare(
    ctx: &Context,
    request: &ReadRequest<'_>,
    action: crate::audit::Action,
    grant_id: GrantId,
    doc_id: DocumentId,
    fresh: bool,
) -> Result<(AgencyRow, GrantedDocument), Error> {
    let ReadLoad {
        agency,
        grant,
        key_hash,
        cached,
        ..
    } = load(ctx, request, grant_id, doc_id, fresh).await?;
    let source = Source { key_hash, cached };
    let opened = open(
        ctx,
        &request.caller(&agency),
        action,
        grant_id,
        doc_id,
        grant,
        source,
    )
    .await?;
    Ok((agency, opened))
}

/// Where a read's load came from: the presented key's hash, and whether the load was kept
/// rather than read just now (see [`load`]).
struct Source {
    key_hash: Vec<u8>,
    cached: bool,
}

async fn open(
    ctx: &Context,
    caller: &Caller<'_>,
    action: crate::audit::Action,
    grant_id: GrantId,
    doc_id: DocumentId,
    loaded: Option<GrantLoad>,
    source: Source,
) -> Result<GrantedDocument, Error> {
    let objects = [doc_id.to_string()];
    let (grant, pseudonym, document) = match loaded {
        Some(l) => (Some(l.grant), l.pseudonym, l.document),
        None => (None, String::new(), None),
    };
    let grant = check_live(ctx, caller, action, grant_id, grant, &objects).await?;
    let not_covered = |g: GrantRow| async move {
        refuse(
            ctx,
            caller,
            action,
            Some(&g),
            vec![doc_id.to_string()],
            Refusal::NotCovered,
            Error::NotFound,
        )
        .await
    };
    // Only a document of the grant's citizen whose current version the grant holds a
    // wrap for can be opened at all.
    let Some(document) = document else {
        return Err(not_covered(grant).await);
    };
    let DocumentLoad {
        doc,
        meta_enc,
        blob_name,
        version_created_at,
        wrapped_key,
        issuer_name,
    } = document;
    let (Some(wrapped), Some(grant_key_wrap)) = (wrapped_key, grant.grant_key_wrap.as_deref())
    else {
        return Err(not_covered(grant).await);
    };
    let grant_key: GrantKey = wrap::unwrap_key(
        &ctx.keys.grant_wrap,
        grant_key_wrap,
        &crate::sealing::grant_key_aad(grant.id),
    )
    .map_err(|e| Error::Internal(anyhow::anyhow!("grant key of {}: {e}", grant.id)))?;
    let data_key: DataKey = wrap::unwrap_key(
        &grant_key,
        &wrapped,
        &crate::sealing::grant_data_key_aad(grant.id, doc.id, doc.current_version),
    )
    .map_err(|e| Error::Internal(anyhow::anyhow!("data key of {doc_id} under a grant: {e}")))?;
    let sealed = meta_enc.as_deref().ok_or(Error::NotFound)?;
    let json = envelope::open(
        &data_key,
        &crate::sealing::document_aad("document-meta", doc.id, doc.current_version, doc.citizen_id),
        sealed,
    )
    .map_err(|e| Error::Internal(anyhow::anyhow!("contents of {doc_id}: {e}")))?;
    let meta: Meta = serde_json::from_slice(&json).map_err(|e| Error::Internal(e.into()))?;
    Ok(GrantedDocument {
        cover: ReadCover {
            key_hash: source.key_hash,
            document: doc.id,
            version: doc.current_version,
        },
        cached: source.cached,
        grant,
        doc,
        version_created_at,
        blob_name,
        issuer_name,
        data_key,
        meta,
        pseudonym,
    })
}

/// What became of a read's record.
enum Recorded {
    /// Recorded and counted: the read may proceed.
    Yes,
    /// Prepared from a kept load that no longer holds; nothing recorded: start again
    /// from the database.
    Stale,
}

/// Records the read (counting it against the grant) and says whether it may proceed.
async fn record(ctx: &Context, o: &GrantedDocument, event: Event) -> Result<Recorded, Error> {
    let tier = o.grant.tier.as_str();
    let claim = ReadClaim {
        grant: o.grant.id,
        cover: o.cover.clone(),
        cached: o.cached,
    };
    let outcome = ctx.audit.append_read(event, claim).await;
    let label = match &outcome {
        Ok(Claim::Granted { .. }) => "ok",
        Ok(Claim::Refused { .. }) => "refused",
        Ok(Claim::Stale) => "stale",
        Err(_) => "audit-unavailable",
    };
    metrics::counter!("custodia_reads_total", "tier" => tier, "outcome" => label).increment(1);
    match outcome? {
        Claim::Granted { .. } => Ok(Recorded::Yes),
        Claim::Stale => Ok(Recorded::Stale),
        Claim::Refused { .. } => {
            metrics::counter!("custodia_refusals_total", "reason" => "grant-ended-meanwhile")
                .increment(1);
            Err(ended("no longer active"))
        }
    }
}

/// Reads one document at the grant's tier. `only` narrows a `fields` or `full` read to
/// some fields (each must be granted).
#[tracing::instrument(skip_all, fields(grant = %grant_id, document = %doc_id))]
pub async fn read(
    ctx: &Context,
    request: &ReadRequest<'_>,
    grant_id: GrantId,
    doc_id: DocumentId,
    only: Option<&[String]>,
) -> Result<Disclosure, Error> {
    kept_then_fresh(|fresh| read_from(ctx, request, grant_id, doc_id, only, fresh)).await
}

/// Runs a read from a kept load, and once more from the database if what was kept turned
/// out stale (nothing was recorded or sent the first time).
async fn kept_then_fresh<T, F, Fut>(attempt: F) -> Result<T, Error>
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, Error>>,
{
    match attempt(false).await? {
        Some(done) => Ok(done),
        None => attempt(true)
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a fresh read was answered as stale"))),
    }
}

/// One attempt at [`read`]; `None` when a kept load turned out stale (nothing recorded).
async fn read_from(
    ctx: &Context,
    request: &ReadRequest<'_>,
    grant_id: GrantId,
    doc_id: DocumentId,
    only: Option<&[String]>,
    fresh: bool,
) -> Result<Option<Disclosure>, Error> {
    const ACTION: crate::audit::Action = crate::audit::Action::DocumentRead;
    let (agency, o) = prepare(ctx, request, ACTION, grant_id, doc_id, fresh).await?;
    let caller = &request.caller(&agency);
    let tier = o.grant.tier;
    let granted: Option<Vec<String>> = match tier {
        Tier::Verify => None,
        Tier::Fields => Some(crate::store::json_list::<String>(&o.grant.fields)),
        Tier::Full => Some(o.meta.fields.keys().cloned().collect()),
    };
    if let Some(only) = only {
        let allowed = granted.clone().unwrap_or_default();
        if let Some(f) = only.iter().find(|f| !allowed.contains(f)) {
            return Err(refuse(
                ctx,
                caller,
                ACTION,
                Some(&o.grant),
                vec![doc_id.to_string()],
                Refusal::FieldNotGranted(f.clone()),
                Error::Forbidden(format!("The grant does not reveal the field '{f}'.")),
            )
            .await);
        }
    }
    let revealed: Option<Vec<String>> = match (granted, only) {
        (Some(_), Some(only)) => Some(only.to_vec()),
        (g, _) => g,
    };
    let fields = revealed.as_ref().map(|names| {
        o.meta
            .fields
            .iter()
            .filter(|(k, _)| names.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    });
    let issuance = o.meta.issuance.as_ref();
    let issuer = o.doc.issuer_agency_id.map(|id| IssuerView {
        agency_id: id,
        name: o.issuer_name.clone().unwrap_or_default(),
    });
    let disclosure = Disclosure {
        document_id: o.doc.id,
        doc_type: o.meta.doc_type.clone(),
        version: o.doc.current_version,
        tier,
        issuer,
        issued_at: issuance.map(|i| i.issued_at.clone()),
        expires_at: issuance.and_then(|i| i.expires_at.clone()),
        issuer_signature: match issuance {
            None => "none",
            Some(i) => crate::documents::issuer_trust(ctx, i, o.version_created_at).await?,
        },
        content_sha256: o.meta.content_sha256.clone(),
        fields,
        file: if tier == Tier::Full {
            o.meta.file.clone()
        } else {
            None
        },
    };
    let size = serde_json::to_vec(&disclosure).map_or(0, |b| b.len() as u64);
    let event = caller
        .event(ACTION)
        .citizen(Some(&o.pseudonym))
        .grant(Some(o.grant.id))
        .purpose(Some(&o.grant.purpose))
        .objects([o.doc.id.to_string()])
        .tier(tier, revealed)
        .bytes(Some(size));
    Ok(match record(ctx, &o, event).await? {
        Recorded::Yes => Some(disclosure),
        Recorded::Stale => None,
    })
}

/// Opens the file of a document under a `full` grant, recording the read first. `decide`
/// picks the part from the file's size and entity tag; the record names it (a range, a
/// revalidation, headers only) and counts the bytes that leave. Every request is one read.
#[tracing::instrument(skip_all, fields(grant = %grant_id, document = %doc_id))]
pub async fn read_file(
    ctx: &Context,
    request: &ReadRequest<'_>,
    grant_id: GrantId,
    doc_id: DocumentId,
    decide: impl Fn(&FileInfo) -> Delivery,
) -> Result<FileStream, Error> {
    kept_then_fresh(|fresh| read_file_from(ctx, request, grant_id, doc_id, &decide, fresh)).await
}

/// One attempt at [`read_file`]; `None` when a kept load turned out stale (nothing
/// recorded, nothing sent).
async fn read_file_from(
    ctx: &Context,
    request: &ReadRequest<'_>,
    grant_id: GrantId,
    doc_id: DocumentId,
    decide: &impl Fn(&FileInfo) -> Delivery,
    fresh: bool,
) -> Result<Option<FileStream>, Error> {
    const ACTION: crate::audit::Action = crate::audit::Action::DocumentFile;
    let (agency, o) = prepare(ctx, request, ACTION, grant_id, doc_id, fresh).await?;
    let caller = &request.caller(&agency);
    let tier = o.grant.tier;
    if tier != Tier::Full {
        return Err(refuse(
            ctx,
            caller,
            ACTION,
            Some(&o.grant),
            vec![doc_id.to_string()],
            Refusal::TierTooLow,
            Error::Forbidden(format!(
                "This grant is at the {} tier; files need the full tier.",
                tier.as_str()
            )),
        )
        .await);
    }
    let Some(info) = o.meta.file.clone() else {
        return Err(refuse(
            ctx,
            caller,
            ACTION,
            Some(&o.grant),
            vec![doc_id.to_string()],
            Refusal::NoFile,
            Error::NotFound,
        )
        .await);
    };
    let name = o
        .blob_name
        .as_deref()
        .and_then(BlobName::parse)
        .ok_or(Error::NotFound)?;
    let delivery = decide(&info);
    let size = info.size;
    let mut event = caller
        .event(ACTION)
        .citizen(Some(&o.pseudonym))
        .grant(Some(o.grant.id))
        .purpose(Some(&o.grant.purpose))
        .objects([o.doc.id.to_string()])
        .tier(tier, None)
        .bytes(Some(delivery.bytes_sent(size)));
    if let Some(note) = delivery.note(size) {
        event = event.detail(note);
    }
    // The blob is opened (its header read) first, so a missing blob is not counted as a
    // read; no byte of the file is sent before the record. The record is queued first;
    // while it is written, the first chunk is decrypted if its bytes are in memory
    // already, so the response is ready once it commits. A refused read drops that
    // plaintext, wiped, unsent.
    let mut opened = documents::files::open(
        &ctx.blobs,
        &name,
        &o.data_key,
        &crate::sealing::document_aad(
            "document-file",
            o.doc.id,
            o.doc.current_version,
            o.doc.citizen_id,
        ),
        info,
        delivery,
    )
    .await?;
    let recorded = futures_util::future::join(record(ctx, &o, event), async {
        opened.open_ahead();
    })
    .await
    .0;
    Ok(match recorded? {
        Recorded::Yes => Some(opened),
        Recorded::Stale => None,
    })
}

/// Encodes a list cursor.
pub fn encode_cursor(at: i64, id: GrantId) -> String {
    URL_SAFE_NO_PAD.encode(format!("{at}:{id}"))
}

/// Decodes a list cursor.
pub fn decode_cursor(text: &str) -> Result<Cursor, Error> {
    let bad = || crate::error::invalid("cursor", "is not a cursor this API returned");
    let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (at, id) = raw.split_once(':').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

/// Property tests for the list cursor, which agencies send back as they please.
#[cfg(test)]
mod cursor_properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cursors_round_trip(at in any::<i64>(), id in any::<u128>()) {
            let id = GrantId::from_uuid(uuid::Uuid::from_u128(id));
            let decoded = decode_cursor(&encode_cursor(at, id));
            prop_assert!(matches!(decoded, Ok((a, i)) if a == at && i == id));
        }

        #[test]
        fn any_text_is_a_clear_refusal_or_a_cursor(text in "\\PC{0,80}") {
            if let Err(e) = decode_cursor(&text) {
                let named_cursor = matches!(e, Error::Invalid { field: "cursor", .. });
                prop_assert!(named_cursor);
            }
        }
    }
}
