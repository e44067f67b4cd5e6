//! The agency's acknowledgements of a grant's end (SPEC §6): that it stopped using it,
//! and — once the retention it promised ran out, or before — that it deleted every copy it
//! kept. Both are recorded; overdue ones are flagged to auditors and shown to the citizen.

use serde::{Deserialize, Serialize};

use crate::clock::to_ms;
use crate::context::Context;
use crate::error::{Error, invalid};
use crate::ids::GrantId;
use crate::store::agencies::AgencyRow;

/// How long after a grant's end its agency has to acknowledge it.
pub const REVOCATION_ACK_DUE_MS: i64 = 86_400_000;

/// What the agency says it deleted (`POST /api/v1/grants/{id}/retention-ack`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionAck {
    /// When the last retained copy was deleted (RFC 3339; not in the future, not before the
    /// grant began).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub deleted_at: time::OffsetDateTime,
    /// The agency's statement of what it deleted and how (10 to 1000 characters).
    #[schema(schema_with = crate::error::reason_text)]
    pub statement: String,
}

/// A grant's acknowledgements as its agency sees them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Acks {
    /// The grant.
    pub grant_id: GrantId,
    /// When the agency acknowledged the end (RFC 3339).
    pub revocation_acknowledged_at: Option<String>,
    /// When the retention runs out (RFC 3339).
    pub retention_due_at: Option<String>,
    /// When, by the agency's confirmation, every copy was deleted (RFC 3339).
    pub deleted_at: Option<String>,
}

/// The agency's own grant (`NotFound` for anyone else's, whether or not it exists).
async fn own_grant(
    ctx: &Context,
    agency: &AgencyRow,
    id: GrantId,
) -> Result<crate::store::grants::GrantRow, Error> {
    let g = ctx.store.grant(id).await?;
    if g.agency_id != agency.id {
        return Err(Error::NotFound);
    }
    Ok(g)
}

fn ended(
    g: crate::store::grants::GrantRow,
    now: i64,
) -> Result<crate::store::grants::GrantRow, Error> {
    if g.ended_at(now).is_none() {
        return Err(Error::Conflict(
            "This grant is still active; acknowledge it once it has ended.".into(),
        ));
    }
    Ok(g)
}

fn acks(ctx: &Context, g: &crate::store::grants::GrantRow) -> Acks {
    let now = ctx.clock.now_ms();
    Acks {
        grant_id: g.id,
        revocation_acknowledged_at: g.revocation_ack_at.map(crate::clock::rfc3339),
        retention_due_at: g
            .ended_at(now)
            .map(|end| crate::clock::rfc3339(end + i64::from(g.retention_days) * 86_400_000)),
        deleted_at: g.retention_deleted_at.map(crate::clock::rfc3339),
    }
}

fn record(
    agency: &AgencyRow,
    action: crate::audit::Action,
    pseudonym: &str,
    id: GrantId,
) -> crate::audit::Event {
    crate::audit::Event::new(
        crate::audit::ActorKind::Agency,
        Some(agency.id.to_string()),
        action,
    )
    .citizen(Some(pseudonym))
    .grant(Some(id))
    .objects([id.to_string()])
}

/// The agency acknowledges that it stopped using its ended grant. Once; again is a no-op.
#[tracing::instrument(skip_all, fields(grant = %id))]
pub async fn acknowledge_end(
    ctx: &Context,
    agency: &AgencyRow,
    id: GrantId,
) -> Result<Acks, Error> {
    let now = ctx.clock.now_ms();
    let g = ended(own_grant(ctx, agency, id).await?, now)?;
    let pseudonym = ctx.store.citizen(g.citizen_id).await?.pseudonym;
    let mut tx = ctx.store.begin().await?;
    if tx.ack_revocation(agency.id, id, now).await? {
        crate::audit::stage(
            &mut tx,
            record(
                agency,
                crate::audit::Action::GrantRevocationAck,
                &pseudonym,
                id,
            ),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(acks(ctx, &ctx.store.grant(id).await?))
}

/// The agency confirms it deleted every copy of what it read under its ended grant.
/// Once: a second confirmation is refused (`409`), the first stands.
#[tracing::instrument(skip_all, fields(grant = %id))]
pub async fn confirm_deletion(
    ctx: &Context,
    agency: &AgencyRow,
    id: GrantId,
    req: &RetentionAck,
) -> Result<Acks, Error> {
    let now = ctx.clock.now_ms();
    // Whose grant first, then what was sent, then whether it has ended.
    let g = own_grant(ctx, agency, id).await?;
    let statement = crate::error::plain_text("statement", &req.statement, 1000)?;
    if statement.chars().count() < 10 {
        return Err(invalid(
            "statement",
            "say what was deleted and how (10 to 1000 characters)",
        ));
    }
    let deleted_at = to_ms(req.deleted_at);
    if deleted_at > now {
        return Err(invalid("deleted_at", "must not be in the future"));
    }
    if deleted_at < g.valid_from {
        return Err(invalid("deleted_at", "must not be before the grant began"));
    }
    let g = ended(g, now)?;
    let pseudonym = ctx.store.citizen(g.citizen_id).await?.pseudonym;
    let mut tx = ctx.store.begin().await?;
    if !tx
        .ack_retention(agency.id, id, deleted_at, statement, now)
        .await?
    {
        return Err(Error::Conflict(
            "Deletion was already confirmed for this grant.".into(),
        ));
    }
    // A confirmed deletion also says the grant is no longer used.
    let ended_too = tx.ack_revocation(agency.id, id, now).await?;
    crate::audit::stage(
        &mut tx,
        record(
            agency,
            crate::audit::Action::GrantRetentionAck,
            &pseudonym,
            id,
        )
        .detail(format!(
            "deleted at {}: {statement}",
            crate::clock::rfc3339(deleted_at)
        )),
        now,
    )
    .await?;
    if ended_too {
        crate::audit::stage(
            &mut tx,
            record(
                agency,
                crate::audit::Action::GrantRevocationAck,
                &pseudonym,
                id,
            ),
            now,
        )
        .await?;
    }
    tx.commit().await?;
    ctx.audit.flush().await;
    Ok(acks(ctx, &ctx.store.grant(id).await?))
}
