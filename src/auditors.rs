//! Auditors: oversight staff who review access trails — metadata of everyone, never
//! document contents (SPEC §1). Accounts come only from `custodia auditor invite`: a
//! one-time link, valid 72 hours, whose holder enrols a passkey. Every query an auditor
//! makes is itself recorded in the trail, and revealing the national ID behind a
//! pseudonym needs a written case reason and is recorded with it.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custodia_crypto::{SecretBytes, digest};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse,
};
use zeroize::Zeroizing;

use crate::audit::{ActorKind, Event, ExportedEvent};
use crate::citizens::{credential_row, stored_passkeys};
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::passkeys::{self, CeremonyKind};
use crate::sessions::{self, Issued, Principal, Session};
use crate::store::audit::{AuditFilter, AuditRow};
use crate::store::auditors::{AuditorRow, InviteRow};

/// How long an enrolment link stays valid.
pub const INVITE_HOURS: i64 = 72;

fn token_hash(token: &str) -> Vec<u8> {
    let mut input = b"auditor-invite\0".to_vec();
    input.extend_from_slice(token.as_bytes());
    digest::sha256(&input).to_vec()
}

fn refused() -> Error {
    Error::Unauthenticated(
        "This enrolment link is not valid: it was used, has expired, or was never issued.".into(),
    )
}

/// Creates an invite for `name` and returns the one-time enrolment link.
pub async fn invite(ctx: &Context, name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid("name", "must be 1 to 100 characters"));
    }
    if ctx.store.auditor_by_name(name).await?.is_some() {
        return Err(Error::Conflict(
            "An auditor with this name exists already.".into(),
        ));
    }
    let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(SecretBytes::random(32).expose()));
    let now = ctx.clock.now_ms();
    let id = Uuid::new_v4();
    ctx.store
        .insert_invite(&InviteRow {
            id,
            token_hash: token_hash(&token),
            name: name.to_owned(),
            created_at: now,
            expires_at: now + INVITE_HOURS * 3_600_000,
            used_at: None,
            auditor_id: None,
        })
        .await?;
    ctx.audit
        .record(Event::new(ActorKind::Operator, None, "auditor.invite").objects([id.to_string()]))
        .await;
    let base = ctx.config.public_url.as_str().trim_end_matches('/');
    Ok(format!("{base}/audit/enrol?token={}", token.as_str()))
}

#[derive(Serialize, Deserialize)]
struct EnrolState {
    invite_id: Uuid,
    auditor_id: Uuid,
    name: String,
    registration: PasskeyRegistration,
}

#[derive(Serialize, Deserialize)]
struct LoginState {
    auditor_id: Uuid,
    authentication: PasskeyAuthentication,
}

async fn live_invite(ctx: &Context, token: &str) -> Result<InviteRow, Error> {
    let invite = ctx
        .store
        .invite_by_hash(&token_hash(token))
        .await?
        .ok_or_else(refused)?;
    if invite.used_at.is_some() || invite.expires_at <= ctx.clock.now_ms() {
        return Err(refused());
    }
    Ok(invite)
}

/// The name an invite is for (to greet the holder), if it is still valid.
pub async fn invite_name(ctx: &Context, token: &str) -> Result<String, Error> {
    Ok(live_invite(ctx, token).await?.name)
}

/// Starts enrolment from an invite.
pub async fn enrol_start(
    ctx: &Context,
    token: &str,
) -> Result<(CreationChallengeResponse, String), Error> {
    let invite = live_invite(ctx, token).await?;
    let auditor_id = Uuid::new_v4();
    let (options, registration) = ctx
        .passkeys
        .webauthn
        .start_passkey_registration(auditor_id, &invite.name, &invite.name, None)
        .map_err(|e| Error::Internal(anyhow::anyhow!("webauthn start: {e}")))?;
    let state = EnrolState {
        invite_id: invite.id,
        auditor_id,
        name: invite.name,
        registration,
    };
    let ceremony = passkeys::begin(
        &ctx.store,
        CeremonyKind::AuditorEnrol,
        &state,
        ctx.clock.now_ms(),
    )
    .await?;
    Ok((options, ceremony))
}

/// Finishes enrolment: the invite is used (once), the auditor and passkey are stored, and
/// a session opens.
pub async fn enrol_finish(
    ctx: &Context,
    ceremony: Option<&str>,
    credential: &RegisterPublicKeyCredential,
) -> Result<(Uuid, Issued), Error> {
    let now = ctx.clock.now_ms();
    let state: EnrolState =
        passkeys::finish(&ctx.store, CeremonyKind::AuditorEnrol, ceremony, now).await?;
    let passkey = ctx
        .passkeys
        .webauthn
        .finish_passkey_registration(credential, &state.registration)
        .map_err(|_| Error::Unauthenticated("The passkey could not be verified.".into()))?;
    let mut tx = ctx.store.begin().await?;
    tx.insert_auditor(&AuditorRow {
        id: state.auditor_id,
        name: state.name.clone(),
        created_at: now,
        disabled_at: None,
    })
    .await
    .map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => {
            Error::Conflict("An auditor with this name exists already.".into())
        }
        other => other.into(),
    })?;
    // Single use: a second finish from the same link changes nothing (the transaction,
    // with the auditor just inserted, is rolled back).
    if !tx
        .use_invite(state.invite_id, state.auditor_id, now)
        .await?
    {
        return Err(refused());
    }
    tx.insert_credential(&credential_row(
        Principal::Auditor(state.auditor_id),
        &passkey,
        "Passkey 1",
        now,
    )?)
    .await?;
    tx.commit().await?;
    let issued = sessions::create(ctx, Principal::Auditor(state.auditor_id), None).await?;
    ctx.audit
        .record(Event::new(
            ActorKind::Auditor,
            Some(state.auditor_id.to_string()),
            "auditor.enrol",
        ))
        .await;
    Ok((state.auditor_id, issued))
}

/// Starts an auditor's sign-in by name.
pub async fn login_start(
    ctx: &Context,
    name: &str,
) -> Result<(RequestChallengeResponse, String), Error> {
    let not_found = || Error::Unauthenticated("No auditor by that name.".into());
    let auditor = ctx
        .store
        .auditor_by_name(name.trim())
        .await?
        .ok_or_else(not_found)?;
    let creds: Vec<Passkey> = stored_passkeys(&ctx.store.auditor_credentials(auditor.id).await?)?;
    let (options, authentication) = ctx
        .passkeys
        .webauthn
        .start_passkey_authentication(&creds)
        .map_err(|e| Error::Internal(anyhow::anyhow!("webauthn start: {e}")))?;
    let state = LoginState {
        auditor_id: auditor.id,
        authentication,
    };
    let ceremony = passkeys::begin(
        &ctx.store,
        CeremonyKind::AuditorLogin,
        &state,
        ctx.clock.now_ms(),
    )
    .await?;
    Ok((options, ceremony))
}

/// Finishes an auditor's sign-in.
pub async fn login_finish(
    ctx: &Context,
    ceremony: Option<&str>,
    credential: &PublicKeyCredential,
) -> Result<(Uuid, Issued), Error> {
    let now = ctx.clock.now_ms();
    let state: LoginState =
        passkeys::finish(&ctx.store, CeremonyKind::AuditorLogin, ceremony, now).await?;
    let event = Event::new(
        ActorKind::Auditor,
        Some(state.auditor_id.to_string()),
        "login",
    );
    let rows = ctx.store.auditor_credentials(state.auditor_id).await?;
    let verified = passkeys::verify_assertion(
        &ctx.passkeys,
        &ctx.store,
        &state.authentication,
        credential,
        &rows,
        now,
    )
    .await?;
    if !verified {
        ctx.audit.record(event.outcome("failed")).await;
        return Err(Error::Unauthenticated(
            "The passkey could not be verified.".into(),
        ));
    }
    let issued = sessions::create(ctx, Principal::Auditor(state.auditor_id), None).await?;
    ctx.audit.record(event).await;
    Ok((state.auditor_id, issued))
}

/// The auditor a session belongs to; citizens are refused.
pub fn auditor_of(session: &Session) -> Result<Uuid, Error> {
    match session.principal {
        Principal::Auditor(id) => Ok(id),
        Principal::Citizen(_) => Err(Error::Forbidden("This is for auditors only.".into())),
    }
}

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
            Event::new(ActorKind::Auditor, Some(auditor.to_string()), "audit.query")
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
    action: &'static str,
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
        "audit.query",
        "console: flagged patterns of the last 7 days",
    )
    .await?;
    let week_ago = ctx.clock.now_ms() - 7 * 86_400_000;
    let recent = ctx
        .store
        .audit_search(
            &AuditFilter {
                since_ms: Some(week_ago),
                ..Default::default()
            },
            RECENT_FOR_FLAGS,
        )
        .await?;
    Ok(flags(&recent))
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
        "audit.query",
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
    record_look(ctx, session, "audit.verify", "the whole chain").await?;
    crate::audit::verify(&ctx.store, |_, _| {}).await
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
                "audit.export",
            )
            .detail(format!("since {since:?} until {until:?} as {format:?}")),
        )
        .await?;
    let mut out = Vec::new();
    crate::audit::export(&ctx.store, since, until, format, &mut out).await?;
    Ok(out)
}

/// Reveals the national ID behind a pseudonym, for a written case reason; recorded (with
/// the reason) before the answer is given.
#[tracing::instrument(skip_all)]
pub async fn reveal(
    ctx: &Context,
    session: &Session,
    pseudonym: &str,
    reason: &str,
) -> Result<String, Error> {
    let auditor = auditor_of(session)?;
    let reason = reason.trim();
    if reason.chars().count() < 10 || reason.chars().count() > 1000 {
        return Err(invalid(
            "reason",
            "write the case reason (10 to 1000 characters)",
        ));
    }
    let event = Event::new(
        ActorKind::Auditor,
        Some(auditor.to_string()),
        "audit.reveal",
    );
    let Some(citizen) = ctx.store.citizen_by_pseudonym(pseudonym.trim()).await? else {
        // An attempt on a pseudonym that does not exist is recorded too.
        ctx.audit
            .append(
                event
                    .outcome("refused")
                    .detail(format!("no such pseudonym; reason given: {reason}")),
            )
            .await?;
        return Err(Error::NotFound);
    };
    ctx.audit
        .append(
            event
                .citizen(Some(&citizen.pseudonym))
                .detail(reason.to_owned()),
        )
        .await?;
    crate::citizens::escrowed_national_id(ctx, &citizen)?
        .ok_or_else(|| Error::Conflict("No national ID is held in escrow for this account.".into()))
}

/// A pattern worth a look.
#[derive(Debug, Clone, Serialize)]
pub struct Flag {
    /// `many-citizens`, `night-reads` or `refusal-burst`.
    pub kind: &'static str,
    /// The agency.
    pub agency: Option<String>,
    /// The officer, where one is involved.
    pub officer: Option<String>,
    /// In words.
    pub detail: String,
}

/// Officers reading at least this many distinct citizens within an hour are flagged.
pub const MANY_CITIZENS_PER_HOUR: usize = 10;
/// The newest events of the last week that the flags look at.
const RECENT_FOR_FLAGS: i64 = 20_000;
/// At least this many refusals for one agency within ten minutes are flagged.
pub const REFUSALS_PER_BURST: usize = 5;

/// Looks for patterns in recent events (newest first): one officer reading many citizens
/// in an hour, reads at night (22:00–06:00 China Standard Time, UTC+8), bursts of
/// refusals.
pub fn flags(events: &[AuditRow]) -> Vec<Flag> {
    let mut out = Vec::new();
    let reads: Vec<&AuditRow> = events
        .iter()
        .filter(|e| e.actor_kind == "agency" && e.action.starts_with("document."))
        .collect();
    // Many citizens per officer per hour.
    let mut per_officer: BTreeMap<(String, String, i64), BTreeSet<String>> = BTreeMap::new();
    for e in reads.iter().filter(|e| e.outcome == "ok") {
        let key = (
            e.actor_id.clone().unwrap_or_default(),
            e.officer_id.clone().unwrap_or_default(),
            e.at / 3_600_000,
        );
        if let Some(c) = &e.citizen_pseudonym {
            per_officer.entry(key).or_default().insert(c.clone());
        }
    }
    for ((agency, officer, hour), citizens) in per_officer {
        if citizens.len() >= MANY_CITIZENS_PER_HOUR {
            out.push(Flag {
                kind: "many-citizens",
                agency: Some(agency),
                officer: Some(officer),
                detail: format!(
                    "{} citizens read within one hour ({})",
                    citizens.len(),
                    crate::clock::from_ms(hour * 3_600_000)
                ),
            });
        }
    }
    // Reads at night, China Standard Time.
    let mut night: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in reads.iter().filter(|e| e.outcome == "ok") {
        let hour_cst = ((e.at / 3_600_000) + 8).rem_euclid(24);
        if !(6..22).contains(&hour_cst) {
            *night
                .entry((
                    e.actor_id.clone().unwrap_or_default(),
                    e.officer_id.clone().unwrap_or_default(),
                ))
                .or_default() += 1;
        }
    }
    for ((agency, officer), n) in night {
        out.push(Flag {
            kind: "night-reads",
            agency: Some(agency),
            officer: Some(officer),
            detail: format!("{n} read(s) between 22:00 and 06:00 (UTC+8)"),
        });
    }
    // Refusal bursts: ≥ N refusals for one agency within any ten minutes.
    let mut refusals: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.actor_kind == "agency" && e.outcome == "refused")
    {
        refusals
            .entry(e.actor_id.clone().unwrap_or_default())
            .or_default()
            .push(e.at);
    }
    for (agency, mut times) in refusals {
        times.sort_unstable();
        let burst = times
            .windows(REFUSALS_PER_BURST)
            .any(|w| w[REFUSALS_PER_BURST - 1] - w[0] <= 600_000);
        if burst {
            out.push(Flag {
                kind: "refusal-burst",
                agency: Some(agency),
                officer: None,
                detail: format!(
                    "{} refusals, at least {REFUSALS_PER_BURST} within ten minutes",
                    times.len()
                ),
            });
        }
    }
    out
}

/// Events as shown to auditors.
pub fn shown(rows: &[AuditRow]) -> Vec<ExportedEvent> {
    rows.iter().map(ExportedEvent::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(at: i64, officer: &str, citizen: &str, outcome: &str) -> AuditRow {
        AuditRow {
            seq: 0,
            at,
            actor_kind: "agency".into(),
            actor_id: Some("agency-1".into()),
            officer_id: Some(officer.into()),
            case_id: None,
            citizen_pseudonym: Some(citizen.into()),
            action: "document.read".into(),
            object_ids: "[]".into(),
            grant_id: None,
            purpose: None,
            tier: None,
            fields: None,
            outcome: outcome.into(),
            bytes_sent: None,
            request_id: None,
            detail: None,
            prev_hash: Vec::new(),
            hash: Vec::new(),
        }
    }

    // 2026-11-28 02:00 UTC = 10:00 in Beijing (daytime).
    const DAY: i64 = 1_795_831_200_000;

    #[test]
    fn patterns_are_flagged_and_ordinary_work_is_not() {
        let ordinary: Vec<AuditRow> = (0..5)
            .map(|i| read(DAY + i * 60_000, "o-1", &format!("p-{i}"), "ok"))
            .collect();
        assert!(flags(&ordinary).is_empty(), "{:?}", flags(&ordinary));

        let many: Vec<AuditRow> = (0..12)
            .map(|i| read(DAY + i * 60_000, "o-2", &format!("p-{i}"), "ok"))
            .collect();
        let f = flags(&many);
        assert!(
            f.iter()
                .any(|f| f.kind == "many-citizens" && f.officer.as_deref() == Some("o-2"))
        );

        // 16:00 UTC = 00:00 in Beijing.
        let night = vec![read(DAY + 14 * 3_600_000, "o-3", "p-1", "ok")];
        assert_eq!(flags(&night)[0].kind, "night-reads");

        let burst: Vec<AuditRow> = (0..5)
            .map(|i| read(DAY + i * 30_000, "o-4", "p-1", "refused"))
            .collect();
        assert!(flags(&burst).iter().any(|f| f.kind == "refusal-burst"));
        let spread: Vec<AuditRow> = (0..5)
            .map(|i| read(DAY + i * 3_600_000, "o-4", "p-1", "refused"))
            .collect();
        assert!(!flags(&spread).iter().any(|f| f.kind == "refusal-burst"));
    }
}
