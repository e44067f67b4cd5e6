//! What auditors look at — searches, exports, the console's flags and charts, a full
//! verification, a reasoned reveal — each recorded in the trail before its answer.

use serde::Serialize;

use crate::audit::{ActorKind, Event, ExportedEvent};
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::sessions::Session;
use crate::store::audit::{AuditFilter, AuditRow};

use super::auditor_of;
use super::flags::{
    EMERGENCY_REVIEW_DUE_MS, FLAG_WINDOW_MS, Flag, MANY_CITIZENS_PER_HOUR, REFUSALS_PER_BURST,
    flags,
};

/// An auditor's search.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Query {
    /// A citizen's pseudonym.
    pub citizen: Option<String>,
    /// An agency's id.
    pub agency: Option<String>,
    /// An officer's id.
    pub officer: Option<String>,
    /// An action.
    pub action: Option<String>,
    /// An outcome.
    pub outcome: Option<String>,
    /// From (ms).
    pub since_ms: Option<i64>,
    /// Until (ms).
    pub until_ms: Option<i64>,
    /// Before this sequence number.
    pub before_seq: Option<i64>,
}

impl Query {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            citizen_pseudonym: self.citizen.clone(),
            actor_kind: self.agency.as_ref().map(|_| "agency".to_owned()),
            actor_id: self.agency.clone(),
            officer_id: self.officer.clone(),
            action: self.action.clone(),
            outcome: self.outcome.clone(),
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            before_seq: self.before_seq,
            disclosed_at: None,
        }
    }
}

/// Searches the trail (newest first, at most `limit`), recording the query itself.
#[tracing::instrument(skip_all)]
pub async fn search(
    ctx: &Context,
    session: &Session,
    query: &Query,
    limit: i64,
) -> Result<Vec<AuditRow>, Error> {
    let auditor = auditor_of(session)?;
    let description = serde_json::to_string(query).unwrap_or_default();
    // The query is recorded before its answer is shown, like any read.
    ctx.audit
        .append(
            Event::new(
                ActorKind::Auditor,
                Some(auditor.to_string()),
                crate::audit::Action::AuditQuery,
            )
            .detail(description),
        )
        .await?;
    Ok(ctx.store.audit_search(&query.filter(), limit).await?)
}

/// Records what an auditor looks at beyond a search (the console's flags and charts, a
/// full verification), before the answer is computed, like any read of the trail.
async fn record_look(
    ctx: &Context,
    session: &Session,
    action: crate::audit::Action,
    what: &str,
) -> Result<(), Error> {
    let auditor = auditor_of(session)?;
    ctx.audit
        .append(Event::new(ActorKind::Auditor, Some(auditor.to_string()), action).detail(what))
        .await?;
    Ok(())
}

/// The flagged patterns of the last seven days (recorded as an auditor query).
#[tracing::instrument(skip_all)]
pub async fn recent_flags(ctx: &Context, session: &Session) -> Result<Vec<Flag>, Error> {
    record_look(
        ctx,
        session,
        crate::audit::Action::AuditQuery,
        "console: flagged patterns of the last 7 days",
    )
    .await?;
    let now = ctx.clock.now_ms();
    let counts = ctx
        .store
        .audit_flag_counts(
            now - FLAG_WINDOW_MS,
            MANY_CITIZENS_PER_HOUR,
            REFUSALS_PER_BURST,
        )
        .await?;
    let mut found = flags(&counts);
    // Every emergency access still unreviewed after its due time, however old.
    for e in ctx
        .store
        .overdue_emergency_reviews(now - EMERGENCY_REVIEW_DUE_MS)
        .await?
    {
        found.push(Flag {
            kind: "emergency-unreviewed",
            agency: Some(e.access.agency_id.to_string()),
            officer: Some(e.access.officer_id.clone()),
            detail: format!(
                "emergency access {} ({}) unreviewed since {}",
                e.access.grant_id,
                e.agency_name,
                crate::clock::rfc3339(e.access.created_at)
            ),
        });
    }
    // Acknowledgements the agencies owe, counted per agency (SPEC §6).
    for t in ctx.store.overdue_acks(now).await? {
        found.push(Flag {
            kind: "ack-overdue",
            agency: Some(t.agency_id.to_string()),
            officer: None,
            detail: format!(
                "{} ended grant(s) not acknowledged within a day; {} deletion(s) not confirmed after the retention ran out",
                t.unacknowledged_ends, t.unconfirmed_deletions
            ),
        });
    }
    Ok(found)
}

/// Agency reads (or refusals) per day over the last `days` (recorded as an auditor query).
#[tracing::instrument(skip_all)]
pub async fn volume(
    ctx: &Context,
    session: &Session,
    refusals: bool,
    days: i64,
) -> Result<crate::activity::PerDay, Error> {
    let what = if refusals { "refusals" } else { "reads" };
    record_look(
        ctx,
        session,
        crate::audit::Action::AuditQuery,
        &format!("console: {what} per agency per day, last {days} days"),
    )
    .await?;
    let filter = AuditFilter {
        outcome: Some(if refusals { "refused" } else { "ok" }.into()),
        ..Default::default()
    };
    crate::activity::agency_volume(ctx, filter, days, !refusals).await
}

/// Verifies the whole chain and its checkpoints (recorded first).
#[tracing::instrument(skip_all)]
pub async fn verify_chain(
    ctx: &Context,
    session: &Session,
) -> Result<Result<crate::audit::chain::Summary, crate::audit::chain::Fault>, Error> {
    record_look(
        ctx,
        session,
        crate::audit::Action::AuditVerify,
        "the whole chain",
    )
    .await?;
    let (trust, unreachable) = crate::transparency::witnesses::trust_with_heads(ctx).await;
    for why in unreachable {
        tracing::warn!("verifying the trail without a witness's view: {why}");
    }
    crate::audit::verify_since(&ctx.store, &trust, None, |_, _| {}).await
}

/// Exports the trail for an auditor (recorded).
#[tracing::instrument(skip_all)]
pub async fn export(
    ctx: &Context,
    session: &Session,
    since: Option<i64>,
    until: Option<i64>,
    format: crate::audit::Format,
) -> Result<Vec<u8>, Error> {
    let auditor = auditor_of(session)?;
    ctx.audit
        .append(
            Event::new(
                ActorKind::Auditor,
                Some(auditor.to_string()),
                crate::audit::Action::AuditExport,
            )
            .detail(format!("since {since:?} until {until:?} as {format:?}")),
        )
        .await?;
    let mut out = Vec::new();
    crate::audit::export(&ctx.store, since, until, format, &mut out).await?;
    Ok(out)
}

/// A written case reason: 10 to 1000 characters.
pub(crate) fn case_reason(reason: &str) -> Result<&str, Error> {
    // Held to the rule of every text the trail keeps: no control characters or invisible
    // formatting, so the reason reads the same in the console and in the export.
    let reason = crate::error::plain_text("reason", reason, 1000)?;
    if reason.chars().count() < 10 {
        return Err(invalid(
            "reason",
            "write the case reason (10 to 1000 characters)",
        ));
    }
    Ok(reason)
}

/// Confirms or refutes that `candidate` is the national ID behind `pseudonym`, for a
/// written case reason; recorded (with the reason and the answer) before it is given.
/// The server compares blind indexes: it learns nothing it did not hold, and a console
/// user learns one bit per recorded question. Revealing an unknown ID needs the
/// oversight office's private key ([`super::reveal_with_key`]).
#[tracing::instrument(skip_all)]
pub async fn confirm_identity(
    ctx: &Context,
    session: &Session,
    pseudonym: &str,
    candidate: &str,
    reason: &str,
) -> Result<bool, Error> {
    let auditor = auditor_of(session)?;
    let reason = case_reason(reason)?;
    let candidate = crate::citizens::NationalId::parse(candidate)?;
    let event = Event::new(
        ActorKind::Auditor,
        Some(auditor.to_string()),
        crate::audit::Action::AuditConfirmIdentity,
    );
    let Some(citizen) = ctx.store.citizen_by_pseudonym(pseudonym.trim()).await? else {
        // An attempt on a pseudonym that does not exist is recorded too.
        ctx.audit
            .append(
                event
                    .outcome(crate::audit::Outcome::Refused)
                    .detail(format!("no such pseudonym; reason given: {reason}")),
            )
            .await?;
        return Err(Error::NotFound);
    };
    let index = crate::citizens::national_id_index(ctx, &candidate);
    let matches = custodia_crypto::ct_eq(&index, &citizen.national_id_index);
    let answer = if matches { "confirmed" } else { "refuted" };
    ctx.audit
        .append(
            event
                .citizen(Some(&citizen.pseudonym))
                .detail(format!("{answer}; {reason}")),
        )
        .await?;
    Ok(matches)
}

/// Events as shown to auditors.
pub fn shown(rows: &[AuditRow]) -> Vec<ExportedEvent> {
    rows.iter().map(ExportedEvent::from).collect()
}
