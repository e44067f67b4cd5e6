//! The end of a document: deletion by crypto-shredding, and the sweeper that removes what
//! interrupted uploads and deletions left behind.

use crate::context::Context;
use crate::error::Error;
use crate::ids::DocumentId;
use crate::sessions::Session;
use crate::store::blob::BlobName;

use super::upload::discard_blob;

/// Deletes a document: every version's keys and sealed contents, every grant's wraps of
/// them, and the blobs (crypto-shredding).
#[tracing::instrument(skip_all, fields(document = %id))]
pub async fn delete(ctx: &Context, session: &Session, id: DocumentId) -> Result<(), Error> {
    let citizen = session.citizen()?;
    // Deletion cannot be undone: it needs the person, not only the cookie.
    session.require_fresh(ctx)?;
    let event =
        crate::audit::citizen_event(&ctx.store, citizen, crate::audit::Action::DocumentDelete)
            .await
            .objects([id.to_string()]);
    let now = ctx.clock.now_ms();
    let mut tx = ctx.store.begin().await?;
    let blobs = tx.shred_document(id, citizen, now).await?;
    // The deletion and its record commit together.
    crate::audit::stage(&mut tx, event, now).await?;
    tx.commit().await?;
    ctx.store.scrub().await;
    ctx.audit.flush().await;
    for name in blobs.iter().filter_map(|n| BlobName::parse(n)) {
        discard_blob(ctx, &name).await;
    }
    tracing::info!(document = %id, "document deleted (keys destroyed)");
    Ok(())
}

/// Accepts a deposit the citizen received: it becomes theirs like any other document and
/// joins the live grants naming its type. Needs an unlocked vault; accepting again, or
/// accepting a document the citizen stored themselves, answers the same and changes
/// nothing.
#[tracing::instrument(skip_all, fields(document = %id))]
pub async fn accept(
    ctx: &Context,
    session: &Session,
    id: DocumentId,
) -> Result<super::Summary, Error> {
    let citizen = session.citizen()?;
    let vault_key = session.vault_key()?;
    crate::sealing::accept_deposit(ctx, citizen, &vault_key, id).await?;
    let row = ctx.store.citizen_document(citizen, id).await?;
    let issuer_name = match row.issuer_agency_id {
        Some(a) => Some(ctx.store.agency(a).await?.name),
        None => None,
    };
    Ok(super::Summary {
        id: row.id,
        status: super::read::status(&row),
        doc_type: row.doc_type,
        version: row.current_version,
        issuer_agency_id: row.issuer_agency_id,
        issuer_name,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Removes blobs of uploads that never committed (pending for over an hour) and of
/// deletions interrupted before their blobs went. Safe on several nodes at once.
#[tracing::instrument(skip_all)]
pub async fn sweep_orphans(ctx: &Context) -> Result<usize, Error> {
    let cutoff = ctx.clock.now_ms() - 60 * 60 * 1000;
    let stale = ctx.store.stale_pending_blobs(cutoff).await?;
    for name in stale.iter().filter_map(|n| BlobName::parse(n)) {
        discard_blob(ctx, &name).await;
    }
    Ok(stale.len())
}
