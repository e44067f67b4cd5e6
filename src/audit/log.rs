//! The one append path: callers queue events, a sequencer task commits them in batches
//! (group commit), counts claimed reads in the same transaction and signs checkpoints.

use tokio::sync::{mpsc, oneshot};

use custodia_crypto::sign::SigningKey;

use super::{
    APPEND_TIMEOUT, Action, ActorKind, CHECKPOINT_EVERY, CHECKPOINT_EVERY_EVENTS, Event, MAX_BATCH,
    Outcome, chain,
};
use crate::clock::Clock;
use crate::error::Error;
use crate::ids::GrantId;
use crate::store::{Store, StoreError};

/// What became of an append that claimed a grant read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Recorded and counted: the read may go ahead.
    Granted {
        /// The record's sequence number.
        seq: i64,
    },
    /// The grant was no longer live when the batch committed: recorded as refused, nothing
    /// counted, nothing may be sent.
    Refused {
        /// The refusal's sequence number.
        seq: i64,
    },
}

struct Pending {
    event: Event,
    claim: Option<GrantId>,
    reply: oneshot::Sender<Result<Claim, String>>,
}

/// The handle every part of Custodia appends through. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

impl AuditLog {
    /// Records a change that has already committed. A change stands even if its record
    /// cannot be written then; the failure is logged as an error with the action so an
    /// operator can see the gap. (Reads never take this path: they are recorded first and
    /// refused without a record, see [`AuditLog::append_read`].)
    pub async fn record(&self, event: Event) {
        let action = event.action();
        if let Err(e) = self.append(event).await {
            tracing::error!(action, error = %e, "a committed change could not be recorded in the audit trail");
        }
    }

    /// Starts the sequencer on `store`, signing checkpoints with `signing`.
    pub async fn start(
        store: Store,
        clock: std::sync::Arc<dyn Clock>,
        signing: SigningKey,
        key_id: String,
    ) -> Result<Self, StoreError> {
        Self::start_with_batch(store, clock, signing, key_id, MAX_BATCH).await
    }

    /// As [`AuditLog::start`] with another batch size (1 = one commit per event, what the
    /// benchmark compares group commit with).
    pub async fn start_with_batch(
        store: Store,
        clock: std::sync::Arc<dyn Clock>,
        signing: SigningKey,
        key_id: String,
        max_batch: usize,
    ) -> Result<Self, StoreError> {
        store.ensure_audit_head().await?;
        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(
            Sequencer {
                store,
                clock,
                signing,
                key_id,
                max_batch: max_batch.clamp(1, MAX_BATCH),
            }
            .run(rx),
        );
        Ok(Self { queue })
    }

    /// Appends `event` and waits until it is durably committed.
    pub async fn append(&self, event: Event) -> Result<i64, Error> {
        match self.submit(event, None).await? {
            Claim::Granted { seq } | Claim::Refused { seq } => Ok(seq),
        }
    }

    /// Appends the record of a read under `grant` and counts it against the grant in the
    /// same transaction. `Refused` means the grant ended first: the read must not happen.
    pub async fn append_read(&self, event: Event, grant: GrantId) -> Result<Claim, Error> {
        self.submit(event, Some(grant)).await
    }

    async fn submit(&self, event: Event, claim: Option<GrantId>) -> Result<Claim, Error> {
        let action = event.action();
        let started = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        let sent = self.queue.send(Pending {
            event,
            claim,
            reply,
        });
        let outcome = tokio::time::timeout(APPEND_TIMEOUT, async {
            sent.await
                .map_err(|_| "the audit sequencer has stopped".to_owned())?;
            answer
                .await
                .map_err(|_| "the audit sequencer dropped the record".to_owned())?
        })
        .await;
        metrics::histogram!("custodia_audit_append_seconds")
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(Ok(claim)) => Ok(claim),
            Ok(Err(cause)) => {
                tracing::error!(action, %cause, "audit append failed; refusing the action");
                Err(Error::AuditUnavailable)
            }
            Err(_) => {
                tracing::error!(action, "audit append timed out; refusing the action");
                Err(Error::AuditUnavailable)
            }
        }
    }
}

struct Sequencer {
    store: Store,
    clock: std::sync::Arc<dyn Clock>,
    signing: SigningKey,
    key_id: String,
    max_batch: usize,
}

impl Sequencer {
    async fn run(self, mut rx: mpsc::Receiver<Pending>) {
        loop {
            let first = match tokio::time::timeout(CHECKPOINT_EVERY, rx.recv()).await {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(_) => {
                    if let Err(e) = self.checkpoint_if_due(true).await {
                        tracing::warn!(error = %e, "could not sign an audit checkpoint");
                    }
                    continue;
                }
            };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            metrics::histogram!("custodia_audit_batch_size").record(batch.len() as f64);
            let events: Vec<(Event, Option<GrantId>)> =
                batch.iter().map(|p| (p.event.clone(), p.claim)).collect();
            match self.commit(events).await {
                Ok(outcomes) => {
                    for (p, outcome) in batch.into_iter().zip(outcomes) {
                        // A caller that gave up waiting is gone; its record stands.
                        let _ = p.reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    let cause = format!("{e:#}");
                    for p in batch {
                        let _ = p.reply.send(Err(cause.clone()));
                    }
                }
            }
        }
    }

    async fn commit(
        &self,
        events: Vec<(Event, Option<GrantId>)>,
    ) -> Result<Vec<Claim>, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.store.begin().await?;
        let (mut seq, mut head) = tx.lock_audit_head().await?;
        let mut outcomes = Vec::with_capacity(events.len());
        for (mut event, claim) in events {
            let mut exhausted = None;
            let granted = match claim {
                None => true,
                Some(grant) => match tx.claim_grant_read(grant, now).await? {
                    Some((reads, max)) => {
                        if max.is_some_and(|m| reads >= m) {
                            exhausted = Some(grant);
                        }
                        true
                    }
                    None => {
                        event = event
                            .outcome(Outcome::Refused)
                            .detail("the grant is no longer active")
                            .bytes(None);
                        false
                    }
                },
            };
            let citizen = event.citizen_pseudonym().map(str::to_owned);
            seq += 1;
            let row = event.into_row(seq, now, head);
            tx.insert_audit_event(&row).await?;
            head = row.hash;
            outcomes.push(if granted {
                Claim::Granted { seq }
            } else {
                Claim::Refused { seq }
            });
            if let Some(grant) = exhausted {
                tx.end_grant(grant, None, crate::status::GrantStatus::Exhausted, now)
                    .await?;
                seq += 1;
                let row = Event::new(ActorKind::System, None, Action::GrantExhausted)
                    .citizen(citizen.as_deref())
                    .grant(Some(grant))
                    .objects([grant.to_string()])
                    .into_row(seq, now, head);
                tx.insert_audit_event(&row).await?;
                head = row.hash;
            }
        }
        tx.set_audit_head(seq, &head).await?;
        if let Some(c) = self.due_checkpoint(&mut tx, seq, &head, now, false).await? {
            tx.insert_checkpoint(&c).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn due_checkpoint(
        &self,
        tx: &mut crate::store::Tx,
        seq: i64,
        head: &[u8],
        now: i64,
        by_time: bool,
    ) -> Result<Option<crate::store::audit::CheckpointRow>, StoreError> {
        if seq == 0 {
            return Ok(None);
        }
        let (last_seq, last_at) = tx.last_checkpoint_mark().await?.unwrap_or((0, 0));
        let interval_ms = i64::try_from(CHECKPOINT_EVERY.as_millis()).unwrap_or(i64::MAX);
        let due = seq - last_seq >= CHECKPOINT_EVERY_EVENTS
            || (seq > last_seq && (by_time || now - last_at >= interval_ms));
        Ok(due.then(|| chain::sign_checkpoint(&self.signing, &self.key_id, seq, head, now)))
    }

    /// Signs the current head if events were added since the last checkpoint.
    async fn checkpoint_if_due(&self, by_time: bool) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.store.begin().await?;
        let (seq, head) = tx.lock_audit_head().await?;
        if let Some(c) = self
            .due_checkpoint(&mut tx, seq, &head, now, by_time)
            .await?
        {
            tx.insert_checkpoint(&c).await?;
        }
        tx.commit().await
    }
}
