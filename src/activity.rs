//! The citizen's own trail (`/activity`, `GET /me/activity`): every event that concerns
//! them — reads of their documents with agency, officer, case, tier, fields and purpose,
//! refused attempts, their own actions — and nothing of anyone else's.

use std::collections::BTreeMap;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;

use crate::clock::from_ms;
use crate::context::Context;
use crate::error::Error;
use crate::ids::{AgencyId, GrantId};
use crate::sessions::Session;
use crate::store::audit::{AuditFilter, AuditRow};

/// Actions that are reads of a citizen's documents.
pub const READ_ACTIONS: [crate::audit::Action; 2] = [
    crate::audit::Action::DocumentRead,
    crate::audit::Action::DocumentFile,
];

/// Which events to show.
#[derive(Debug, Default, Clone)]
pub struct TrailFilter {
    /// One action (`document.read`, `grant.create`…), or `reads` for every read.
    pub action: Option<String>,
    /// One agency.
    pub agency: Option<AgencyId>,
    /// `ok`, `refused` or `failed`.
    pub outcome: Option<String>,
    /// From (ms).
    pub since_ms: Option<i64>,
    /// Until (ms, exclusive).
    pub until_ms: Option<i64>,
    /// Only events before this sequence number (the cursor).
    pub before_seq: Option<i64>,
    /// Only what this citizen did as the delegate (or guardian) of the one whose trail it is.
    pub delegate: Option<crate::ids::CitizenId>,
}

/// An agency as named in the trail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgencyRef {
    /// Id.
    pub id: AgencyId,
    /// Name.
    pub name: String,
    /// Level of government.
    pub level: String,
}

/// One event of the citizen's trail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Activity {
    /// Sequence number in the audit chain.
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// What happened.
    pub action: String,
    /// `ok`, `refused` or `failed`.
    pub outcome: String,
    /// Who acted: `citizen`, `delegate` (someone acting for the citizen), `agency`,
    /// `operator` or `system`.
    pub actor_kind: String,
    /// The agency, when an agency acted.
    pub agency: Option<AgencyRef>,
    /// The official who read.
    pub officer_id: Option<String>,
    /// The agency's case.
    pub case_id: Option<String>,
    /// Documents (and other objects) concerned.
    pub objects: Vec<String>,
    /// The grant it happened under.
    pub grant_id: Option<GrantId>,
    /// Purpose.
    pub purpose: Option<String>,
    /// Tier.
    pub tier: Option<String>,
    /// Fields revealed.
    pub fields: Vec<String>,
    /// Why (for refusals).
    pub detail: Option<String>,
}

async fn pseudonym(ctx: &Context, session: &Session) -> Result<String, Error> {
    Ok(ctx.store.citizen(session.citizen()?).await?.pseudonym)
}

fn is_read(e: &AuditRow) -> bool {
    e.actor_kind == "agency" && READ_ACTIONS.iter().any(|a| a.as_str() == e.action)
}

/// A page of the citizen's trail, newest first, and the cursor of the next page.
#[tracing::instrument(skip_all)]
pub async fn list(
    ctx: &Context,
    session: &Session,
    filter: &TrailFilter,
    limit: usize,
) -> Result<(Vec<Activity>, Option<i64>), Error> {
    let pseudonym = pseudonym(ctx, session).await?;
    let reads_only = filter.action.as_deref() == Some("reads");
    let (actor_kind, actor_id) = match (filter.agency, filter.delegate) {
        (Some(a), _) => (Some("agency".to_owned()), Some(a.to_string())),
        (None, Some(d)) => (
            Some("delegate".to_owned()),
            Some(ctx.store.citizen(d).await?.pseudonym),
        ),
        (None, None) => (None, None),
    };
    let query = AuditFilter {
        citizen_pseudonym: Some(pseudonym),
        actor_kind,
        actor_id,
        action: filter.action.clone().filter(|_| !reads_only),
        outcome: filter.outcome.clone(),
        since_ms: filter.since_ms,
        until_ms: filter.until_ms,
        before_seq: filter.before_seq,
        disclosed_at: Some(ctx.clock.now_ms()),
        ..AuditFilter::default()
    };
    let mut out = Vec::new();
    let mut cursor = filter.before_seq;
    let mut agencies: BTreeMap<String, Option<AgencyRef>> = BTreeMap::new();
    // Every event the query finds is shown, so one page of `limit` does, unless only reads
    // are wanted (that filter is applied here): then larger pages until `limit` match.
    let page_size = match reads_only {
        true => 200,
        false => i64::try_from(limit).unwrap_or(200),
    };
    loop {
        let page = ctx
            .store
            .audit_search(
                &AuditFilter {
                    before_seq: cursor,
                    ..query.clone()
                },
                page_size,
            )
            .await?;
        let Some(last) = page.last() else {
            return Ok((out, None));
        };
        cursor = Some(last.seq);
        for e in page.iter().filter(|e| !reads_only || is_read(e)) {
            out.push(activity(ctx, e, &mut agencies).await);
            if out.len() == limit {
                return Ok((out, Some(e.seq)));
            }
        }
    }
}

/// The agency that acted in `e`, looked up once per trail page.
async fn agency_of(
    ctx: &Context,
    e: &AuditRow,
    cache: &mut BTreeMap<String, Option<AgencyRef>>,
) -> Option<AgencyRef> {
    let ("agency", Some(id)) = (e.actor_kind.as_str(), &e.actor_id) else {
        return None;
    };
    if let Some(known) = cache.get(id) {
        return known.clone();
    }
    let found = match id.parse::<AgencyId>() {
        Ok(uuid) => ctx.store.agency(uuid).await.ok().map(|a| AgencyRef {
            id: a.id,
            name: a.name,
            level: a.level,
        }),
        Err(_) => None,
    };
    cache.insert(id.clone(), found.clone());
    found
}

async fn activity(
    ctx: &Context,
    e: &AuditRow,
    agencies: &mut BTreeMap<String, Option<AgencyRef>>,
) -> Activity {
    let agency = agency_of(ctx, e, agencies).await;
    Activity {
        seq: e.seq,
        at: from_ms(e.at).format(&Rfc3339).unwrap_or_default(),
        action: e.action.clone(),
        outcome: e.outcome.clone(),
        actor_kind: e.actor_kind.clone(),
        agency,
        officer_id: e.officer_id.clone(),
        case_id: e.case_id.clone(),
        objects: serde_json::from_str(&e.object_ids).unwrap_or_default(),
        grant_id: e.grant_id,
        purpose: e.purpose.clone(),
        tier: e.tier.clone(),
        fields: e
            .fields
            .as_deref()
            .and_then(|f| serde_json::from_str(f).ok())
            .unwrap_or_default(),
        detail: e.detail.clone(),
    }
}

/// Day labels (`MM-DD`, UTC) and, per agency name, counts per day over the last `days`
/// days: what the activity and audit charts plot.
pub type PerDay = (Vec<String>, BTreeMap<String, Vec<u32>>);

/// Agency events matching `filter` (reads only, with `reads_only`) counted per day and
/// agency over the last `days` days.
#[tracing::instrument(skip_all)]
pub async fn agency_volume(
    ctx: &Context,
    filter: AuditFilter,
    days: i64,
    reads_only: bool,
) -> Result<PerDay, Error> {
    const DAY_MS: i64 = 86_400_000;
    let first_day = ctx.clock.now_ms() / DAY_MS - (days - 1);
    let labels: Vec<String> = (0..days)
        .map(|i| {
            from_ms((first_day + i) * DAY_MS)
                .date()
                .format(&time::macros::format_description!("[month]-[day]"))
                .unwrap_or_default()
        })
        .collect();
    let counts = ctx
        .store
        .audit_volume(
            &AuditFilter {
                actor_kind: Some("agency".into()),
                since_ms: Some(first_day * DAY_MS),
                ..filter
            },
            reads_only,
        )
        .await?;
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut series: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for (actor, day, n) in counts {
        let Ok(index) = usize::try_from(day - first_day) else {
            continue;
        };
        let actor = actor.unwrap_or_default();
        let name = match names.get(&actor) {
            Some(name) => name.clone(),
            None => {
                let name = match actor.parse::<AgencyId>() {
                    Ok(id) => ctx
                        .store
                        .agency(id)
                        .await
                        .map(|a| a.name)
                        .unwrap_or_else(|_| actor.clone()),
                    Err(_) => actor.clone(),
                };
                names.insert(actor.clone(), name.clone());
                name
            }
        };
        if let Some(c) = series
            .entry(name)
            .or_insert_with(|| vec![0; labels.len()])
            .get_mut(index)
        {
            *c = c.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        }
    }
    Ok((labels, series))
}

/// Successful reads of this citizen's documents per day by agency, last `days` days.
#[tracing::instrument(skip_all)]
pub async fn reads_per_day(ctx: &Context, session: &Session, days: i64) -> Result<PerDay, Error> {
    let filter = AuditFilter {
        citizen_pseudonym: Some(pseudonym(ctx, session).await?),
        outcome: Some("ok".into()),
        disclosed_at: Some(ctx.clock.now_ms()),
        ..AuditFilter::default()
    };
    agency_volume(ctx, filter, days, true).await
}

/// How many successful agency reads of this citizen's documents they have not seen yet.
#[tracing::instrument(skip_all)]
pub async fn unseen_reads(ctx: &Context, session: &Session) -> Result<i64, Error> {
    let citizen = ctx.store.citizen(session.citizen()?).await?;
    Ok(ctx
        .store
        .count_reads_after(
            &citizen.pseudonym,
            citizen.activity_seen_seq,
            ctx.clock.now_ms(),
        )
        .await?)
}

/// Marks everything up to now as seen.
#[tracing::instrument(skip_all)]
pub async fn mark_seen(ctx: &Context, session: &Session) -> Result<(), Error> {
    let (head, _) = ctx.store.audit_head().await?;
    ctx.store
        .set_activity_seen(session.citizen()?, head)
        .await?;
    Ok(())
}
