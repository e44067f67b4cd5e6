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
    let mut tx = ctx.store.begin().await?;
    let blobs = tx.shred_document(id, citizen, ctx.clock.now_ms()).await?;
    tx.commit().await?;
    ctx.store.scrub().await;
    for name in blobs.iter().filter_map(|n| BlobName::parse(n)) {
        discard_blob(ctx, &name).await;
    }
    tracing::info!(document = %id, "document deleted (keys destroyed)");
    let event =
        crate::audit::citizen_event(&ctx.store, citizen, crate::audit::Action::DocumentDelete)
            .await
            .objects([id.to_string()]);
    ctx.audit.record(event).await;
    Ok(())
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
