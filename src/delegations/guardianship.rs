//! Guardianship: an agency registered as a guardianship authority (a court, a
//! civil-affairs office; `custodia agency create … --guardianship-authority`) declares a
//! guardian for a ward. It is carried out by a delegation from the ward to the guardian
//! with every shareable document type and every action — account settings stay the
//! ward's, as for any delegate — active at once, without the guardian's acceptance (the
//! authority's decision is the basis).
//!
//! Keys reach the guardian when the ward's vault is next unlocked
//! (`sealing::key_waiting_delegations`): nobody else holds the ward's vault key. A minor's
//! guardianship ends by itself at the start of her 18th birthday, read from her national
//! ID: the delegation's end is set to it, so it is refused from that moment and its keys
//! are destroyed by the expiry timer.
//!
//! A ward without an account (a newborn, say) gets one the guardian holds from the start
//! (`citizens::held_account`, named by `ward_display_name`): the guardian's delegation is
//! keyed at once, and the account's hand-over code is sealed to the guardian. At majority
//! the ward enrols a passkey in person (an enrolment code, then re-enrolment) and recovers
//! her vault with the code the guardian hands her: a recorded step that rotates the vault
//! key, after which the former guardian's keys open nothing. The guardian must hold an
//! account (a clear `422` otherwise: the authority identified her in person).

use serde::{Deserialize, Serialize};

use crate::citizens::NationalId;
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::ids::{DelegationId, GuardianshipId};
use crate::status::{DelegatedAction, DelegationStatus};
use crate::store::agencies::AgencyRow;
use crate::store::delegations::{DelegationRow, GuardianshipRow};

/// `POST /api/v1/guardianships`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Declaration {
    /// The ward's national ID number.
    pub ward_national_id: String,
    /// The guardian's national ID number.
    pub guardian_national_id: String,
    /// The legal basis (a court order's number, a statute), 1–500 characters.
    pub basis: String,
    /// When it ends (RFC 3339), at most ten years away; a minor's ends at her 18th
    /// birthday if that comes first.
    #[schema(value_type = String, format = DateTime)]
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
    /// The ward's name, for a ward without an account (one is made, held by the guardian
    /// until she comes of age); ignored otherwise.
    #[serde(default)]
    pub ward_display_name: Option<String>,
}

/// A guardianship as its authority sees it: ids and times, no personal data.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GuardianshipView {
    /// Its id.
    pub id: GuardianshipId,
    /// `active`, `ended` or `expired` (the delegation's status; `pending` never occurs).
    pub status: DelegationStatus,
    /// When it ends (RFC 3339): the declared end or the ward's majority, whichever is first.
    pub expires_at: String,
    /// Whether it ends at the ward's 18th birthday.
    pub ends_at_majority: bool,
    /// Whether the ward had no account, so one was made that the guardian holds.
    pub account_held: bool,
    /// When it was ended, if it was.
    pub ended_at: Option<String>,
}

/// Longest a declared guardianship may run.
const MAX_DAYS: i64 = 3650;

fn view(g: &GuardianshipRow, d: &DelegationRow, now: i64) -> GuardianshipView {
    let rfc = crate::clock::rfc3339;
    GuardianshipView {
        id: g.id,
        status: d.status_at(now),
        expires_at: rfc(d.expires_at),
        ends_at_majority: g.majority_at.is_some_and(|m| m == d.expires_at),
        account_held: d.handover_code.is_some(),
        ended_at: d.ended_at.map(rfc),
    }
}

fn authority(agency: &AgencyRow) -> Result<(), Error> {
    if agency.is_guardianship_authority {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "This agency does not declare guardianships; it must be created with --guardianship-authority."
                .into(),
        ))
    }
}

/// Declares a guardianship: the delegation (active, keys to come at the ward's next
/// unlock), the guardianship row and its record, in one transaction.
#[tracing::instrument(skip_all, fields(agency = %agency.id))]
pub async fn declare(
    ctx: &Context,
    agency: &AgencyRow,
    req: &Declaration,
) -> Result<GuardianshipView, Error> {
    authority(agency)?;
    let basis = crate::error::plain_text("basis", &req.basis, 500)?;
    let ward_id = NationalId::parse(&req.ward_national_id)
        .map_err(|_| invalid("ward_national_id", "is not a valid national ID number"))?;
    let guardian_id = NationalId::parse(&req.guardian_national_id)
        .map_err(|_| invalid("guardian_national_id", "is not a valid national ID number"))?;
    if ward_id == guardian_id {
        return Err(invalid(
            "guardian_national_id",
            "a ward cannot be her own guardian",
        ));
    }
    let now = ctx.clock.now_ms();
    let declared_end = crate::clock::to_ms(req.expires_at);
    if declared_end <= now || declared_end > now + MAX_DAYS * 86_400_000 {
        return Err(invalid(
            "expires_at",
            format!("must be in the future and at most {MAX_DAYS} days away"),
        ));
    }
    let majority_at = ward_id.majority().map(crate::clock::to_ms);
    let expires_at = match majority_at {
        Some(m) if m > now => declared_end.min(m),
        _ => declared_end,
    };
    let find = |id: &NationalId| crate::citizens::national_id_index(ctx, id);
    let guardian = ctx
        .store
        .citizen_by_index(&find(&guardian_id))
        .await?
        .ok_or_else(|| invalid("guardian_national_id", "the guardian has no account yet"))?;
    // The ward's account, or one made for her that the guardian holds.
    let (ward, held) = match ctx.store.citizen_by_index(&find(&ward_id)).await? {
        Some(ward) => (ward, None),
        None => {
            let name = req.ward_display_name.as_deref().ok_or_else(|| {
                invalid(
                    "ward_display_name",
                    "the ward has no account: give her name, and one is made that the guardian holds",
                )
            })?;
            let held = crate::citizens::held_account(ctx, &ward_id, name).await?;
            (held.row.clone(), Some((held, name.to_owned())))
        }
    };
    // Every type that may be shared at all, and every action.
    let types: Vec<String> = ctx
        .catalog
        .document_types()
        .iter()
        .filter(|t| t.sharing_class != crate::catalog::SharingClass::None)
        .map(|t| t.id.clone())
        .collect();
    let id = GuardianshipId::random();
    let delegation_id = DelegationId::random();
    // A held account's vault key is at hand now: the guardian's keys are made at once.
    let mut keyed = None;
    if let Some((held, name)) = &held {
        let keys = crate::sealing::delegation_keys(
            ctx,
            delegation_id,
            ward.id,
            &held.vault_key,
            &guardian.public_key,
            &types,
        )
        .await?;
        let seal = |whose: &'static str, text: &str| {
            crate::sealing::seal_name(
                &guardian.public_key,
                &crate::sealing::delegation_name_aad(delegation_id, whose),
                text,
            )
        };
        keyed = Some((
            keys,
            seal("principal", name)?,
            seal("handover", &held.handover.display())?,
        ));
    }
    let delegation = DelegationRow {
        id: delegation_id,
        principal_id: ward.id,
        delegate_id: guardian.id,
        document_types: crate::store::json_text(&types),
        actions: crate::store::json_text(DelegatedAction::ALL),
        status: DelegationStatus::Active,
        created_at: now,
        accepted_at: Some(now),
        expires_at,
        ended_at: None,
        ended_by: None,
        key_for_delegate: keyed.as_ref().map(|(k, _, _)| k.for_delegate.clone()),
        key_for_principal: keyed.as_ref().map(|(k, _, _)| k.for_principal.clone()),
        principal_name: keyed.as_ref().map(|(_, n, _)| n.clone()),
        delegate_name: None,
        handover_code: keyed.as_ref().map(|(_, _, c)| c.clone()),
        guardianship_id: Some(id),
    };
    let row = GuardianshipRow {
        id,
        agency_id: agency.id,
        delegation_id: delegation.id,
        basis: basis.to_owned(),
        majority_at: majority_at.filter(|m| *m == expires_at),
        created_at: now,
    };
    let event = crate::audit::Event::new(
        crate::audit::ActorKind::Agency,
        Some(agency.id.to_string()),
        crate::audit::Action::GuardianshipDeclare,
    )
    .citizen(Some(&ward.pseudonym))
    .objects([
        id.to_string(),
        delegation.id.to_string(),
        guardian.pseudonym.clone(),
    ])
    .purpose(Some(basis));
    let event = match &held {
        Some(_) => event
            .detail("the ward had no account: one is held by the guardian until she comes of age"),
        None => event,
    };
    let mut tx = ctx.store.begin().await?;
    if let Some((held, _)) = &held {
        tx.insert_citizen(&held.row).await?;
        if let Some((key, sealed)) = &held.national_id_sealed {
            tx.set_sealed_national_id(ward.id, *key, sealed).await?;
        }
    }
    tx.insert_delegation(&delegation).await?;
    tx.insert_guardianship(&row).await?;
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    tracing::info!(guardianship = %id, "guardianship declared");
    Ok(view(&row, &delegation, now))
}

/// One of the authority's guardianships.
pub async fn get(
    ctx: &Context,
    agency: &AgencyRow,
    id: GuardianshipId,
) -> Result<GuardianshipView, Error> {
    authority(agency)?;
    let g = ctx.store.agency_guardianship(agency.id, id).await?;
    let d = ctx.store.delegation(g.delegation_id).await?;
    Ok(view(&g, &d, ctx.clock.now_ms()))
}

/// The authority ends a guardianship it declared: the delegation ends at once and its
/// keys are destroyed.
#[tracing::instrument(skip_all, fields(guardianship = %id))]
pub async fn withdraw(
    ctx: &Context,
    agency: &AgencyRow,
    id: GuardianshipId,
) -> Result<GuardianshipView, Error> {
    authority(agency)?;
    let g = ctx.store.agency_guardianship(agency.id, id).await?;
    let d = ctx.store.delegation(g.delegation_id).await?;
    let ward = ctx.store.citizen(d.principal_id).await?;
    let now = ctx.clock.now_ms();
    let event = crate::audit::Event::new(
        crate::audit::ActorKind::Agency,
        Some(agency.id.to_string()),
        crate::audit::Action::GuardianshipEnd,
    )
    .citizen(Some(&ward.pseudonym))
    .objects([id.to_string(), d.id.to_string()])
    .detail("withdrawn by the authority");
    let mut tx = ctx.store.begin().await?;
    if !tx
        .end_delegation(d.id, DelegationStatus::Ended, "authority", now)
        .await?
    {
        return Err(Error::Conflict(
            "This guardianship has already ended.".into(),
        ));
    }
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.store.scrub().await;
    ctx.audit.flush().await;
    Ok(view(&g, &ctx.store.delegation(d.id).await?, now))
}
