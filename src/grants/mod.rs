//! Grants: a citizen's consent to one agency, for a scope, a tier, a purpose and a time
//! (SPEC §2), enforced by keys as well as by rules (SPEC G5).
//!
//! Creating a grant needs the unlocked vault: each covered document's current data key is
//! re-wrapped under a fresh per-grant key, and that key under the `grant-wrap` service key.
//! Ending a grant (revocation, expiry, exhaustion) deletes the grant key and every wrap in
//! the transaction that changes its status, so afterwards nothing the grant covered can be
//! opened without the citizen.
//!
//! The policy decides before anything is stored: `none`-class types are never granted;
//! `conditional` types need a legal basis; `high`-sensitivity types go at `full` tier only to
//! agencies at or above the configured level; a purpose code limits types and tier.
//!
//! Each grant carries a consent receipt: canonical JSON (RFC 8785) signed with the service's
//! Ed25519 key under the `consent-receipt` context, verifiable offline with the key
//! published at `/api/v1/audit/public-key`.

pub mod acks;
pub mod reads;
mod receipts;
mod refusals;

pub use receipts::{Receipt, receipt};

use std::collections::{BTreeMap, BTreeSet};

use custodia_crypto::sign::CONTEXT_CONSENT_RECEIPT;
use custodia_crypto::{GrantKey, SymmetricKey, digest, wrap};
use serde::{Deserialize, Serialize};

use crate::agencies::Level;
use crate::catalog::{Sensitivity, SharingClass, Tier};
use crate::clock::to_ms;
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::ids::{AccessRequestId, AgencyId, DocumentId, GrantId};
use crate::sessions::Session;
use crate::status::{DelegatedAction, GrantStatus};
use crate::store::grants::{GrantRow, GrantWrapRow};

/// Longest a grant may last.
pub const MAX_DAYS: i64 = 365;
/// Duration when none is given.
pub const DEFAULT_DAYS: i64 = 30;
/// Retention when none is given.
pub const DEFAULT_RETENTION_DAYS: i32 = 30;
/// Agencies below this level never receive `high`-sensitivity types at `full` tier.
pub const FULL_HIGH_MIN_LEVEL: Level = Level::Provincial;

/// What a citizen asks to grant (`POST /me/grants`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The agency.
    pub agency_id: AgencyId,
    /// Documents covered by id.
    #[serde(default)]
    pub document_ids: Vec<DocumentId>,
    /// Types covered (current and, later, new documents of these types).
    #[serde(default)]
    pub document_types: Vec<String>,
    /// How much is revealed.
    pub tier: Tier,
    /// For `fields` tier: the fields revealed.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Why (required).
    pub purpose: String,
    /// A purpose code from the catalog, limiting types and tier.
    #[serde(default)]
    pub purpose_code: Option<String>,
    /// The legal basis (required for conditional types).
    #[serde(default)]
    pub legal_basis: Option<String>,
    /// Lifetime in days (1–365; default 30), unless `expires_at` is given.
    #[serde(default)]
    pub duration_days: Option<i64>,
    /// End of validity (RFC 3339), at most 365 days ahead.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<time::OffsetDateTime>,
    /// Most reads allowed.
    #[serde(default)]
    pub max_reads: Option<i32>,
    /// Days the agency may keep what it read (default 30).
    #[serde(default)]
    pub retention_days: Option<i32>,
}

/// A grant as the citizen (and later the agency) sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantView {
    /// Id.
    pub id: GrantId,
    /// The agency.
    pub agency_id: AgencyId,
    /// Documents covered by id.
    pub document_ids: Vec<DocumentId>,
    /// Types covered.
    pub document_types: Vec<String>,
    /// Tier.
    pub tier: Tier,
    /// Fields (for `fields` tier).
    pub fields: Vec<String>,
    /// Purpose.
    pub purpose: String,
    /// Purpose code.
    pub purpose_code: Option<String>,
    /// Legal basis.
    pub legal_basis: Option<String>,
    /// Start (RFC 3339).
    pub valid_from: String,
    /// End (RFC 3339).
    pub expires_at: String,
    /// Most reads.
    pub max_reads: Option<i32>,
    /// Reads so far.
    pub reads: i32,
    /// Retention days.
    pub retention_days: i32,
    /// `active`, `revoked`, `expired` or `exhausted` — by time too, before any sweep.
    pub status: GrantStatus,
    /// The access request this grant answered, if any.
    pub request_id: Option<AccessRequestId>,
    /// Made by an emergency agency from what the citizen allowed in advance (SPEC §6).
    pub emergency: bool,
    /// When the agency acknowledged that it stopped using the ended grant (RFC 3339).
    pub end_acknowledged_at: Option<String>,
    /// When the retention the agency promised runs out, once the grant has ended (RFC 3339).
    pub retention_due_at: Option<String>,
    /// When, by the agency's confirmation, every copy it kept was deleted (RFC 3339).
    pub deleted_at: Option<String>,
    /// The retention ran out and the agency has not confirmed deletion.
    pub deletion_overdue: bool,
}

/// A grant as shown, with its status at `now_ms`.
pub fn view(g: &GrantRow, now_ms: i64) -> GrantView {
    let due = g
        .ended_at(now_ms)
        .map(|end| end + i64::from(g.retention_days) * 86_400_000);
    GrantView {
        id: g.id,
        agency_id: g.agency_id,
        document_ids: crate::store::json_list(&g.document_ids),
        document_types: crate::store::json_list(&g.document_types),
        tier: g.tier,
        fields: crate::store::json_list(&g.fields),
        purpose: g.purpose.clone(),
        purpose_code: g.purpose_code.clone(),
        legal_basis: g.legal_basis.clone(),
        valid_from: crate::clock::rfc3339(g.valid_from),
        expires_at: crate::clock::rfc3339(g.expires_at),
        max_reads: g.max_reads,
        reads: g.reads,
        retention_days: g.retention_days,
        status: g.status_at(now_ms),
        request_id: g.request_id,
        emergency: g.emergency,
        end_acknowledged_at: g.revocation_ack_at.map(crate::clock::rfc3339),
        retention_due_at: due.map(crate::clock::rfc3339),
        deleted_at: g.retention_deleted_at.map(crate::clock::rfc3339),
        deletion_overdue: g.retention_ack_at.is_none() && due.is_some_and(|d| d <= now_ms),
    }
}

fn policy(message: impl Into<String>) -> Error {
    Error::Forbidden(message.into())
}

/// Checks the catalog policy for giving `types` at `tier` to an agency of `level`; returns
/// the field names the types have. Refusals name the rule (`403`).
pub fn check_policy(
    ctx: &Context,
    level: Level,
    types: &BTreeSet<String>,
    tier: Tier,
    legal_basis: Option<&str>,
    purpose_code: Option<&str>,
) -> Result<BTreeSet<String>, Error> {
    let purpose_spec = match purpose_code {
        None => None,
        Some(code) => Some(ctx.catalog.purpose(code).ok_or_else(|| {
            invalid(
                "purpose_code",
                format!("'{code}' is not a purpose in the catalog"),
            )
        })?),
    };
    let mut known_fields = BTreeSet::new();
    for t in types {
        let spec = ctx
            .catalog
            .document_type(t)
            .ok_or_else(|| invalid("document_types", format!("'{t}' is unknown")))?;
        if spec.sharing_class == SharingClass::None {
            return Err(policy(format!(
                "Policy: {} is never shared.",
                spec.names.en
            )));
        }
        if spec.sharing_class == SharingClass::Conditional && legal_basis.is_none() {
            return Err(policy(format!(
                "Policy: sharing {} needs a legal basis.",
                spec.names.en
            )));
        }
        if spec.sensitivity == Sensitivity::High
            && tier == Tier::Full
            && level < FULL_HIGH_MIN_LEVEL
        {
            return Err(policy(format!(
                "Policy: {} goes at full tier only to {}-level agencies or above.",
                spec.names.en,
                FULL_HIGH_MIN_LEVEL.as_str()
            )));
        }
        if let Some(p) = purpose_spec
            && !p.document_types.iter().any(|pt| pt == t)
        {
            return Err(policy(format!(
                "Policy: the purpose {} does not cover {}.",
                p.code, spec.names.en
            )));
        }
        known_fields.extend(spec.fields.iter().map(|f| f.name.clone()));
    }
    if let Some(p) = purpose_spec
        && tier > p.max_tier
    {
        return Err(policy(format!(
            "Policy: the purpose {} allows at most the {:?} tier.",
            p.code, p.max_tier
        )));
    }
    Ok(known_fields)
}

/// The fields a `tier` reveals, checked against the fields the types have: the `fields`
/// tier names at least one, each a field of the types; the other tiers name none.
pub fn tier_fields(
    tier: Tier,
    fields: &[String],
    known: &BTreeSet<String>,
) -> Result<BTreeSet<String>, Error> {
    let fields: BTreeSet<String> = fields.iter().cloned().collect();
    match tier {
        Tier::Fields if fields.is_empty() => {
            Err(invalid("fields", "name the fields the fields tier reveals"))
        }
        Tier::Fields => match fields.iter().find(|f| !known.contains(*f)) {
            Some(f) => Err(invalid(
                "fields",
                format!("'{f}' is not a field of these document types"),
            )),
            None => Ok(fields),
        },
        _ if !fields.is_empty() => Err(invalid("fields", "only the fields tier lists fields")),
        _ => Ok(fields),
    }
}

/// What a new grant is made of (see [`new_row`]).
pub struct Parts<'a> {
    /// Its id.
    pub id: GrantId,
    /// Whose documents.
    pub citizen: crate::ids::CitizenId,
    /// Her pseudonym (in the receipt).
    pub pseudonym: &'a str,
    /// To whom.
    pub agency: &'a crate::store::agencies::AgencyRow,
    /// The request it answers.
    pub request_id: Option<AccessRequestId>,
    /// Documents by id.
    pub document_ids: &'a [DocumentId],
    /// Types.
    pub document_types: &'a [String],
    /// Tier.
    pub tier: Tier,
    /// Fields of the `fields` tier.
    pub fields: &'a [String],
    /// Why.
    pub purpose: &'a str,
    /// The catalog's purpose code.
    pub purpose_code: Option<&'a str>,
    /// The legal basis.
    pub legal_basis: Option<&'a str>,
    /// Now (its start).
    pub now: i64,
    /// Its end.
    pub expires_at: i64,
    /// Most reads.
    pub max_reads: Option<i32>,
    /// Days the agency may keep what it reads.
    pub retention_days: i32,
    /// Made by breaking the glass.
    pub emergency: bool,
}

/// A new grant's row: its consent receipt (RFC 8785, with `extra` fields) signed with the
/// service key, and its key wrapped under the grant-wrap service key. The one place a grant
/// is made, whether consented now or, for an emergency, in advance.
pub fn new_row(
    ctx: &Context,
    p: &Parts<'_>,
    grant_key: &GrantKey,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Result<GrantRow, Error> {
    let mut receipt = serde_json::json!({
        "receipt_version": 1,
        "grant_id": p.id,
        "citizen": p.pseudonym,
        "agency": { "id": p.agency.id, "name": p.agency.name, "level": p.agency.level },
        "scope": { "document_ids": p.document_ids, "document_types": p.document_types },
        "tier": p.tier,
        "fields": p.fields,
        "purpose": p.purpose,
        "purpose_code": p.purpose_code,
        "legal_basis": p.legal_basis,
        "valid_from": crate::clock::rfc3339(p.now),
        "expires_at": crate::clock::rfc3339(p.expires_at),
        "max_reads": p.max_reads,
        "retention_days": p.retention_days,
        "issued_at": crate::clock::rfc3339(p.now),
        "signing_key_id": ctx.keys.signing_key_id,
    });
    if let Some(fields) = receipt.as_object_mut() {
        fields.extend(extra);
    }
    let canonical = digest::canonical_json(&receipt).map_err(|e| Error::Internal(e.into()))?;
    let signature = ctx
        .keys
        .signing
        .sign(CONTEXT_CONSENT_RECEIPT, canonical.as_bytes());
    Ok(GrantRow {
        id: p.id,
        citizen_id: p.citizen,
        agency_id: p.agency.id,
        request_id: p.request_id,
        document_ids: crate::store::json_text(p.document_ids),
        document_types: crate::store::json_text(p.document_types),
        tier: p.tier,
        fields: crate::store::json_text(p.fields),
        purpose_code: p.purpose_code.map(str::to_owned),
        purpose: p.purpose.to_owned(),
        legal_basis: p.legal_basis.map(str::to_owned),
        valid_from: p.now,
        expires_at: p.expires_at,
        max_reads: p.max_reads,
        reads: 0,
        retention_days: p.retention_days,
        status: GrantStatus::Active,
        status_changed_at: p.now,
        grant_key_wrap: Some(wrap::wrap_key(
            &ctx.keys.grant_wrap,
            grant_key,
            &crate::sealing::grant_key_aad(p.id),
        )),
        receipt: canonical,
        receipt_signature: signature.to_vec(),
        created_at: p.now,
        emergency: p.emergency,
        revocation_ack_at: None,
        retention_ack_at: None,
        retention_deleted_at: None,
    })
}

/// Creates a grant: checks the policy, re-wraps the covered data keys under a fresh grant
/// key, signs the receipt, and stores it all in one transaction.
#[tracing::instrument(skip_all)]
pub async fn create(
    ctx: &Context,
    session: &Session,
    req: &GrantRequest,
) -> Result<GrantView, Error> {
    create_inner(ctx, session, req, None).await
}

/// As [`create`], for the grant that answers an access request.
pub(crate) async fn create_inner(
    ctx: &Context,
    session: &Session,
    req: &GrantRequest,
    request_id: Option<AccessRequestId>,
) -> Result<GrantView, Error> {
    let citizen_id = session.citizen()?;
    // A delegate approves requests with `answer_requests` and gives grants with `grant`,
    // only over her delegation's types, keyed from the delegation exactly as her
    // principal's own grant is keyed from the vault.
    let authority = match request_id {
        Some(_) => DelegatedAction::AnswerRequests,
        None => DelegatedAction::Grant,
    };
    session.may(authority, None)?;
    let opener = crate::sealing::Opener::for_session(ctx, session).await?;
    let now = ctx.clock.now_ms();

    let purpose = crate::error::plain_text("purpose", &req.purpose, 500)?;
    let legal_basis = req
        .legal_basis
        .as_deref()
        .filter(|l| !l.trim().is_empty())
        .map(|l| crate::error::plain_text("legal_basis", l, 500))
        .transpose()?;
    let expires_at = match (req.duration_days, req.expires_at) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "duration_days",
                "give duration_days or expires_at, not both",
            ));
        }
        (Some(d), None) if !(1..=MAX_DAYS).contains(&d) => {
            return Err(invalid(
                "duration_days",
                format!("must be from 1 to {MAX_DAYS}"),
            ));
        }
        (Some(d), None) => now + d * 86_400_000,
        (None, Some(t)) => {
            let t = to_ms(t);
            if t <= now || t > now + MAX_DAYS * 86_400_000 {
                return Err(invalid(
                    "expires_at",
                    format!("must be in the future and at most {MAX_DAYS} days away"),
                ));
            }
            t
        }
        (None, None) => now + DEFAULT_DAYS * 86_400_000,
    };
    if req.max_reads.is_some_and(|m| m < 1) {
        return Err(invalid("max_reads", "must be at least 1"));
    }
    let retention_days = req.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    if !(0..=3650).contains(&retention_days) {
        return Err(invalid("retention_days", "must be from 0 to 3650"));
    }

    let agency = match ctx.store.agency(req.agency_id).await {
        Ok(a) if a.disabled_at.is_none() && a.is_consumer => a,
        Ok(_) | Err(crate::store::StoreError::NotFound) => {
            return Err(invalid("agency_id", "no such agency"));
        }
        Err(e) => return Err(e.into()),
    };
    let level = Level::parse(&agency.level)?;

    // The scope: named documents and named types, resolved to current versions.
    if req.document_ids.is_empty() && req.document_types.is_empty() {
        return Err(invalid(
            "document_ids",
            "name at least one document or document type",
        ));
    }
    let mine = ctx.store.citizen_documents(citizen_id).await?;
    let mut covered = BTreeMap::new();
    for id in &req.document_ids {
        let d = mine
            .iter()
            .find(|d| d.id == *id && session.covers(&d.doc_type))
            .ok_or(Error::NotFound)?;
        if d.accepted_at.is_none() {
            return Err(invalid(
                "document_ids",
                format!("{id} is a deposit you have not accepted yet; accept it first"),
            ));
        }
        covered.insert(d.id, d.clone());
    }
    let types: BTreeSet<String> = req.document_types.iter().cloned().collect();
    for t in &types {
        if ctx.catalog.document_type(t).is_none() {
            return Err(invalid(
                "document_types",
                format!("'{t}' is not a document type"),
            ));
        }
        // Received deposits join only once accepted.
        for d in mine
            .iter()
            .filter(|d| &d.doc_type == t && d.accepted_at.is_some())
        {
            covered.insert(d.id, d.clone());
        }
    }
    let all_types: BTreeSet<String> = types
        .iter()
        .cloned()
        .chain(covered.values().map(|d| d.doc_type.clone()))
        .collect();
    for t in &all_types {
        session.may(authority, Some(t))?;
    }

    // The policy, before anything is stored.
    let known_fields = check_policy(
        ctx,
        level,
        &all_types,
        req.tier,
        legal_basis,
        req.purpose_code.as_deref(),
    )?;
    let fields = tier_fields(req.tier, &req.fields, &known_fields)?;

    // Keys follow consent.
    let id = GrantId::random();
    let grant_key = GrantKey::generate();
    let mut wraps = Vec::new();
    for d in covered.values() {
        let versions = ctx.store.document_versions(d.id).await?;
        let Some(v) = versions.iter().find(|v| v.version == d.current_version) else {
            continue;
        };
        // A version not yet received (a deposit, a delegate's upload) joins at pick-up.
        let data_key = match opener
            .data_key(ctx, d.id, v.version, v.data_key_wrap.as_deref())
            .await
        {
            Ok(k) => k,
            Err(Error::NotFound) => continue,
            Err(e) => return Err(e),
        };
        wraps.push(GrantWrapRow {
            grant_id: id,
            document_id: d.id,
            version: v.version,
            wrapped_key: wrap::wrap_key(
                &grant_key,
                &data_key,
                &crate::sealing::grant_data_key_aad(id, d.id, v.version),
            ),
        });
    }
    let pseudonym = ctx.store.citizen(citizen_id).await?.pseudonym;
    let document_types: Vec<String> = types.iter().cloned().collect();
    let fields: Vec<String> = fields.into_iter().collect();
    // A consent given by a delegate says so, by her pseudonym: the receipt tells who
    // consented, not only whose documents.
    let mut extra = serde_json::Map::new();
    if session.acting().is_some() {
        let delegate = ctx.store.citizen(session.own_citizen()?).await?.pseudonym;
        extra.insert("consented_by_delegate".into(), delegate.into());
    }
    let row = new_row(
        ctx,
        &Parts {
            id,
            citizen: citizen_id,
            pseudonym: &pseudonym,
            agency: &agency,
            request_id,
            document_ids: &req.document_ids,
            document_types: &document_types,
            tier: req.tier,
            fields: &fields,
            purpose,
            purpose_code: req.purpose_code.as_deref(),
            legal_basis,
            now,
            expires_at,
            max_reads: req.max_reads,
            retention_days,
            emergency: false,
        },
        &grant_key,
        extra,
    )?;
    let event = session
        .event(ctx, crate::audit::Action::GrantCreate)
        .await?
        .grant(Some(id))
        .objects(
            std::iter::once(agency.id.to_string())
                .chain(wraps.iter().map(|w| w.document_id.to_string())),
        )
        .purpose(Some(purpose))
        .tier(req.tier, Some(row_fields(&row)));
    let approval = match request_id {
        None => None,
        Some(request) => Some((
            request,
            session
                .event(ctx, crate::audit::Action::RequestApprove)
                .await?
                .grant(Some(id))
                .objects([request.to_string(), agency.id.to_string()])
                .purpose(req.purpose_code.as_deref()),
        )),
    };
    // The grant, its keys, the request's decision and both records: one transaction.
    let mut tx = ctx.store.begin().await?;
    tx.insert_grant(&row).await?;
    for w in &wraps {
        tx.insert_grant_wrap(w).await?;
    }
    crate::audit::stage(&mut tx, event, now).await?;
    if let Some((request, approved)) = approval {
        let decided = tx
            .decide_request(
                request,
                crate::status::RequestStatus::Approved,
                Some(id),
                now,
            )
            .await?;
        if !decided {
            // Answered meanwhile (another tab): nothing of this grant is kept.
            return Err(Error::Conflict(
                "This request was answered meanwhile.".into(),
            ));
        }
        crate::audit::stage(&mut tx, approved, now).await?;
    }
    tx.commit().await?;
    ctx.audit.flush().await;
    tracing::info!(grant = %id, agency = %agency.id, documents = wraps.len(), "grant created");
    Ok(view(&row, now))
}

fn row_fields(row: &GrantRow) -> Vec<String> {
    crate::store::json_list(&row.fields)
}

/// The citizen's grants.
#[tracing::instrument(skip_all)]
pub async fn list(ctx: &Context, session: &Session) -> Result<Vec<GrantView>, Error> {
    let citizen = session.citizen()?;
    let now = ctx.clock.now_ms();
    let mut grants = ctx.store.citizen_grants(citizen).await?;
    // An emergency grant whose disclosure is delayed does not show yet (SPEC §6).
    if grants.iter().any(|g| g.emergency) {
        let hidden = ctx.store.undisclosed_emergency_grants(citizen, now).await?;
        grants.retain(|g| !hidden.contains(&g.id));
    }
    if session.acting().is_none() {
        return Ok(grants.iter().map(|g| view(g, now)).collect());
    }
    // A delegate who may give or revoke grants sees those wholly within her scope.
    if session.may(DelegatedAction::Grant, None).is_err() {
        session.may(DelegatedAction::Revoke, None)?;
    }
    let docs = ctx.store.citizen_documents(citizen).await?;
    Ok(grants
        .iter()
        .filter(|g| covered_types(g, &docs).iter().all(|t| session.covers(t)))
        .map(|g| view(g, now))
        .collect())
}

/// The document types a grant covers: those it names, and those of the documents it names.
fn covered_types(g: &GrantRow, docs: &[crate::store::documents::DocumentRow]) -> BTreeSet<String> {
    let ids: Vec<DocumentId> = crate::store::json_list(&g.document_ids);
    crate::store::json_list::<String>(&g.document_types)
        .into_iter()
        .chain(
            docs.iter()
                .filter(|d| ids.contains(&d.id))
                .map(|d| d.doc_type.clone()),
        )
        .collect()
}

/// A grant as the citizen's grants page lists it: the grant and who holds it.
#[derive(Debug)]
pub struct Held {
    /// The grant.
    pub grant: GrantView,
    /// The agency holding it, by name.
    pub agency_name: String,
}

/// The citizen's grants with their agencies' names (two queries, whatever the count).
#[tracing::instrument(skip_all)]
pub async fn held(ctx: &Context, session: &Session) -> Result<Vec<Held>, Error> {
    let citizen = session.citizen()?;
    let names: std::collections::HashMap<AgencyId, String> = ctx
        .store
        .citizen_grant_agencies(citizen)
        .await?
        .into_iter()
        .collect();
    Ok(list(ctx, session)
        .await?
        .into_iter()
        .map(|grant| Held {
            agency_name: names.get(&grant.agency_id).cloned().unwrap_or_default(),
            grant,
        })
        .collect())
}

/// Revokes one of the citizen's grants: status and key destruction in one transaction.
/// Revoking a grant that already ended changes nothing and says so.
#[tracing::instrument(skip_all, fields(grant = %id))]
pub async fn revoke(ctx: &Context, session: &Session, id: GrantId) -> Result<GrantView, Error> {
    let citizen = session.citizen()?;
    let grant = ctx.store.citizen_grant(citizen, id).await?;
    if session.acting().is_some() {
        let docs = ctx.store.citizen_documents(citizen).await?;
        let types = covered_types(&grant, &docs);
        if !types.iter().all(|t| session.covers(t)) {
            return Err(Error::NotFound);
        }
        for t in &types {
            session.may(DelegatedAction::Revoke, Some(t))?;
        }
    }
    let now = ctx.clock.now_ms();
    let event = session
        .event(ctx, crate::audit::Action::GrantRevoke)
        .await?
        .grant(Some(id))
        .objects([id.to_string()]);
    let mut tx = ctx.store.begin().await?;
    if !tx
        .end_grant(id, Some(citizen), GrantStatus::Revoked, now)
        .await?
    {
        return Err(Error::Conflict("This grant has already ended.".into()));
    }
    // The revocation and its record commit together (G2, G8).
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.store.scrub().await;
    ctx.audit.flush().await;
    tracing::info!(grant = %id, "grant revoked; keys destroyed");
    Ok(view(&ctx.store.citizen_grant(citizen, id).await?, now))
}

/// Ends every active grant past its end: status `expired` and keys destroyed, one grant per
/// transaction. Safe on several nodes: a grant already ended by another is skipped.
/// Returns how many this call ended.
#[tracing::instrument(skip_all)]
pub async fn sweep_expired(ctx: &Context) -> Result<usize, Error> {
    let now = ctx.clock.now_ms();
    let due = ctx.store.expired_active_grants(now).await?;
    let mut ended = 0;
    for id in due {
        let mut tx = ctx.store.begin().await?;
        if tx.end_grant(id, None, GrantStatus::Expired, now).await? {
            crate::audit::stage(
                &mut tx,
                crate::audit::Event::new(
                    crate::audit::ActorKind::System,
                    None,
                    crate::audit::Action::GrantExpire,
                )
                .grant(Some(id))
                .objects([id.to_string()]),
                now,
            )
            .await?;
            ended += 1;
        }
        tx.commit().await?;
    }
    if ended > 0 {
        ctx.store.scrub().await;
        ctx.audit.flush().await;
    }
    Ok(ended)
}

/// How often the expiry timer looks for the next grant to end.
pub const EXPIRY_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Ends grants at their expiry time, not at some later sweep: every [`EXPIRY_TICK`] one
/// indexed query asks when the next active grant ends, and when that time has come (by
/// the context's clock) the due grants are ended and their keys destroyed. Run once at
/// start it ends what expired while the server was down. Runs on every node; a grant
/// another node ended first is skipped.
pub async fn expire_on_time(ctx: std::sync::Arc<Context>) {
    loop {
        match ctx.store.next_grant_expiry().await {
            Ok(Some(at)) if at <= ctx.clock.now_ms() => match sweep_expired(&ctx).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(ended = n, "expired grants ended; their keys destroyed"),
                Err(e) => tracing::warn!(error = %e, "grant expiry failed; will retry"),
            },
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next grant expiry; will retry")
            }
        }
        tokio::time::sleep(EXPIRY_TICK).await;
    }
}
