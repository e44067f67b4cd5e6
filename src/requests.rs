//! Access requests: an agency asks a citizen, by national ID, for types at a tier for a
//! purpose. The purpose catalog and the policy decide before the citizen is asked (no
//! over-asking). The citizen previews exactly what the agency would receive, then approves
//! — possibly narrowed: fewer documents, a lower tier, fewer fields, a shorter time — or
//! denies. Approval creates a grant. Pending requests expire after 14 days.
//!
//! An unknown national ID gets the same answer as a known one: the request is stored with
//! no citizen and simply never answered, so the API is no oracle for who is registered.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::agencies::Level;
use crate::catalog::Tier;
use crate::citizens::NationalId;
use crate::context::Context;
use crate::documents;
use crate::error::{Error, invalid};
use crate::grants::{self, GrantRequest, GrantView, MAX_DAYS};
use crate::ids::{AccessRequestId, AgencyId, DocumentId, GrantId};
use crate::sessions::Session;
use crate::status::{DelegatedAction, RequestStatus};
use crate::store::agencies::AgencyRow;
use crate::store::requests::RequestRow;

/// How long a request waits for an answer.
pub const PENDING_DAYS: i64 = 14;

pub use crate::agencies::Retry;

/// How a request with an `Idempotency-Key` was answered.
pub enum Answer {
    /// Created now.
    Created(AccessRequestId),
    /// The key was used before for the same request: its first answer, as kept.
    Replayed {
        /// The HTTP status first answered.
        status: u16,
        /// The body first answered.
        body: serde_json::Value,
    },
}

/// The first answer kept for `retry`, if the key was used before.
async fn replay(ctx: &Context, agency: &AgencyRow, retry: &Retry) -> Result<Option<Answer>, Error> {
    Ok(crate::agencies::replay(ctx, agency.id, retry)
        .await?
        .map(|(status, body)| Answer::Replayed { status, body }))
}

/// What an agency asks (`POST /api/v1/access-requests`).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// The citizen's national ID number (18 characters, the check digit valid).
    #[schema(pattern = "^[0-9]{17}[0-9Xx]$", min_length = 18, max_length = 18)]
    pub national_id: String,
    /// Types asked for.
    #[schema(min_items = 1)]
    pub document_types: Vec<String>,
    /// Tier asked for.
    pub tier: Tier,
    /// Fields asked for (fields tier).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Purpose code from the catalog.
    #[schema(min_length = 1)]
    pub purpose_code: String,
    /// Purpose in words.
    #[schema(min_length = 1, max_length = 500)]
    pub purpose: String,
    /// Legal basis.
    #[serde(default)]
    #[schema(max_length = 500)]
    pub legal_basis: Option<String>,
    /// Wished duration in days.
    #[schema(minimum = 1, maximum = 365)]
    pub duration_days: i64,
    /// Days the agency will keep what it reads.
    #[schema(minimum = 0, maximum = 3650)]
    pub retention_days: i32,
}

/// A request as the citizen sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    /// Id.
    pub id: AccessRequestId,
    /// The asking agency.
    pub agency_id: AgencyId,
    /// Its name.
    pub agency_name: String,
    /// Its level.
    pub agency_level: String,
    /// Types asked for.
    pub document_types: Vec<String>,
    /// Tier asked for.
    pub tier: Tier,
    /// Fields asked for.
    pub fields: Vec<String>,
    /// Purpose code.
    pub purpose_code: String,
    /// Purpose.
    pub purpose: String,
    /// Legal basis.
    pub legal_basis: Option<String>,
    /// Officer.
    pub officer_id: Option<String>,
    /// Case.
    pub case_id: Option<String>,
    /// Wished duration.
    pub duration_days: i32,
    /// Retention.
    pub retention_days: i32,
    /// `pending`, `approved`, `denied` or `expired` (by time, too).
    pub status: RequestStatus,
    /// The grant that answered it.
    pub grant_id: Option<GrantId>,
}

/// The fields a citizen may share when answering a request at the `fields` tier: those the
/// agency asked for, or, when it asked for everything (`full`), every field of the asked
/// types. The approval and the request's page use this one rule.
pub fn shareable_fields(
    catalog: &crate::catalog::Catalog,
    tier: Tier,
    types: &[String],
    asked: &[String],
) -> Vec<String> {
    if tier == Tier::Full {
        types
            .iter()
            .filter_map(|t| catalog.document_type(t))
            .flat_map(|t| t.fields.iter().map(|f| f.name.clone()))
            .collect()
    } else {
        asked.to_vec()
    }
}

/// Validates and stores an agency's request. Answers `{id, status}` whether or not the
/// national ID belongs to a registered citizen.
#[tracing::instrument(skip_all, fields(agency = %agency.id))]
pub async fn create(
    ctx: &Context,
    agency: &AgencyRow,
    req: &NewRequest,
    officer_id: Option<&str>,
    case_id: Option<&str>,
) -> Result<(AccessRequestId, &'static str), Error> {
    match create_once(ctx, agency, req, officer_id, case_id, None).await? {
        Answer::Created(id) => Ok((id, "pending")),
        Answer::Replayed { .. } => Err(Error::Internal(anyhow::anyhow!(
            "a request without an Idempotency-Key was replayed"
        ))),
    }
}

/// As [`create`], with the agency's `Idempotency-Key`: a retry with the same key and the
/// same request gets the first answer (kept in the transaction that made the request, so
/// a retry racing the first try makes no second request); the same key with another
/// request is refused.
pub async fn create_once(
    ctx: &Context,
    agency: &AgencyRow,
    req: &NewRequest,
    officer_id: Option<&str>,
    case_id: Option<&str>,
    retry: Option<&Retry>,
) -> Result<Answer, Error> {
    if let Some(retry) = retry
        && let Some(answer) = replay(ctx, agency, retry).await?
    {
        return Ok(answer);
    }
    let national_id = NationalId::parse(&req.national_id)?;
    let types: BTreeSet<String> = req.document_types.iter().cloned().collect();
    if types.is_empty() {
        return Err(invalid("document_types", "name at least one document type"));
    }
    let purpose = crate::error::plain_text("purpose", &req.purpose, 500)?;
    if !(1..=MAX_DAYS).contains(&req.duration_days) {
        return Err(invalid(
            "duration_days",
            format!("must be from 1 to {MAX_DAYS}"),
        ));
    }
    if !(0..=3650).contains(&req.retention_days) {
        return Err(invalid("retention_days", "must be from 0 to 3650"));
    }
    let legal_basis = req
        .legal_basis
        .as_deref()
        .filter(|l| !l.trim().is_empty())
        .map(|l| crate::error::plain_text("legal_basis", l, 500))
        .transpose()?;
    let level = Level::parse(&agency.level)?;
    let known = grants::check_policy(
        ctx,
        level,
        &types,
        req.tier,
        legal_basis,
        Some(&req.purpose_code),
    )?;
    let fields = grants::tier_fields(req.tier, &req.fields, &known)?;
    let index = crate::citizens::national_id_index(ctx, &national_id);
    let citizen_id = ctx.store.citizen_by_index(&index).await?.map(|c| c.id);
    let now = ctx.clock.now_ms();
    let id = AccessRequestId::random();
    let pseudonym = match citizen_id {
        Some(c) => Some(ctx.store.citizen(c).await?.pseudonym),
        None => None,
    };
    let mut tx = ctx.store.begin().await?;
    tx.insert_request(&RequestRow {
        id,
        agency_id: agency.id,
        citizen_id,
        document_types: serde_json::json!(types).to_string(),
        tier: req.tier,
        fields: serde_json::json!(fields).to_string(),
        purpose_code: req.purpose_code.clone(),
        purpose: purpose.to_owned(),
        legal_basis: legal_basis.map(str::to_owned),
        officer_id: officer_id.map(str::to_owned),
        case_id: case_id.map(str::to_owned),
        duration_days: i32::try_from(req.duration_days).unwrap_or(1),
        retention_days: req.retention_days,
        status: RequestStatus::Pending,
        created_at: now,
        expires_at: now + PENDING_DAYS * 86_400_000,
        decided_at: None,
        grant_id: None,
    })
    .await?;
    crate::audit::stage(
        &mut tx,
        crate::audit::Event::new(
            crate::audit::ActorKind::Agency,
            Some(agency.id.to_string()),
            crate::audit::Action::RequestCreate,
        )
        .officer(officer_id, case_id)
        .citizen(pseudonym.as_deref())
        .objects([id.to_string()])
        .purpose(Some(&req.purpose_code))
        .tier(req.tier, Some(fields.iter().cloned().collect())),
        now,
    )
    .await?;
    if let Some(retry) = retry {
        let body = serde_json::json!({ "id": id, "status": "pending" });
        if let Some((status, body)) =
            crate::agencies::keep_answer(ctx, tx, agency.id, retry, 201, &body, now).await?
        {
            // The same key committed meanwhile (a retry racing the first try): this one
            // was dropped, and the first answer is given.
            return Ok(Answer::Replayed { status, body });
        }
        ctx.audit.flush().await;
        return Ok(Answer::Created(id));
    }
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(Answer::Created(id))
}

/// What an agency learns of its request: its status and, once approved, the grant.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgencyView {
    /// Id.
    pub id: AccessRequestId,
    /// `pending`, `approved`, `denied` or `expired`. A request to an unregistered national
    /// ID stays `pending` until it expires, like one the citizen never answers.
    pub status: RequestStatus,
    /// The grant that answered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<GrantId>,
}

/// One of the agency's requests.
#[tracing::instrument(skip_all, fields(agency = %agency.id, request = %id))]
pub async fn agency_status(
    ctx: &Context,
    agency: &AgencyRow,
    id: AccessRequestId,
) -> Result<AgencyView, Error> {
    let r = ctx.store.agency_request(agency.id, id).await?;
    Ok(AgencyView {
        id: r.id,
        status: r.status_at(ctx.clock.now_ms()),
        grant_id: r.grant_id,
    })
}

fn view(r: &RequestRow, agency: Option<&AgencyRow>, now_ms: i64) -> RequestView {
    RequestView {
        id: r.id,
        agency_id: r.agency_id,
        agency_name: agency.map(|a| a.name.clone()).unwrap_or_default(),
        agency_level: agency.map(|a| a.level.clone()).unwrap_or_default(),
        document_types: crate::store::json_list::<String>(&r.document_types),
        tier: r.tier,
        fields: crate::store::json_list::<String>(&r.fields),
        purpose_code: r.purpose_code.clone(),
        purpose: r.purpose.clone(),
        legal_basis: r.legal_basis.clone(),
        officer_id: r.officer_id.clone(),
        case_id: r.case_id.clone(),
        duration_days: r.duration_days,
        retention_days: r.retention_days,
        status: r.status_at(now_ms),
        grant_id: r.grant_id,
    }
}

/// The signed-in citizen's requests, with the asking agencies (two queries, whatever the
/// count).
#[tracing::instrument(skip_all)]
pub async fn list(ctx: &Context, session: &Session) -> Result<Vec<RequestView>, Error> {
    let citizen = session.citizen()?;
    let now = ctx.clock.now_ms();
    let agencies: std::collections::HashMap<AgencyId, AgencyRow> = ctx
        .store
        .agencies_asking(citizen)
        .await?
        .into_iter()
        .map(|a| (a.id, a))
        .collect();
    session.may(DelegatedAction::AnswerRequests, None)?;
    Ok(ctx
        .store
        .citizen_requests(citizen)
        .await?
        .iter()
        .filter(|r| answerable(session, r).is_ok())
        .map(|r| view(r, agencies.get(&r.agency_id), now))
        .collect())
}

/// Refuses a request a delegate may not answer: one asking for a type outside her
/// delegation is as absent as another citizen's (`NotFound`); without `answer_requests`
/// she answers none (`Forbidden`). The citizen herself answers all of hers.
fn answerable(session: &Session, r: &RequestRow) -> Result<(), Error> {
    if session.acting().is_none() {
        return Ok(());
    }
    let types = crate::store::json_list::<String>(&r.document_types);
    if !types.iter().all(|t| session.covers(t)) {
        return Err(Error::NotFound);
    }
    for t in &types {
        session.may(DelegatedAction::AnswerRequests, Some(t))?;
    }
    Ok(())
}

/// Exactly what the agency would receive from one document at the asked tier.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PreviewItem {
    /// Document id.
    pub document_id: DocumentId,
    /// Type.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Version that would be read.
    pub version: i32,
    /// SHA-256 of the canonical content (every tier).
    pub content_sha256: String,
    /// Field values revealed (none at `verify`).
    pub fields: BTreeMap<String, String>,
    /// The file revealed (`full` only).
    pub file: Option<documents::FileInfo>,
}

/// The preview of a request: each matching document, cut to the asked tier and fields.
#[tracing::instrument(skip_all, fields(request = %id))]
pub async fn preview(
    ctx: &Context,
    session: &Session,
    id: AccessRequestId,
) -> Result<Vec<PreviewItem>, Error> {
    let citizen = session.citizen()?;
    let r = ctx.store.citizen_request(citizen, id).await?;
    answerable(session, &r)?;
    let types = crate::store::json_list::<String>(&r.document_types);
    let tier = r.tier;
    let wanted: BTreeSet<String> = crate::store::json_list::<String>(&r.fields)
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for d in ctx
        .store
        .citizen_documents(citizen)
        .await?
        .into_iter()
        .filter(|d| types.contains(&d.doc_type) && d.accepted_at.is_some())
    {
        let v = documents::get(ctx, session, d.id, None).await?;
        let fields = match tier {
            Tier::Verify => BTreeMap::new(),
            Tier::Fields => v
                .fields
                .into_iter()
                .filter(|(k, _)| wanted.contains(k))
                .collect(),
            Tier::Full => v.fields,
        };
        out.push(PreviewItem {
            document_id: d.id,
            doc_type: d.doc_type,
            version: v.version,
            content_sha256: v.content_sha256,
            fields,
            file: if tier == Tier::Full { v.file } else { None },
        });
    }
    Ok(out)
}

/// How a citizen may narrow a request when approving it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Narrowing {
    /// Only these documents (of the asked types).
    #[serde(default)]
    pub document_ids: Option<Vec<DocumentId>>,
    /// A tier no higher than asked.
    #[serde(default)]
    pub tier: Option<Tier>,
    /// Fields among those asked.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
    /// No longer than asked.
    #[serde(default)]
    pub duration_days: Option<i64>,
}

/// Approves a pending request, possibly narrowed; widening is refused. Creates the grant.
#[tracing::instrument(skip_all, fields(request = %id))]
pub async fn approve(
    ctx: &Context,
    session: &Session,
    id: AccessRequestId,
    n: &Narrowing,
) -> Result<GrantView, Error> {
    let citizen = session.citizen()?;
    let r = ctx.store.citizen_request(citizen, id).await?;
    answerable(session, &r)?;
    if r.status_at(ctx.clock.now_ms()) != RequestStatus::Pending {
        return Err(Error::Conflict("This request is no longer pending.".into()));
    }
    let asked_tier = r.tier;
    let tier = n.tier.unwrap_or(asked_tier);
    if tier > asked_tier {
        return Err(invalid("tier", "may only be lowered from what was asked"));
    }
    let asked_fields = crate::store::json_list::<String>(&r.fields);
    let fields = match tier {
        Tier::Fields if asked_tier == Tier::Fields => {
            let f = n.fields.clone().unwrap_or_else(|| asked_fields.clone());
            let shareable = shareable_fields(&ctx.catalog, asked_tier, &[], &asked_fields);
            if f.is_empty() || f.iter().any(|x| !shareable.contains(x)) {
                return Err(invalid("fields", "may only be fields that were asked for"));
            }
            f
        }
        // A `full` request asks for every field, so the citizen may share some of them
        // instead; `grants::create_inner` checks each belongs to an asked type.
        Tier::Fields => match &n.fields {
            Some(f) if !f.is_empty() => f.clone(),
            _ => {
                return Err(invalid(
                    "fields",
                    "name the fields to share at the fields tier",
                ));
            }
        },
        // Fields named for a tier that shows none: the citizen meant something else.
        _ if n.fields.as_ref().is_some_and(|f| !f.is_empty()) => {
            return Err(invalid("fields", "only the fields tier shares fields"));
        }
        _ => Vec::new(),
    };
    let duration = n.duration_days.unwrap_or(i64::from(r.duration_days));
    if duration < 1 || duration > i64::from(r.duration_days) {
        return Err(invalid("duration_days", "may only be shortened"));
    }
    let types = crate::store::json_list::<String>(&r.document_types);
    let (document_ids, document_types) = match &n.document_ids {
        None => (Vec::new(), types),
        Some(ids) => {
            let mine = ctx.store.citizen_documents(citizen).await?;
            for d in ids {
                let doc = mine.iter().find(|m| m.id == *d).ok_or(Error::NotFound)?;
                if !types.contains(&doc.doc_type) {
                    return Err(invalid(
                        "document_ids",
                        "may only be documents of the asked types",
                    ));
                }
            }
            (ids.clone(), Vec::new())
        }
    };
    let grant = grants::create_inner(
        ctx,
        session,
        &GrantRequest {
            agency_id: r.agency_id,
            document_ids,
            document_types,
            tier,
            fields,
            purpose: r.purpose.clone(),
            purpose_code: Some(r.purpose_code.clone()),
            legal_basis: r.legal_basis.clone(),
            duration_days: Some(duration),
            expires_at: None,
            max_reads: None,
            retention_days: Some(r.retention_days),
        },
        Some(r.id),
    )
    .await?;
    Ok(grant)
}

/// Denies a pending request.
#[tracing::instrument(skip_all, fields(request = %id))]
pub async fn deny(ctx: &Context, session: &Session, id: AccessRequestId) -> Result<(), Error> {
    let citizen = session.citizen()?;
    let r = ctx.store.citizen_request(citizen, id).await?;
    answerable(session, &r)?;
    let event = session
        .event(ctx, crate::audit::Action::RequestDeny)
        .await?
        .objects([id.to_string()]);
    let now = ctx.clock.now_ms();
    let mut tx = ctx.store.begin().await?;
    if !tx
        .decide_request(id, RequestStatus::Denied, None, now)
        .await?
    {
        return Err(Error::Conflict("This request is no longer pending.".into()));
    }
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(())
}
