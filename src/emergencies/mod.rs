//! Break-glass (SPEC §6): emergency reads without a consent given at the time — only of the
//! document types the citizen allowed in advance, always reviewed by an auditor and always
//! disclosed to her.
//!
//! * **Availability** is the citizen's choice ([`set_types`]): for each type she marks
//!   (never a `none`-class one) the current data key of each of her documents of it is also
//!   wrapped under the `emergency-wrap` service key. This is the only way the operator side
//!   can open anything without a live grant, and she sees the list at all times.
//!   Withdrawing a type destroys its wraps and ends every live emergency grant on her
//!   documents at once, in the same transaction.
//! * **Breaking the glass** ([`break_glass`]) is for agencies registered with
//!   `--emergency` (provincial level or above), with officer and case. It makes an
//!   ordinary, time-boxed grant (at most [`MAX_MINUTES`]) keyed from the emergency wraps,
//!   recorded (`emergency.access`, with justification, legal basis, officer and case) in
//!   the transaction that creates it, so before any read. A person with nothing
//!   emergency-available gets the same answer as a national ID nobody registered: no
//!   oracle. A grant is never extended; a new one needs a new use, and each agency gets at
//!   most one per citizen per hour and [`crate::ratelimit::EMERGENCY_PER_AGENCY`] uses an
//!   hour in all.
//! * **Review and disclosure**: every use waits in the auditors' queue ([`queue`]) until
//!   judged justified or unjustified with a note ([`review`], recorded); one unreviewed
//!   after [`REVIEW_DUE_MS`] is flagged. The citizen is told at once — on her home page,
//!   in her trail and among her grants — unless the legal basis names a delay of at most
//!   [`MAX_DELAY_DAYS`] days, recorded with the use; until then nothing of it shows on her
//!   side, and afterwards it appears by itself.

use std::collections::BTreeSet;

use custodia_crypto::{GrantKey, SymmetricKey, wrap};
use serde::{Deserialize, Serialize};

use crate::agencies::Level;
use crate::catalog::{SharingClass, Tier};
use crate::citizens::NationalId;
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::grants::GrantView;
use crate::ids::{AgencyId, GrantId};
use crate::sessions::Session;
use crate::status::GrantStatus;
use crate::store::agencies::AgencyRow;
use crate::store::emergencies::{EmergencyAccessRow, EmergencyListed, EmergencyTally};
use crate::store::grants::GrantWrapRow;

/// Longest an emergency grant lasts.
pub const MAX_MINUTES: i64 = 240;
/// Longest the citizen may be kept uninformed, when the legal basis names a delay.
pub const MAX_DELAY_DAYS: i64 = 30;
/// An emergency access not reviewed within this time is flagged.
pub const REVIEW_DUE_MS: i64 = crate::auditors::EMERGENCY_REVIEW_DUE_MS;
/// Retention when none is given: what the agency may keep of what it read.
pub const DEFAULT_RETENTION_DAYS: i32 = 30;

/// The types a citizen makes emergency-available (`PUT /me/emergency`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Availability {
    /// Document types that may be read in an emergency (never a `none`-class type); an
    /// empty list withdraws every one.
    pub document_types: Vec<String>,
}

/// The citizen's emergency settings and what was read under them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AvailabilityView {
    /// The types emergency agencies may read without asking.
    pub document_types: Vec<String>,
    /// Live emergency grants ended by this change (withdrawing a type ends them).
    pub ended_grants: usize,
    /// Every emergency access to her documents disclosed to her so far, newest first.
    pub accesses: Vec<EmergencyUse>,
}

/// One emergency access, as an auditor reviews it and as the citizen is told of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EmergencyUse {
    /// The emergency grant it made.
    pub grant_id: GrantId,
    /// The agency.
    pub agency_id: AgencyId,
    /// Its name.
    pub agency_name: String,
    /// The citizen, by pseudonym.
    pub citizen: String,
    /// The official who broke the glass.
    pub officer_id: String,
    /// The agency's case.
    pub case_id: String,
    /// Why, in the agency's words.
    pub justification: String,
    /// The law it relied on.
    pub legal_basis: String,
    /// Types covered.
    pub document_types: Vec<String>,
    /// Tier.
    pub tier: Tier,
    /// Reads made under it.
    pub reads: i32,
    /// `active`, `revoked`, `expired` or `exhausted`.
    pub status: GrantStatus,
    /// When (RFC 3339).
    pub created_at: String,
    /// When the grant ends (RFC 3339).
    pub expires_at: String,
    /// When the citizen is (or was) told (RFC 3339).
    pub disclose_at: String,
    /// `justified` or `unjustified`, once reviewed.
    pub verdict: Option<String>,
    /// The auditor's note.
    pub review_note: Option<String>,
    /// When it was reviewed (RFC 3339).
    pub reviewed_at: Option<String>,
    /// Unreviewed for longer than seven days.
    pub overdue: bool,
}

fn shown(e: &EmergencyListed, now_ms: i64) -> EmergencyUse {
    let a = &e.access;
    EmergencyUse {
        grant_id: a.grant_id,
        agency_id: a.agency_id,
        agency_name: e.agency_name.clone(),
        citizen: e.pseudonym.clone(),
        officer_id: a.officer_id.clone(),
        case_id: a.case_id.clone(),
        justification: a.justification.clone(),
        legal_basis: a.legal_basis.clone(),
        document_types: crate::store::json_list(&e.document_types),
        tier: e.tier,
        reads: e.reads,
        status: e.status.at(e.expires_at, now_ms),
        created_at: crate::clock::rfc3339(a.created_at),
        expires_at: crate::clock::rfc3339(e.expires_at),
        disclose_at: crate::clock::rfc3339(a.disclose_at),
        verdict: a.verdict.clone(),
        review_note: a.review_note.clone(),
        reviewed_at: a.reviewed_at.map(crate::clock::rfc3339),
        overdue: a.verdict.is_none() && a.created_at < now_ms - REVIEW_DUE_MS,
    }
}

// ---------------------------------------------------------------------------------------
// The citizen's side.

/// The types the signed-in citizen made emergency-available, sorted.
pub async fn chosen_types(ctx: &Context, session: &Session) -> Result<Vec<String>, Error> {
    Ok(ctx.store.emergency_types(session.citizen()?).await?)
}

/// The signed-in citizen's emergency-available types and the accesses disclosed to her.
#[tracing::instrument(skip_all)]
pub async fn availability(ctx: &Context, session: &Session) -> Result<AvailabilityView, Error> {
    let citizen = session.citizen()?;
    let now = ctx.clock.now_ms();
    Ok(AvailabilityView {
        document_types: ctx.store.emergency_types(citizen).await?,
        ended_grants: 0,
        accesses: ctx
            .store
            .disclosed_emergency_accesses(citizen, now)
            .await?
            .iter()
            .map(|e| shown(e, now))
            .collect(),
    })
}

/// Sets the citizen's emergency-available types. Adding a type widens what the operator
/// side can open, so it needs the unlocked vault (to wrap the keys) and a passkey proved in
/// the last five minutes; withdrawing never needs either, and ends at once every live
/// emergency grant that covers a withdrawn type. One transaction, one record.
#[tracing::instrument(skip_all)]
pub async fn set_types(
    ctx: &Context,
    session: &Session,
    req: &Availability,
) -> Result<AvailabilityView, Error> {
    let citizen = session.own_citizen()?;
    let mut wanted = BTreeSet::new();
    for t in &req.document_types {
        let t = t.trim();
        let spec = ctx
            .catalog
            .document_type(t)
            .ok_or_else(|| invalid("document_types", format!("'{t}' is not a document type")))?;
        if spec.sharing_class == SharingClass::None {
            return Err(invalid(
                "document_types",
                format!(
                    "{} is never shared, not even in an emergency",
                    spec.names.en
                ),
            ));
        }
        wanted.insert(t.to_owned());
    }
    let current: BTreeSet<String> = ctx
        .store
        .emergency_types(citizen)
        .await?
        .into_iter()
        .collect();
    let added: Vec<&String> = wanted.difference(&current).collect();
    let removed: Vec<&String> = current.difference(&wanted).collect();
    let now = ctx.clock.now_ms();

    // The keys of every accepted document of an added type, wrapped for emergencies.
    let mut wraps = Vec::new();
    if !added.is_empty() {
        session.require_fresh(ctx)?;
        let vault_key = session.vault_key()?;
        for d in ctx.store.citizen_documents(citizen).await? {
            if d.accepted_at.is_none() || !added.contains(&&d.doc_type) {
                continue;
            }
            let versions = ctx.store.document_versions(d.id).await?;
            let Some(wrapped) = versions
                .iter()
                .find(|v| v.version == d.current_version)
                .and_then(|v| v.data_key_wrap.as_deref())
            else {
                continue;
            };
            let data_key = crate::sealing::unwrap_data_key(
                &vault_key,
                wrapped,
                d.id,
                d.current_version,
                citizen,
            )?;
            wraps.push(crate::sealing::emergency_wrap(
                ctx,
                citizen,
                d.id,
                &d.doc_type,
                d.current_version,
                &data_key,
            ));
        }
    }

    let pseudonym = ctx.store.citizen(citizen).await?.pseudonym;
    let mut tx = ctx.store.begin().await?;
    for t in &added {
        tx.add_emergency_type(citizen, t, now).await?;
    }
    for w in &wraps {
        tx.insert_emergency_wrap(w).await?;
    }
    let mut ended = Vec::new();
    if !removed.is_empty() {
        for t in &removed {
            tx.remove_emergency_type(citizen, t).await?;
        }
        for (grant, types) in tx.live_emergency_grants(citizen, now).await? {
            let types: Vec<String> = crate::store::json_list(&types);
            if types.iter().any(|t| removed.contains(&t))
                && tx
                    .end_grant(grant, Some(citizen), GrantStatus::Revoked, now)
                    .await?
            {
                crate::audit::stage(
                    &mut tx,
                    crate::audit::by_citizen(&pseudonym, crate::audit::Action::GrantRevoke)
                        .grant(Some(grant))
                        .objects([grant.to_string()])
                        .detail("emergency availability withdrawn"),
                    now,
                )
                .await?;
                ended.push(grant);
            }
        }
    }
    if !added.is_empty() || !removed.is_empty() {
        crate::audit::stage(
            &mut tx,
            crate::audit::by_citizen(&pseudonym, crate::audit::Action::EmergencySet).detail(
                format!(
                    "available: {}; added {}, withdrawn {}, {} document(s) wrapped, {} emergency grant(s) ended",
                    list_text(wanted.iter()),
                    list_text(added.iter().copied()),
                    list_text(removed.iter().copied()),
                    wraps.len(),
                    ended.len()
                ),
            ),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    if !ended.is_empty() {
        ctx.store.scrub().await;
    }
    ctx.audit.flush().await;
    tracing::info!(
        added = added.len(),
        withdrawn = removed.len(),
        ended = ended.len(),
        "emergency availability set"
    );
    let mut view = availability(ctx, session).await?;
    view.ended_grants = ended.len();
    Ok(view)
}

fn list_text<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let items: Vec<&str> = items.map(String::as_str).collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

// ---------------------------------------------------------------------------------------
// The agency's side.

/// An emergency agency's request (`POST /api/v1/emergency-access`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlass {
    /// The person's national ID.
    #[schema(pattern = "^[0-9]{17}[0-9Xx]$", min_length = 18, max_length = 18)]
    pub national_id: String,
    /// The types needed.
    #[schema(min_items = 1)]
    pub document_types: Vec<String>,
    /// How much is revealed.
    pub tier: Tier,
    /// For the `fields` tier: the fields revealed.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Why this cannot wait for consent (10 to 500 characters).
    #[schema(min_length = 10, max_length = 500)]
    pub justification: String,
    /// The law relied on.
    #[schema(min_length = 1, max_length = 500)]
    pub legal_basis: String,
    /// The agency's case (the same as `X-Case-Id`).
    #[schema(min_length = 1, max_length = 100)]
    pub case: String,
    /// How long the grant lasts: 1 to 240 minutes; it is never extended.
    #[schema(minimum = 1, maximum = 240)]
    pub duration_minutes: i64,
    /// Days the citizen is not told, when the legal basis names such a delay (0 to 30;
    /// default 0: told at once).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 30)]
    pub disclosure_delay_days: Option<i64>,
    /// Days the agency may keep what it read (default 30).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3650)]
    pub retention_days: Option<i32>,
}

/// Who broke the glass: the officer and case of the request.
#[derive(Debug, Clone, Copy)]
pub struct Officer<'a> {
    /// `X-Officer-Id`.
    pub officer: &'a str,
    /// `X-Case-Id`.
    pub case: &'a str,
    /// The HTTP request id.
    pub request_id: Option<&'a str>,
}

fn nothing_available() -> Error {
    Error::NotFound
}

/// Breaks the glass: a time-boxed emergency grant over the asked types that the person made
/// emergency-available, recorded before it is returned (so before any read). A person
/// without such documents — or without an account — gets `NotFound` either way.
#[tracing::instrument(skip_all, fields(agency = %agency.id))]
pub async fn break_glass(
    ctx: &Context,
    agency: &AgencyRow,
    req: &BreakGlass,
    by: Officer<'_>,
) -> Result<GrantView, Error> {
    if !agency.is_emergency {
        return Err(Error::Forbidden(
            "This agency is not registered for emergency access.".into(),
        ));
    }
    // Everything that does not depend on the person is checked first, the same for all.
    let national_id = NationalId::parse(&req.national_id)?;
    let justification = crate::error::plain_text("justification", &req.justification, 500)?;
    if justification.chars().count() < 10 {
        return Err(invalid(
            "justification",
            "say why this cannot wait for consent (10 to 500 characters)",
        ));
    }
    let legal_basis = crate::error::plain_text("legal_basis", &req.legal_basis, 500)?;
    if legal_basis.trim().is_empty() {
        return Err(invalid("legal_basis", "name the law relied on"));
    }
    if req.case.trim() != by.case {
        return Err(invalid("case", "must be the case named in X-Case-Id"));
    }
    if !(1..=MAX_MINUTES).contains(&req.duration_minutes) {
        return Err(invalid(
            "duration_minutes",
            format!("must be from 1 to {MAX_MINUTES}"),
        ));
    }
    let delay_days = req.disclosure_delay_days.unwrap_or(0);
    if !(0..=MAX_DELAY_DAYS).contains(&delay_days) {
        return Err(invalid(
            "disclosure_delay_days",
            format!("must be from 0 to {MAX_DELAY_DAYS}"),
        ));
    }
    let retention_days = req.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
    if !(0..=3650).contains(&retention_days) {
        return Err(invalid("retention_days", "must be from 0 to 3650"));
    }
    let types: BTreeSet<String> = req.document_types.iter().cloned().collect();
    if types.is_empty() {
        return Err(invalid("document_types", "name at least one document type"));
    }
    let level = Level::parse(&agency.level)?;
    let known = crate::grants::check_policy(ctx, level, &types, req.tier, Some(legal_basis), None)?;
    let fields = crate::grants::tier_fields(req.tier, &req.fields, &known)?;
    // Every attempt counts against the agency's hourly limit, answered or not.
    crate::ratelimit::check(
        ctx,
        crate::ratelimit::EMERGENCY_PER_AGENCY,
        &agency.id.to_string(),
    )
    .await?;

    let now = ctx.clock.now_ms();
    let refused = |detail: &'static str| {
        crate::audit::Event::new(
            crate::audit::ActorKind::Agency,
            Some(agency.id.to_string()),
            crate::audit::Action::EmergencyAccess,
        )
        .officer(Some(by.officer), Some(by.case))
        .request(by.request_id)
        .purpose(Some(justification))
        .outcome(crate::audit::Outcome::Refused)
        .detail(detail)
    };
    let index = crate::citizens::national_id_index(ctx, &national_id);
    let citizen = ctx.store.citizen_by_index(&index).await?;
    let wraps = match &citizen {
        Some(c) => ctx
            .store
            .emergency_wraps(c.id)
            .await?
            .into_iter()
            .filter(|w| types.contains(&w.doc_type))
            .collect(),
        None => Vec::new(),
    };
    let Some(citizen) = citizen.filter(|_| !wraps.is_empty()) else {
        // The same answer, and the same record, for no account and nothing available.
        ctx.audit
            .append(refused("no emergency-available documents of these types"))
            .await?;
        return Err(nothing_available());
    };
    let cooldown = crate::ratelimit::reserve(
        ctx,
        crate::ratelimit::EMERGENCY_PER_CITIZEN,
        &format!("{}:{}", agency.id, citizen.id),
    )
    .await;
    let cooldown = match cooldown {
        Ok(c) => c,
        Err(e) => {
            ctx.audit
                .append(
                    refused("one emergency grant per citizen per hour")
                        .citizen(Some(&citizen.pseudonym)),
                )
                .await?;
            return Err(e);
        }
    };

    // The grant: keyed from the emergency wraps, exactly as a consented grant is keyed.
    let id = GrantId::random();
    let grant_key = GrantKey::generate();
    let mut grant_wraps = Vec::with_capacity(wraps.len());
    let mut covered = BTreeSet::new();
    for w in &wraps {
        let data_key = crate::sealing::open_emergency_wrap(ctx, w)?;
        covered.insert(w.doc_type.clone());
        grant_wraps.push(GrantWrapRow {
            grant_id: id,
            document_id: w.document_id,
            version: w.version,
            wrapped_key: wrap::wrap_key(
                &grant_key,
                &data_key,
                &crate::sealing::grant_data_key_aad(id, w.document_id, w.version),
            ),
        });
    }
    let expires_at = now + req.duration_minutes * 60_000;
    let disclose_at = now + delay_days * 86_400_000;
    let document_types: Vec<String> = covered.into_iter().collect();
    let fields: Vec<String> = fields.into_iter().collect();
    let mut extra = serde_json::Map::new();
    extra.insert(
        "emergency".into(),
        serde_json::json!({
            "consented_in_advance": true,
            "officer_id": by.officer,
            "case_id": by.case,
            "disclose_at": crate::clock::rfc3339(disclose_at),
        }),
    );
    let row = crate::grants::new_row(
        ctx,
        &crate::grants::Parts {
            id,
            citizen: citizen.id,
            pseudonym: &citizen.pseudonym,
            agency,
            request_id: None,
            document_ids: &[],
            document_types: &document_types,
            tier: req.tier,
            fields: &fields,
            purpose: justification,
            purpose_code: None,
            legal_basis: Some(legal_basis),
            now,
            expires_at,
            max_reads: None,
            retention_days,
            emergency: true,
        },
        &grant_key,
        extra,
    )?;
    let delay = match delay_days {
        0 => "disclosed at once".to_owned(),
        d => format!(
            "disclosure delayed {d} day(s), until {}",
            crate::clock::rfc3339(disclose_at)
        ),
    };
    let event = crate::audit::Event::new(
        crate::audit::ActorKind::Agency,
        Some(agency.id.to_string()),
        crate::audit::Action::EmergencyAccess,
    )
    .officer(Some(by.officer), Some(by.case))
    .request(by.request_id)
    .citizen(Some(&citizen.pseudonym))
    .grant(Some(id))
    .objects(grant_wraps.iter().map(|w| w.document_id.to_string()))
    .purpose(Some(justification))
    .tier(req.tier, Some(fields.clone()))
    .detail(format!(
        "legal basis: {legal_basis}; {} minute(s); {delay}",
        req.duration_minutes
    ));
    let mut tx = ctx.store.begin().await?;
    tx.insert_grant(&row).await?;
    for w in &grant_wraps {
        tx.insert_grant_wrap(w).await?;
    }
    tx.insert_emergency_access(&EmergencyAccessRow {
        grant_id: id,
        agency_id: agency.id,
        citizen_id: citizen.id,
        officer_id: by.officer.to_owned(),
        case_id: by.case.to_owned(),
        justification: justification.to_owned(),
        legal_basis: legal_basis.to_owned(),
        created_at: now,
        disclose_at,
        verdict: None,
        review_note: None,
        reviewed_by: None,
        reviewed_at: None,
    })
    .await?;
    crate::audit::stage(&mut tx, event, now).await?;
    if let Err(e) = tx.commit().await {
        crate::ratelimit::release(ctx, cooldown).await?;
        return Err(e.into());
    }
    ctx.audit.flush().await;
    tracing::warn!(grant = %id, documents = grant_wraps.len(), delay_days, "emergency access granted");
    Ok(crate::grants::view(&row, now))
}

// ---------------------------------------------------------------------------------------
// The auditors' side.

/// An auditor's verdict (`POST /api/v1/audit/emergencies/{grant_id}/review`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    /// `justified` or `unjustified`.
    #[schema(pattern = "^(justified|unjustified)$")]
    pub verdict: String,
    /// Why (10 to 1000 characters), recorded with the verdict.
    #[schema(schema_with = crate::error::reason_text)]
    pub note: String,
}

/// The review queue: per agency, uses, unreviewed and unjustified; and the uses
/// themselves, unreviewed only or all, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Queue {
    /// The uses.
    pub accesses: Vec<EmergencyUse>,
    /// Per agency.
    pub agencies: Vec<AgencyTally>,
}

/// One agency's emergency record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgencyTally {
    /// The agency.
    pub agency_id: AgencyId,
    /// Its name.
    pub agency_name: String,
    /// Emergency accesses.
    pub uses: i64,
    /// Not yet reviewed.
    pub unreviewed: i64,
    /// Judged unjustified.
    pub unjustified: i64,
}

impl From<EmergencyTally> for AgencyTally {
    fn from(t: EmergencyTally) -> Self {
        Self {
            agency_id: t.agency_id,
            agency_name: t.agency_name,
            uses: t.uses,
            unreviewed: t.unreviewed,
            unjustified: t.unjustified,
        }
    }
}

/// Most uses listed at once.
pub const QUEUE_LIMIT: i64 = 200;

/// The review queue (recorded as an auditor's query).
#[tracing::instrument(skip_all)]
pub async fn queue(ctx: &Context, session: &Session, all: bool) -> Result<Queue, Error> {
    let auditor = crate::auditors::auditor_of(session)?;
    ctx.audit
        .append(
            crate::audit::Event::new(
                crate::audit::ActorKind::Auditor,
                Some(auditor.to_string()),
                crate::audit::Action::AuditQuery,
            )
            .detail(if all {
                "emergency accesses: all"
            } else {
                "emergency accesses: unreviewed"
            }),
        )
        .await?;
    let now = ctx.clock.now_ms();
    Ok(Queue {
        accesses: ctx
            .store
            .emergency_queue(!all, QUEUE_LIMIT)
            .await?
            .iter()
            .map(|e| shown(e, now))
            .collect(),
        agencies: ctx
            .store
            .emergency_tally()
            .await?
            .into_iter()
            .map(AgencyTally::from)
            .collect(),
    })
}

/// Records an auditor's verdict on one emergency access: once, with a note, in the trail
/// (with the citizen's pseudonym and the grant, so she sees it once the use is disclosed).
#[tracing::instrument(skip_all, fields(grant = %grant))]
pub async fn review(
    ctx: &Context,
    session: &Session,
    grant: GrantId,
    req: &Review,
) -> Result<EmergencyUse, Error> {
    let auditor = crate::auditors::auditor_of(session)?;
    let verdict = match req.verdict.as_str() {
        v @ ("justified" | "unjustified") => v,
        _ => return Err(invalid("verdict", "must be justified or unjustified")),
    };
    let note = crate::error::plain_text("note", &req.note, 1000)?;
    if note.chars().count() < 10 {
        return Err(invalid(
            "note",
            "write what the verdict rests on (10 to 1000 characters)",
        ));
    }
    let found = ctx
        .store
        .emergency_access(grant)
        .await?
        .ok_or(Error::NotFound)?;
    let now = ctx.clock.now_ms();
    let mut tx = ctx.store.begin().await?;
    if !tx
        .review_emergency_access(grant, verdict, note, auditor, now)
        .await?
    {
        return Err(Error::Conflict(
            "This emergency access was already reviewed.".into(),
        ));
    }
    crate::audit::stage(
        &mut tx,
        crate::audit::Event::new(
            crate::audit::ActorKind::Auditor,
            Some(auditor.to_string()),
            crate::audit::Action::EmergencyReview,
        )
        .citizen(Some(&found.pseudonym))
        .grant(Some(grant))
        .objects([grant.to_string(), found.access.agency_id.to_string()])
        .detail(format!("{verdict}: {note}")),
        now,
    )
    .await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    let reviewed = ctx
        .store
        .emergency_access(grant)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(shown(&reviewed, now))
}
