//! The audit trail (SPEC §2 "Audit event", G2, G3).
//!
//! Every consented read, refusal and change is appended to one hash chain before the
//! action takes effect for the caller. Appends go through one [`AuditLog`] per process: a
//! sequencer task takes whatever is queued (up to [`MAX_BATCH`]), and in **one**
//! transaction locks the chain head, assigns sequence numbers and hashes, counts the reads
//! those events carry against their grants, and commits. Each caller waits for the commit
//! of its own record; a read sends its first byte only after that. If the batch fails or
//! does not commit within [`APPEND_TIMEOUT`], the caller gets
//! [`Error::AuditUnavailable`] (503) and sends nothing.
//!
//! Counting a read in the same transaction as its record makes the two inseparable: a read
//! is counted if and only if it is recorded, and a grant revoked before the batch commits
//! refuses the read (the claim finds no active grant), which is how "no read that starts
//! after the revoke commits succeeds" holds on every engine and node.
//!
//! Personal values never enter the trail: citizens appear under their pseudonym, documents
//! by id and type.

pub mod chain;
mod verifier;
mod verify;
pub use verify::{verify, verify_since};
mod event;
mod exports;
mod log;
mod tree;
pub mod witnessed;

pub use chain::{LogSigner, Trust};
pub use event::{Action, ActorKind, Event, Outcome};
pub use exports::{ExportedEvent, Format, export};
pub use log::{AuditLog, Claim, ReadClaim, stage, staged_json};
pub use tree::{consistency_proof, extend_tree, inclusion_proof, stored_root};

use std::time::Duration;

use crate::ids::CitizenId;
use crate::store::{Store, StoreError};

/// Most events committed in one transaction.
pub const MAX_BATCH: usize = 512;
/// Longest a caller waits for its record to commit.
pub const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A checkpoint is signed after this many events…
pub const CHECKPOINT_EVERY_EVENTS: i64 = 1000;
/// …or when this much time has passed since the last one and events were added.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// How long a new checkpoint may wait for its witness cosignatures before verifiers
/// require them (a witness that is down delays cosigning, never a read).
pub const WITNESS_GRACE: Duration = Duration::from_secs(300);

/// Signs a checkpoint of the current head now, if events were added since the last one
/// (for tests and tools; the running sequencer signs on its own schedule).
pub async fn checkpoint_now(
    store: &Store,
    signer: &LogSigner,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let mut tx = store.begin().await?;
    let (seq, head) = tx.lock_audit_head().await?;
    let last = tx.last_checkpoint_mark().await?.map_or(0, |(s, _)| s);
    if seq == 0 || seq == last {
        tx.commit().await?;
        return Ok(None);
    }
    let size = u64::try_from(seq).unwrap_or(0);
    let root = tree::Appender::load(&mut tx, size).await?.root()?;
    tx.insert_checkpoint(&signer.sign(seq, &head, &root, now_ms))
        .await?;
    tx.commit().await?;
    Ok(Some(seq))
}

/// An event by (or about) a citizen, under their pseudonym.
pub async fn citizen_event(store: &Store, citizen: CitizenId, action: Action) -> Event {
    let pseudonym = store.citizen(citizen).await.ok().map(|c| c.pseudonym);
    Event::new(ActorKind::Citizen, pseudonym.clone(), action).citizen(pseudonym.as_deref())
}

/// How an operator's key rotation stages its record (`keyring::Record`): `action`, by the
/// operator, with the rotation's own detail, as outbox JSON.
pub fn operator_record(action: Action) -> impl Fn(String) -> Option<String> + Sync {
    move |detail| staged_json(Event::new(ActorKind::Operator, None, action).detail(detail)).ok()
}

/// An event by the citizen whose pseudonym is at hand (no look-up).
pub fn by_citizen(pseudonym: &str, action: Action) -> Event {
    Event::new(ActorKind::Citizen, Some(pseudonym.to_owned()), action).citizen(Some(pseudonym))
}
