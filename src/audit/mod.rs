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
mod exports;

pub use exports::{ExportedEvent, Format, export};

use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use custodia_crypto::sign::SigningKey;

use crate::clock::Clock;
use crate::error::Error;
use crate::store::audit::AuditRow;
use crate::store::{Store, StoreError};

/// Most events committed in one transaction.
pub const MAX_BATCH: usize = 512;
/// Longest a caller waits for its record to commit.
pub const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A checkpoint is signed after this many events…
pub const CHECKPOINT_EVERY_EVENTS: i64 = 1000;
/// …or when this much time has passed since the last one and events were added.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

use crate::status::named_enum;

named_enum! {
    /// What an event records: one name each, stored in the trail and shown as it is.
    Action {
        /// `document.read`
        DocumentRead => "document.read",
        /// `document.file`
        DocumentFile => "document.file",
        /// `document.upload`
        DocumentUpload => "document.upload",
        /// `document.replace`
        DocumentReplace => "document.replace",
        /// `document.delete`
        DocumentDelete => "document.delete",
        /// `document.deposit`
        DocumentDeposit => "document.deposit",
        /// `document.receive`
        DocumentReceive => "document.receive",
        /// `grant.create`
        GrantCreate => "grant.create",
        /// `grant.revoke`
        GrantRevoke => "grant.revoke",
        /// `grant.expire`
        GrantExpire => "grant.expire",
        /// `grant.exhausted`
        GrantExhausted => "grant.exhausted",
        /// `grant.documents`
        GrantDocuments => "grant.documents",
        /// `request.create`
        RequestCreate => "request.create",
        /// `request.approve`
        RequestApprove => "request.approve",
        /// `request.deny`
        RequestDeny => "request.deny",
        /// `citizen.register`
        CitizenRegister => "citizen.register",
        /// `login`
        Login => "login",
        /// `vault.unlock`
        VaultUnlock => "vault.unlock",
        /// `auditor.invite`
        AuditorInvite => "auditor.invite",
        /// `auditor.enrol`
        AuditorEnrol => "auditor.enrol",
        /// `audit.query`
        AuditQuery => "audit.query",
        /// `audit.verify`
        AuditVerify => "audit.verify",
        /// `audit.export`
        AuditExport => "audit.export",
        /// `audit.reveal`
        AuditReveal => "audit.reveal",
        /// `agency.create`
        AgencyCreate => "agency.create",
        /// `agency.rotate-key`
        AgencyRotateKey => "agency.rotate-key",
        /// `agency.disable`
        AgencyDisable => "agency.disable",
        /// `agency.set-issuer-key`
        AgencySetIssuerKey => "agency.set-issuer-key",
        /// `keys.rotate-master`
        KeysRotateMaster => "keys.rotate-master",
        /// `keys.rotate-signing`
        KeysRotateSigning => "keys.rotate-signing",
    }
}

named_enum! {
    /// How it ended.
    Outcome {
        /// Done.
        Ok => "ok",
        /// Refused by a rule (consent, policy, limit).
        Refused => "refused",
        /// Attempted and failed (a wrong passphrase, a bad passkey).
        Failed => "failed",
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A citizen, by pseudonym.
    Citizen,
    /// An agency, by id, with officer and case.
    Agency,
    /// An auditor, by id.
    Auditor,
    /// The operator, through the CLI.
    Operator,
    /// The server itself (expiry, sweeps).
    System,
}

impl ActorKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Citizen => "citizen",
            Self::Agency => "agency",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
            Self::System => "system",
        }
    }
}

/// One event to append. Build with [`Event::new`] and the setters.
#[derive(Debug, Clone)]
pub struct Event {
    actor_kind: &'static str,
    actor_id: Option<String>,
    officer_id: Option<String>,
    case_id: Option<String>,
    citizen: Option<String>,
    action: Action,
    object_ids: Vec<String>,
    grant_id: Option<Uuid>,
    purpose: Option<String>,
    tier: Option<String>,
    fields: Option<Vec<String>>,
    outcome: Outcome,
    bytes_sent: Option<i64>,
    request_id: Option<String>,
    detail: Option<String>,
}

impl Event {
    /// `actor` did `action` (for example `document.read`) with `outcome` (`ok`, `refused`,
    /// `failed`).
    pub fn new(actor: ActorKind, actor_id: Option<String>, action: Action) -> Self {
        Self {
            actor_kind: actor.as_str(),
            actor_id,
            officer_id: None,
            case_id: None,
            citizen: None,
            action,
            object_ids: Vec::new(),
            grant_id: None,
            purpose: None,
            tier: None,
            fields: None,
            outcome: Outcome::Ok,
            bytes_sent: None,
            request_id: None,
            detail: None,
        }
    }
    /// The officer and case of an agency read.
    pub fn officer(mut self, officer: Option<&str>, case: Option<&str>) -> Self {
        self.officer_id = officer.map(str::to_owned);
        self.case_id = case.map(str::to_owned);
        self
    }
    /// The citizen concerned, by pseudonym.
    pub fn citizen(mut self, pseudonym: Option<&str>) -> Self {
        self.citizen = pseudonym.map(str::to_owned);
        self
    }
    /// Ids of the objects acted on (documents, requests, agencies…).
    pub fn objects(mut self, ids: impl IntoIterator<Item = String>) -> Self {
        self.object_ids = ids.into_iter().collect();
        self
    }
    /// The grant involved.
    pub fn grant(mut self, grant: Option<Uuid>) -> Self {
        self.grant_id = grant;
        self
    }
    /// The purpose.
    pub fn purpose(mut self, purpose: Option<&str>) -> Self {
        self.purpose = purpose.map(str::to_owned);
        self
    }
    /// The tier and fields revealed.
    pub fn tier(mut self, tier: &str, fields: Option<Vec<String>>) -> Self {
        self.tier = Some(tier.to_owned());
        self.fields = fields;
        self
    }
    /// The outcome (default `ok`).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
    /// Why, for refusals and failures (never personal data).
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    /// Bytes that will be sent (a read records its size before sending).
    pub fn bytes(mut self, bytes: Option<u64>) -> Self {
        self.bytes_sent = bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        self
    }
    /// The HTTP request id.
    pub fn request(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(str::to_owned);
        self
    }
    /// The action name.
    pub fn action(&self) -> &'static str {
        self.action.as_str()
    }

    fn into_row(self, seq: i64, at: i64, prev_hash: Vec<u8>) -> AuditRow {
        let mut row = AuditRow {
            seq,
            at,
            actor_kind: self.actor_kind.to_owned(),
            actor_id: self.actor_id,
            officer_id: self.officer_id,
            case_id: self.case_id,
            citizen_pseudonym: self.citizen,
            action: self.action.as_str().to_owned(),
            object_ids: serde_json::to_string(&self.object_ids).unwrap_or_else(|_| "[]".into()),
            grant_id: self.grant_id,
            purpose: self.purpose,
            tier: self.tier,
            fields: self
                .fields
                .map(|f| serde_json::to_string(&f).unwrap_or_else(|_| "[]".into())),
            outcome: self.outcome.as_str().to_owned(),
            bytes_sent: self.bytes_sent,
            request_id: self.request_id,
            detail: self.detail,
            prev_hash,
            hash: Vec::new(),
        };
        row.hash = chain::event_hash(&row.prev_hash, &row).to_vec();
        row
    }
}

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
    claim: Option<Uuid>,
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
    pub async fn append_read(&self, event: Event, grant: Uuid) -> Result<Claim, Error> {
        self.submit(event, Some(grant)).await
    }

    async fn submit(&self, event: Event, claim: Option<Uuid>) -> Result<Claim, Error> {
        let action = event.action;
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
                tracing::error!(action = action.as_str(), %cause, "audit append failed; refusing the action");
                Err(Error::AuditUnavailable)
            }
            Err(_) => {
                tracing::error!(
                    action = action.as_str(),
                    "audit append timed out; refusing the action"
                );
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
            let events: Vec<(Event, Option<Uuid>)> =
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

    async fn commit(&self, events: Vec<(Event, Option<Uuid>)>) -> Result<Vec<Claim>, StoreError> {
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
                            .outcome(crate::audit::Outcome::Refused)
                            .detail("the grant is no longer active")
                            .bytes(None);
                        false
                    }
                },
            };
            let citizen = event.citizen.clone();
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
                let row = Event::new(
                    ActorKind::System,
                    None,
                    crate::audit::Action::GrantExhausted,
                )
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

/// Signs a checkpoint of the current head now, if events were added since the last one
/// (for tests; the running sequencer signs on its own schedule).
pub async fn checkpoint_now(
    store: &Store,
    signing: &SigningKey,
    key_id: &str,
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    let mut tx = store.begin().await?;
    let (seq, head) = tx.lock_audit_head().await?;
    let last = tx.last_checkpoint_mark().await?.map_or(0, |(s, _)| s);
    if seq == 0 || seq == last {
        tx.commit().await?;
        return Ok(None);
    }
    tx.insert_checkpoint(&chain::sign_checkpoint(signing, key_id, seq, &head, now_ms))
        .await?;
    tx.commit().await?;
    Ok(Some(seq))
}

/// An event by (or about) a citizen, under their pseudonym.
pub async fn citizen_event(store: &Store, citizen: Uuid, action: Action) -> Event {
    let pseudonym = store.citizen(citizen).await.ok().map(|c| c.pseudonym);
    Event::new(ActorKind::Citizen, pseudonym.clone(), action).citizen(pseudonym.as_deref())
}

/// Verifies the whole trail in pages, calling `progress(checked, total)` as it goes.
/// The outer error is a storage failure; the inner one the first fault found.
pub async fn verify(
    store: &Store,
    mut progress: impl FnMut(u64, u64),
) -> Result<Result<chain::Summary, chain::Fault>, Error> {
    const PAGE: i64 = 10_000;
    let keys: Vec<(String, custodia_crypto::sign::VerifyingKey)> = store
        .signing_keys()
        .await?
        .into_iter()
        .filter_map(|(id, public)| {
            custodia_crypto::sign::VerifyingKey::from_bytes(&public)
                .ok()
                .map(|k| (id, k))
        })
        .collect();
    let (head_seq, head_hash) = store.audit_head().await?;
    let (count, _) = store.audit_extent().await?;
    let total = u64::try_from(count).unwrap_or(0);
    let mut verifier = match chain::Verifier::new(store.audit_checkpoints().await?, &keys) {
        Ok(v) => v,
        Err(fault) => return Ok(Err(fault)),
    };
    let mut after = 0;
    loop {
        let page = store.audit_events_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if let Err(fault) = verifier.push(e) {
                return Ok(Err(fault));
            }
        }
        progress(verifier.checked, total);
    }
    Ok(verifier.finish(head_seq, &head_hash))
}

#[cfg(test)]
mod names {
    use super::{Action, Outcome};

    #[test]
    fn every_action_and_outcome_has_its_own_stored_name() {
        let mut seen = std::collections::BTreeSet::new();
        for a in Action::ALL {
            let name = a.as_str();
            assert!(seen.insert(name), "{name} is used twice");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '-'),
                "{name}"
            );
        }
        let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(outcomes, ["ok", "refused", "failed"]);
    }
}
