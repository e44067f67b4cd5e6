//! Acting for someone else (SPEC §6): a citizen (the principal) appoints another
//! registered citizen (the delegate) to act for her within a scope — document types and
//! actions — until an expiry. The delegate accepts before it takes effect; either side can
//! end it at once.
//!
//! A delegate acts by naming the principal (`X-Acting-For`); every such request finds the
//! live delegation in the database ([`act_for`]), so an end committed on any node holds on
//! the next request everywhere. What she may do is checked by the domain functions she
//! calls (`Session::may`, `Session::covers`); account settings, passkeys, the passphrase,
//! recovery and delegations themselves are refused to anyone acting for someone (the HTTP
//! layer lets `X-Acting-For` through only on the routes a delegate may use).
//!
//! Keys follow the delegation (G5, `sealing`): the covered data keys are wrapped under a
//! delegation key sealed to the delegate, so she opens them with her own vault and nobody
//! else can; ending the delegation destroys them.

pub mod guardianship;

use serde::{Deserialize, Serialize};

use crate::citizens::NationalId;
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::ids::{CitizenId, DelegationId, GuardianshipId};
use crate::sessions::{Acting, Session};
use crate::status::{DelegatedAction, DelegationStatus};
use crate::store::delegations::DelegationRow;

/// Longest a delegation may last.
pub const MAX_DAYS: i64 = 365;

/// How often the expiry timer looks for the next delegation to end.
pub const EXPIRY_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// `POST /me/delegations`: whom to appoint, over what, for how long.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Appointment {
    /// The delegate's national ID number (she must be registered).
    #[schema(pattern = "^[0-9]{17}[0-9Xx]$", min_length = 18, max_length = 18)]
    pub delegate_national_id: String,
    /// The document types in scope (at least one).
    pub document_types: Vec<String>,
    /// What she may do (at least one).
    pub actions: Vec<DelegatedAction>,
    /// How long it lasts, 1 to 365 days.
    #[schema(minimum = 1, maximum = 365)]
    pub duration_days: i64,
}

/// The other side of a delegation, as one side sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Party {
    /// Her citizen id (a delegate sends the principal's in `X-Acting-For`).
    pub citizen_id: CitizenId,
    /// Her display name, sealed to you: shown while your vault is unlocked, once she has
    /// given it (the delegate's arrives when she accepts).
    pub display_name: Option<String>,
}

/// A delegation as either side sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DelegationView {
    /// Its id.
    pub id: DelegationId,
    /// `principal` (you appointed someone) or `delegate` (you act for someone).
    pub role: &'static str,
    /// `pending`, `active`, `ended` or `expired`.
    pub status: DelegationStatus,
    /// The principal.
    pub principal: Party,
    /// The delegate.
    pub delegate: Party,
    /// Document types in scope.
    pub document_types: Vec<String>,
    /// What the delegate may do.
    pub actions: Vec<DelegatedAction>,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When the delegate accepted.
    pub accepted_at: Option<String>,
    /// When it ends by itself.
    pub expires_at: String,
    /// When it was ended.
    pub ended_at: Option<String>,
    /// Who ended it: `principal`, `delegate`, `authority` or `system`.
    pub ended_by: Option<String>,
    /// Set when a guardianship authority declared it (a guardian for a ward).
    pub guardianship_id: Option<GuardianshipId>,
    /// Whether the delegate holds keys yet (a guardianship's arrive at the ward's next
    /// unlock).
    pub keyed: bool,
    /// For the guardian of a ward whose account she holds: the hand-over code, to give the
    /// ward when she comes of age (she recovers her vault with it). Shown while the
    /// guardian's vault is unlocked.
    pub handover_code: Option<String>,
}

/// Reads a stored list of actions (a name that is none of them reads as nothing).
fn stored_actions(text: &str) -> Vec<DelegatedAction> {
    crate::store::json_list::<String>(text)
        .iter()
        .filter_map(|a| DelegatedAction::parse(a))
        .collect()
}

/// What `viewer` sees of `row`; names are opened with her private key when at hand.
fn view(
    row: &DelegationRow,
    viewer: CitizenId,
    secret: Option<&custodia_crypto::hpke_seal::HpkeSecretKey>,
    now: i64,
) -> DelegationView {
    let open = |sealed: &Option<Vec<u8>>, whose: &'static str| {
        let (Some(secret), Some(sealed)) = (secret, sealed) else {
            return None;
        };
        crate::sealing::open_name(
            secret,
            &crate::sealing::delegation_name_aad(row.id, whose),
            sealed,
        )
    };
    let is_principal = row.principal_id == viewer;
    DelegationView {
        id: row.id,
        role: if is_principal {
            "principal"
        } else {
            "delegate"
        },
        status: row.status_at(now),
        principal: Party {
            citizen_id: row.principal_id,
            display_name: (!is_principal)
                .then(|| open(&row.principal_name, "principal"))
                .flatten(),
        },
        delegate: Party {
            citizen_id: row.delegate_id,
            display_name: is_principal
                .then(|| open(&row.delegate_name, "delegate"))
                .flatten(),
        },
        document_types: crate::store::json_list(&row.document_types),
        actions: stored_actions(&row.actions),
        created_at: crate::clock::rfc3339(row.created_at),
        accepted_at: row.accepted_at.map(crate::clock::rfc3339),
        expires_at: crate::clock::rfc3339(row.expires_at),
        ended_at: row.ended_at.map(crate::clock::rfc3339),
        ended_by: row.ended_by.clone(),
        guardianship_id: row.guardianship_id,
        keyed: row.key_for_delegate.is_some(),
        handover_code: (!is_principal)
            .then(|| open(&row.handover_code, "handover"))
            .flatten(),
    }
}

/// The signed-in citizen's private key, when her vault is unlocked (to read names).
async fn own_secret(
    ctx: &Context,
    session: &Session,
) -> Result<Option<custodia_crypto::hpke_seal::HpkeSecretKey>, Error> {
    let Ok(vault_key) = session.vault_key() else {
        return Ok(None);
    };
    let me = ctx.store.citizen(session.citizen()?).await?;
    Ok(Some(crate::sealing::open_secret_key(&me, &vault_key)?))
}

/// Checks a scope: known document types (never a `none`-class one — what may not be
/// shared with agencies is not handed on either) and at least one action; duplicates go.
fn checked_scope(
    ctx: &Context,
    types: &[String],
    actions: &[DelegatedAction],
) -> Result<(Vec<String>, Vec<DelegatedAction>), Error> {
    if types.is_empty() {
        return Err(invalid("document_types", "name at least one document type"));
    }
    let mut out_types: Vec<String> = Vec::new();
    for t in types {
        let Some(spec) = ctx.catalog.document_type(t) else {
            return Err(invalid(
                "document_types",
                format!("'{t}' is not a document type"),
            ));
        };
        if spec.sharing_class == crate::catalog::SharingClass::None {
            return Err(invalid(
                "document_types",
                format!("'{t}' is never shared, not even with a delegate"),
            ));
        }
        if !out_types.contains(t) {
            out_types.push(t.clone());
        }
    }
    if actions.is_empty() {
        return Err(invalid("actions", "name at least one action"));
    }
    let mut out_actions: Vec<DelegatedAction> = Vec::new();
    for a in actions {
        if !out_actions.contains(a) {
            out_actions.push(*a);
        }
    }
    Ok((out_types, out_actions))
}

/// Appoints a delegate. Needs the principal's unlocked vault (the covered keys are
/// wrapped now) and a passkey proved in the last minutes: handing one's documents to
/// someone else is an account change.
#[tracing::instrument(skip_all)]
pub async fn appoint(
    ctx: &Context,
    session: &Session,
    req: &Appointment,
) -> Result<DelegationView, Error> {
    let principal_id = session.citizen()?;
    let vault_key = session.vault_key()?;
    session.require_fresh(ctx)?;
    if !(1..=MAX_DAYS).contains(&req.duration_days) {
        return Err(invalid(
            "duration_days",
            format!("must be from 1 to {MAX_DAYS}"),
        ));
    }
    let (types, actions) = checked_scope(ctx, &req.document_types, &req.actions)?;
    let national_id = NationalId::parse(&req.delegate_national_id)
        .map_err(|_| invalid("delegate_national_id", "is not a valid national ID number"))?;
    // Each answer tells whether an ID is registered: few per account.
    crate::ratelimit::check(
        ctx,
        crate::ratelimit::DELEGATE_LOOKUP_PER_ACCOUNT,
        &principal_id.to_string(),
    )
    .await?;
    let index = crate::citizens::national_id_index(ctx, &national_id);
    let delegate = ctx.store.citizen_by_index(&index).await?.ok_or_else(|| {
        invalid(
            "delegate_national_id",
            "no registered citizen has this national ID; ask her to register first",
        )
    })?;
    if delegate.id == principal_id {
        return Err(invalid(
            "delegate_national_id",
            "you cannot appoint yourself",
        ));
    }
    let principal = ctx.store.citizen(principal_id).await?;
    let id = DelegationId::random();
    let keys = crate::sealing::delegation_keys(
        ctx,
        id,
        principal_id,
        &vault_key,
        &delegate.public_key,
        &types,
    )
    .await?;
    let principal_name = crate::sealing::seal_name(
        &delegate.public_key,
        &crate::sealing::delegation_name_aad(id, "principal"),
        &crate::citizens::display_name(&principal, &vault_key)?,
    )?;
    let now = ctx.clock.now_ms();
    let row = DelegationRow {
        id,
        principal_id,
        delegate_id: delegate.id,
        document_types: crate::store::json_text(&types),
        actions: crate::store::json_text(&actions),
        status: DelegationStatus::Pending,
        created_at: now,
        accepted_at: None,
        expires_at: now + req.duration_days * 86_400_000,
        ended_at: None,
        ended_by: None,
        key_for_delegate: Some(keys.for_delegate),
        key_for_principal: Some(keys.for_principal),
        principal_name: Some(principal_name),
        delegate_name: None,
        handover_code: None,
        guardianship_id: None,
    };
    let event =
        crate::audit::by_citizen(&principal.pseudonym, crate::audit::Action::DelegationCreate)
            .objects([id.to_string(), delegate.pseudonym.clone()])
            .detail(format!(
                "types {}; actions {}; {} day(s)",
                types.join(","),
                actions
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                req.duration_days
            ));
    let mut tx = ctx.store.begin().await?;
    tx.insert_delegation(&row).await?;
    for w in &keys.wraps {
        tx.insert_delegation_wrap(w).await?;
    }
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    tracing::info!(delegation = %id, documents = keys.wraps.len(), "delegate appointed");
    Ok(view(&row, principal_id, None, now))
}

/// The delegations the signed-in citizen is either side of, newest first.
#[tracing::instrument(skip_all)]
pub async fn list(ctx: &Context, session: &Session) -> Result<Vec<DelegationView>, Error> {
    let me = session.citizen()?;
    let secret = own_secret(ctx, session).await?;
    let now = ctx.clock.now_ms();
    Ok(ctx
        .store
        .citizen_delegations(me)
        .await?
        .iter()
        .map(|d| view(d, me, secret.as_ref(), now))
        .collect())
}

/// One of the signed-in citizen's delegations (either side); `NotFound` for others'.
async fn mine(ctx: &Context, me: CitizenId, id: DelegationId) -> Result<DelegationRow, Error> {
    match ctx.store.delegation(id).await {
        Ok(d) if d.principal_id == me || d.delegate_id == me => Ok(d),
        Ok(_) | Err(crate::store::StoreError::NotFound) => Err(Error::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// The delegate accepts: from now on she may act within the scope. Needs her unlocked
/// vault (her name is sealed to the principal with it).
#[tracing::instrument(skip_all, fields(delegation = %id))]
pub async fn accept(
    ctx: &Context,
    session: &Session,
    id: DelegationId,
) -> Result<DelegationView, Error> {
    let me = session.citizen()?;
    let row = mine(ctx, me, id).await?;
    if row.delegate_id != me {
        return Err(Error::Forbidden(
            "Only the appointed delegate can accept a delegation.".into(),
        ));
    }
    let now = ctx.clock.now_ms();
    if row.status_at(now) != DelegationStatus::Pending {
        return Err(Error::Conflict(
            "This delegation is no longer waiting to be accepted.".into(),
        ));
    }
    let vault_key = session.vault_key()?;
    let delegate = ctx.store.citizen(me).await?;
    let principal = ctx.store.citizen(row.principal_id).await?;
    let name = crate::sealing::seal_name(
        &principal.public_key,
        &crate::sealing::delegation_name_aad(id, "delegate"),
        &crate::citizens::display_name(&delegate, &vault_key)?,
    )?;
    let event = crate::audit::Event::new(
        crate::audit::ActorKind::Delegate,
        Some(delegate.pseudonym.clone()),
        crate::audit::Action::DelegationAccept,
    )
    .citizen(Some(&principal.pseudonym))
    .objects([id.to_string()]);
    let mut tx = ctx.store.begin().await?;
    if !tx.accept_delegation(id, me, &name, now).await? {
        return Err(Error::Conflict(
            "This delegation is no longer waiting to be accepted.".into(),
        ));
    }
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.audit.flush().await;
    let secret = own_secret(ctx, session).await?;
    Ok(view(
        &ctx.store.delegation(id).await?,
        me,
        secret.as_ref(),
        now,
    ))
}

/// Either side ends a delegation at once: status, keys and every wrap in one
/// transaction. A guardianship's delegation is ended by its authority (or the ward's
/// majority), not by either side.
#[tracing::instrument(skip_all, fields(delegation = %id))]
pub async fn end(
    ctx: &Context,
    session: &Session,
    id: DelegationId,
) -> Result<DelegationView, Error> {
    let me = session.citizen()?;
    let row = mine(ctx, me, id).await?;
    if row.guardianship_id.is_some() {
        return Err(Error::Forbidden(
            "A guardianship is ended by the authority that declared it.".into(),
        ));
    }
    let by = if row.principal_id == me {
        "principal"
    } else {
        "delegate"
    };
    let principal = ctx.store.citizen(row.principal_id).await?;
    let event = if by == "principal" {
        crate::audit::by_citizen(&principal.pseudonym, crate::audit::Action::DelegationEnd)
    } else {
        crate::audit::Event::new(
            crate::audit::ActorKind::Delegate,
            Some(ctx.store.citizen(me).await?.pseudonym),
            crate::audit::Action::DelegationEnd,
        )
        .citizen(Some(&principal.pseudonym))
    }
    .objects([id.to_string()])
    .detail(format!("ended by the {by}"));
    let now = ctx.clock.now_ms();
    let mut tx = ctx.store.begin().await?;
    if !tx
        .end_delegation(id, DelegationStatus::Ended, by, now)
        .await?
    {
        return Err(Error::Conflict("This delegation has already ended.".into()));
    }
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    // The keys are gone from the rows; make that hold on disk too.
    ctx.store.scrub().await;
    ctx.audit.flush().await;
    tracing::info!(delegation = %id, by, "delegation ended; keys destroyed");
    let secret = own_secret(ctx, session).await?;
    Ok(view(
        &ctx.store.delegation(id).await?,
        me,
        secret.as_ref(),
        now,
    ))
}

/// Makes `session` act for `principal` (the `X-Acting-For` header): only under a live
/// delegation to the signed-in citizen, read from the database now. Naming oneself
/// changes nothing.
#[tracing::instrument(skip_all, fields(principal = %principal))]
pub async fn act_for(
    ctx: &Context,
    session: &mut Session,
    principal: CitizenId,
) -> Result<(), Error> {
    let me = session.own_citizen()?;
    if principal == me {
        return Ok(());
    }
    let now = ctx.clock.now_ms();
    let row = ctx
        .store
        .live_delegation(principal, me, now)
        .await?
        .ok_or_else(|| {
            Error::Forbidden("You hold no live delegation from this citizen (X-Acting-For).".into())
        })?;
    session.act_for(Acting {
        delegation: row.id,
        principal,
        document_types: crate::store::json_list(&row.document_types),
        actions: stored_actions(&row.actions),
        key_for_delegate: row.key_for_delegate,
        principal_name: row.principal_name,
    });
    Ok(())
}

/// Refuses with `Forbidden` unless the signed-in citizen holds a live delegation from
/// `principal` (the pages' acting-for switch checks before it remembers the choice).
pub async fn check_live(
    ctx: &Context,
    session: &Session,
    principal: CitizenId,
) -> Result<(), Error> {
    let me = session.own_citizen()?;
    match ctx
        .store
        .live_delegation(principal, me, ctx.clock.now_ms())
        .await?
    {
        Some(_) => Ok(()),
        None => Err(Error::Forbidden(
            "You hold no live delegation from this citizen.".into(),
        )),
    }
}

/// The principal's name as the delegate sees it (sealed to her), for the pages' banner.
pub async fn principal_name(ctx: &Context, session: &Session) -> Result<Option<String>, Error> {
    let Some(acting) = session.acting() else {
        return Ok(None);
    };
    let Ok(own_key) = session.own_vault_key() else {
        return Ok(None);
    };
    // The row was read as the request began to act; only her key is looked up.
    let Some(sealed) = acting.principal_name.as_deref() else {
        return Ok(None);
    };
    let me = ctx.store.citizen(session.own_citizen()?).await?;
    let secret = crate::sealing::open_secret_key(&me, &own_key)?;
    Ok(crate::sealing::open_name(
        &secret,
        &crate::sealing::delegation_name_aad(acting.delegation, "principal"),
        sealed,
    ))
}

/// Ends every delegation past its expiry: status `expired`, keys and wraps destroyed.
/// Safe on several nodes. Returns how many this call ended.
#[tracing::instrument(skip_all)]
pub async fn sweep_expired(ctx: &Context) -> Result<usize, Error> {
    let now = ctx.clock.now_ms();
    let mut ended = 0;
    for id in ctx.store.expired_live_delegations(now).await? {
        let row = ctx.store.delegation(id).await?;
        let principal = ctx.store.citizen(row.principal_id).await?;
        let mut tx = ctx.store.begin().await?;
        if tx
            .end_delegation(id, DelegationStatus::Expired, "system", now)
            .await?
        {
            crate::audit::stage(
                &mut tx,
                crate::audit::Event::new(
                    crate::audit::ActorKind::System,
                    None,
                    crate::audit::Action::DelegationEnd,
                )
                .citizen(Some(&principal.pseudonym))
                .objects([id.to_string()])
                .detail("expired"),
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

/// Ends delegations at their expiry time (as `grants::expire_on_time` ends grants): every
/// tick one indexed query asks when the next one ends, and when that time has come the
/// due ones end and their keys are destroyed. Runs on every node; one another node ended
/// first is skipped.
pub async fn expire_on_time(ctx: std::sync::Arc<Context>) {
    loop {
        match ctx.store.next_delegation_expiry().await {
            Ok(Some(at)) if at <= ctx.clock.now_ms() => match sweep_expired(&ctx).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(ended = n, "expired delegations ended; keys destroyed"),
                Err(e) => tracing::warn!(error = %e, "delegation expiry failed; will retry"),
            },
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next delegation expiry; will retry")
            }
        }
        tokio::time::sleep(EXPIRY_TICK).await;
    }
}
