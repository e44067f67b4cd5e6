//! The one append path: callers queue events, a sequencer task commits them in batches
//! (group commit), counts claimed reads in the same transaction and signs checkpoints.

use tokio::sync::{mpsc, oneshot};

use custodia_crypto::tlog::{Known, TreeHash};

use super::chain::LogSigner;
use super::event::Staged;
use super::tree::Appender;
use super::{
    APPEND_TIMEOUT, Action, ActorKind, CHECKPOINT_EVERY, CHECKPOINT_EVERY_EVENTS, Event, MAX_BATCH,
};
use crate::clock::Clock;
use crate::error::Error;
use crate::ids::GrantId;
use crate::store::audit::QuickBatch;
use crate::store::reads::ReadCover;
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
    /// The read was prepared from a kept load ([`ReadClaim::cached`]) that no longer holds:
    /// nothing recorded, nothing counted, nothing may be sent; the caller tries the read
    /// again from the database, which records what becomes of it.
    Stale,
}

/// A read's claim on its grant, checked and counted in the batch that records the read.
#[derive(Debug, Clone)]
pub struct ReadClaim {
    /// The grant read under.
    pub grant: GrantId,
    /// The key, document and version the read was prepared with (checked too).
    pub cover: ReadCover,
    /// Prepared from a kept load rather than the database just now: a failed claim is
    /// [`Claim::Stale`] rather than a refusal.
    pub cached: bool,
}

struct Pending {
    /// `None`: no event of its own, only a batch now (to chain what changes staged).
    event: Option<Staged>,
    claim: Option<ReadClaim>,
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
    /// refused without a record, see [`AuditLog::append_read`]. Changes that must not
    /// stand without their record stage it in their own transaction, [`stage`].)
    pub async fn record(&self, event: Event) {
        let action = event.action();
        if let Err(e) = self.append(event).await {
            tracing::error!(action, error = %e, "a committed change could not be recorded in the audit trail");
        }
    }

    /// Chains what committed changes staged (see [`stage`]) now, and waits for it. Their
    /// records are already durable in the outbox, so a failure here loses nothing: the
    /// next batch, the next minute's tick or the next start chains them.
    pub async fn flush(&self) {
        if let Err(e) = self.send(None, None).await {
            tracing::warn!(error = %e, "staged audit events not chained yet; they will be");
        }
    }

    /// Starts the sequencer on `store`, signing checkpoints with `signer`.
    pub async fn start(
        store: Store,
        clock: std::sync::Arc<dyn Clock>,
        signer: LogSigner,
    ) -> Result<Self, StoreError> {
        Self::start_with_batch(store, clock, signer, MAX_BATCH).await
    }

    /// As [`AuditLog::start`] with another batch size (1 = one commit per event, what the
    /// benchmark compares group commit with).
    pub async fn start_with_batch(
        store: Store,
        clock: std::sync::Arc<dyn Clock>,
        signer: LogSigner,
        max_batch: usize,
    ) -> Result<Self, StoreError> {
        store.ensure_audit_head().await?;
        let built = super::tree::extend_tree(&store).await?;
        if built > 0 {
            tracing::info!(events = built, "built the audit tree over earlier events");
        }
        // A new log starts with a signed checkpoint of the empty tree, so there is always a
        // newest checkpoint to show and for witnesses to start from.
        if store.last_checkpoint().await?.is_none() {
            let mut tx = store.begin().await?;
            let (seq, head) = tx.lock_audit_head().await?;
            if seq == 0 {
                let empty = custodia_crypto::tlog::EMPTY_ROOT;
                tx.insert_checkpoint(&signer.sign(0, &head, &empty, clock.now_ms()))
                    .await?;
            }
            tx.commit().await?;
        }
        // What this process will hold every later checkpoint to: the newest one it can
        // read now, or the newest it remembers signing if that is newer — which the
        // database must still extend (witnesses hold it to more).
        let in_database = match store.last_checkpoint().await? {
            Some(c) => c
                .root_hash
                .and_then(|r| TreeHash::try_from(r).ok())
                .map(|root| (c.seq, root)),
            None => None,
        };
        let remembered = remembered(&signer).await;
        if let Some((size, root)) = remembered {
            let (head, _) = store.audit_head().await?;
            let extends = head >= size
                && super::tree::stored_root(&store, u64::try_from(size).unwrap_or(0))
                    .await
                    .ok()
                    == Some(root);
            if !extends {
                return Err(StoreError::Other(anyhow::anyhow!(
                    "the audit trail in the database (head {head}) does not extend checkpoint \
                     {size}, which this server signed: the database was rolled back or \
                     rewritten. Refusing to start; restore the database this server wrote, or \
                     investigate"
                )));
            }
        }
        let last_signed = match (in_database, remembered) {
            (Some(d), Some(r)) => Some(if d.0 >= r.0 { d } else { r }),
            (d, r) => d.or(r),
        };
        let (queue, rx) = mpsc::channel(4 * MAX_BATCH);
        let sequencer = Sequencer {
            store,
            clock,
            signer,
            max_batch: max_batch.clamp(1, MAX_BATCH),
            last_signed: std::sync::Mutex::new(last_signed),
            memo: std::sync::Mutex::new(None),
        };
        // The sequencer runs on a thread of its own: every read waits for its batch, and a
        // batch is a few database hand-offs in a row, each of which would otherwise wait
        // for its turn behind the requests queued on the server's workers.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Other(e.into()))?;
        std::thread::Builder::new()
            .name("custodia-audit".into())
            .spawn(move || runtime.block_on(sequencer.run(rx)))
            .map_err(|e| StoreError::Other(e.into()))?;
        Ok(Self { queue })
    }

    /// Appends `event` and waits until it is durably committed.
    pub async fn append(&self, event: Event) -> Result<i64, Error> {
        match self.submit(event, None).await? {
            Claim::Granted { seq } | Claim::Refused { seq } => Ok(seq),
            // Only a claim can be stale, and this append has none.
            Claim::Stale => Err(Error::Internal(anyhow::anyhow!(
                "an append without a claim was answered as stale"
            ))),
        }
    }

    /// Appends the record of a read and counts it against its grant in the same
    /// transaction. `Refused` means the grant ended first (or the key, document or version
    /// changed): the read must not happen. `Stale`: nothing was recorded; try again afresh.
    pub async fn append_read(&self, event: Event, claim: ReadClaim) -> Result<Claim, Error> {
        self.submit(event, Some(claim)).await
    }

    async fn submit(&self, event: Event, claim: Option<ReadClaim>) -> Result<Claim, Error> {
        self.send(Some(event.stage()), claim).await
    }

    async fn send(&self, event: Option<Staged>, claim: Option<ReadClaim>) -> Result<Claim, Error> {
        let action = event
            .as_ref()
            .map_or_else(|| "(staged)".to_owned(), |e| e.action().to_owned());
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

/// How a batch's claims on one grant were counted.
enum Counted {
    /// All of them, in one statement: how many are still to be answered, and whether the
    /// last of them used the grant's final read.
    Together { left: i32, exhausted: bool },
    /// None: the grant is not live (its only claim is refused).
    Refused,
    /// Several claims that do not all fit: counted one by one, in order.
    OneByOne,
}

struct Sequencer {
    store: Store,
    clock: std::sync::Arc<dyn Clock>,
    signer: LogSigner,
    max_batch: usize,
    /// The newest checkpoint this process signed or started from: every later one must
    /// extend it, or the sequencer refuses to sign (and to append) over a changed history.
    last_signed: std::sync::Mutex<Option<(i64, TreeHash)>>,
    /// What the last batch this sequencer committed left: valid while the head is still
    /// the one it wrote (no other node or process appended since).
    memo: std::sync::Mutex<Option<Memo>>,
}

/// The trail as this sequencer's last batch left it. A batch that finds the head it wrote
/// takes the tree's right edge and the newest checkpoint's mark from here instead of
/// reading them (and need not check again that the trail extends the last checkpoint: it
/// extended it itself, and signs from these hashes, not from stored ones). Any other head
/// — a batch from another node, a command of the operator's — and everything is read and
/// checked as at start; so is it at least every [`MEMO_FOR`], so a stored tree changed
/// underneath a busy server is still found within seconds.
struct Memo {
    seq: i64,
    head: Vec<u8>,
    edge: Known,
    /// When the stored tree was last read and checked.
    checked: std::time::Instant,
    /// The newest checkpoint's sequence number and time, as far as this sequencer knows
    /// (another node's checkpoint over an unchanged head can only be newer, so at worst
    /// the next checkpoint here comes early).
    mark: Option<(i64, i64)>,
}

impl Memo {
    /// Whether this is still the trail at `seq` with `head`, checked recently enough.
    fn describes(&self, seq: i64, head: &[u8]) -> bool {
        self.seq == seq && self.head == head && self.checked.elapsed() < MEMO_FOR
    }
}

impl Sequencer {
    async fn run(self, mut rx: mpsc::Receiver<Pending>) {
        // What changes staged before a crash or on another node is chained at once.
        if let Err(e) = self.commit(Vec::new()).await {
            tracing::warn!(error = %e, "could not chain staged audit events at start; will retry");
        }
        loop {
            let first = match tokio::time::timeout(CHECKPOINT_EVERY, rx.recv()).await {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(_) => {
                    if let Err(e) = self.commit(Vec::new()).await {
                        tracing::warn!(error = %e, "could not chain staged audit events; will retry");
                    }
                    if let Err(e) = self.checkpoint_if_due().await {
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
            let events: Vec<(Option<Staged>, Option<ReadClaim>)> = batch
                .iter_mut()
                .map(|p| (p.event.take(), p.claim.take()))
                .collect();
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

    /// Appends `events` (a `None` only asks for a batch) after whatever changes staged in
    /// the outbox, in one transaction; answers one outcome per entry of `events`.
    async fn commit(
        &self,
        events: Vec<(Option<Staged>, Option<ReadClaim>)>,
    ) -> Result<Vec<Claim>, StoreError> {
        let now = self.clock.now_ms();
        if let Some(outcomes) = self.commit_at_once(&events, now).await {
            metrics::counter!("custodia_audit_batches_total", "path" => "at_once").increment(1);
            return Ok(outcomes);
        }
        if !events.is_empty() {
            // What an operator watches for a quick path that no longer holds: most batches
            // of a steady load go at once; step by step are the first after a start, those
            // after staged changes or another node's batch, and a grant's last read.
            metrics::counter!("custodia_audit_batches_total", "path" => "step_by_step")
                .increment(1);
        }
        let mut tx = self.store.begin_audit().await?;
        // Staged by committed changes (in their own transactions): chained first, in the
        // order they committed, and taken out of the outbox in this same transaction.
        let start = tx
            .start_audit_batch(MAX_BATCH, |seq, head| !self.memo_holds(seq, head))
            .await?;
        let (mut seq, mut head, staged) = (start.seq, start.head, start.staged);
        let memo = self.take_memo(seq, &head);
        let mark = match (&memo, start.mark) {
            (_, Some(read)) => read,
            (Some(m), None) => m.mark,
            // Not read because the memo held a moment ago; it cannot have changed since
            // (the head is locked), but read it rather than assume.
            (None, None) => tx.last_checkpoint_mark().await?,
        };
        if staged.is_empty() && events.iter().all(|(e, _)| e.is_none()) {
            self.keep_memo(memo);
            drop(tx);
            return Ok(events.iter().map(|_| Claim::Granted { seq }).collect());
        }
        let mut all: Vec<(Option<Staged>, Option<ReadClaim>, bool)> = Vec::new();
        for json in staged {
            match serde_json::from_str::<Staged>(&json) {
                Ok(e) => all.push((Some(e), None, false)),
                Err(e) => {
                    return Err(StoreError::Other(anyhow::anyhow!(
                        "a staged audit event does not parse: {e}"
                    )));
                }
            }
        }
        all.extend(events.into_iter().map(|(e, c)| (e, c, true)));
        let (mut tree, checked) = match memo {
            Some(m) => (Appender::from_edge(tree_size(seq), m.edge), m.checked),
            None => {
                let signed_size = self.remembered()?.map(|(size, _)| tree_size(size));
                let tree = Appender::load_with(&mut tx, tree_size(seq), signed_size).await?;
                self.check_extends(&mut tx, &tree, seq).await?;
                (tree, std::time::Instant::now())
            }
        };
        let mut last = mark.unwrap_or((0, 0));
        let mut counted = count_claims(&mut tx, &all, now).await?;
        let mut checkpoints = Vec::new();
        let mut outcomes = Vec::with_capacity(all.len());
        let mut written = Vec::with_capacity(all.len());
        let mut exhausted_any = false;
        for (event, claim, answered) in all {
            let Some(mut event) = event else {
                outcomes.push(Claim::Granted { seq });
                continue;
            };
            let mut exhausted = None;
            let granted = match &claim {
                None => true,
                Some(c) => match counted.get_mut(&(c.grant, c.cover.clone())) {
                    Some(Counted::Together {
                        left,
                        exhausted: last,
                    }) => {
                        *left -= 1;
                        if *left == 0 && *last {
                            exhausted = Some(c.grant);
                        }
                        true
                    }
                    Some(Counted::OneByOne) => {
                        match tx.claim_grant_reads(c.grant, 1, now, &c.cover).await? {
                            Some((reads, max)) => {
                                if max.is_some_and(|m| reads >= m) {
                                    exhausted = Some(c.grant);
                                }
                                true
                            }
                            None => false,
                        }
                    }
                    Some(Counted::Refused) | None => false,
                },
            };
            if !granted && claim.as_ref().is_some_and(|c| c.cached) {
                // Prepared from a kept load that no longer holds: nothing is recorded;
                // the caller tries afresh, and that attempt is recorded.
                if answered {
                    outcomes.push(Claim::Stale);
                }
                continue;
            }
            if !granted {
                event = event.refused(
                    "the grant, the agency's key or the document changed before the read was recorded",
                );
            }
            let citizen = event.citizen_pseudonym().map(str::to_owned);
            let mut rows = vec![(seq + 1, event)];
            if answered {
                outcomes.push(if granted {
                    Claim::Granted { seq: seq + 1 }
                } else {
                    Claim::Refused { seq: seq + 1 }
                });
            }
            if let Some(grant) = exhausted {
                tx.end_grant(grant, None, crate::status::GrantStatus::Exhausted, now)
                    .await?;
                exhausted_any = true;
                let ended = Event::new(ActorKind::System, None, Action::GrantExhausted)
                    .citizen(citizen.as_deref())
                    .grant(Some(grant))
                    .objects([grant.to_string()])
                    .stage();
                rows.push((seq + 2, ended));
            }
            for (at_seq, event) in rows {
                let (row, leaf) = event.into_row(at_seq, now, head);
                tree.push(leaf)?;
                seq = at_seq;
                head = row.hash.clone();
                written.push(row);
                // Exactly at the spacing, inside the batch: a verifier can require it.
                if seq - last.0 >= CHECKPOINT_EVERY_EVENTS {
                    checkpoints.push(self.signer.sign(seq, &head, &tree.root()?, now));
                    last = (seq, now);
                }
            }
        }
        tx.write_audit_batch(&written, tree.added(), seq, &head)
            .await?;
        if seq > last.0 && now - last.1 >= interval_ms() {
            checkpoints.push(self.signer.sign(seq, &head, &tree.root()?, now));
            last = (seq, now);
        }
        let signed = self.sign_off(&mut tx, checkpoints).await?;
        tx.commit().await?;
        self.keep_memo(tree.edge().map(|edge| Memo {
            seq,
            head: head.clone(),
            edge,
            checked,
            mark: (last != (0, 0)).then_some(last),
        }));
        if exhausted_any {
            // A grant's last read destroyed its keys in this batch.
            self.store.scrub().await;
        }
        self.remember(signed).await;
        Ok(outcomes)
    }

    /// The common batch in one hand-off to the database: every entry an event, chained
    /// onto the head this sequencer's last batch left ([`Memo`]), each claim counted on the
    /// assumption that it holds and does not take its grant's last read. The store checks
    /// every assumption in the same transaction ([`Store::append_batch_at_once`]); if one
    /// fails, nothing is written and `None` sends the batch the step-by-step way, which
    /// reads the head, takes the outbox and answers each claim as it finds it.
    async fn commit_at_once(
        &self,
        events: &[(Option<Staged>, Option<ReadClaim>)],
        now: i64,
    ) -> Option<Vec<Claim>> {
        if events.is_empty() || events.iter().any(|(e, _)| e.is_none()) {
            return None;
        }
        let memo = self.memo.lock().ok().and_then(|mut m| m.take())?;
        if memo.checked.elapsed() >= MEMO_FOR {
            // Read and checked afresh by the step-by-step batch.
            return None;
        }
        let mut claims: Vec<(GrantId, &ReadCover, i32)> = Vec::new();
        for claim in events.iter().filter_map(|(_, c)| c.as_ref()) {
            match claims.iter_mut().find(|(g, _, _)| *g == claim.grant) {
                Some((_, cover, n)) if **cover == claim.cover => *n += 1,
                // Both engines count a batch's claims with one `UPDATE … FROM` the claims,
                // which changes a grant's row once: two covers under one grant (two of its
                // documents read at once) would be refused there, so such a batch goes step
                // by step from the start.
                Some(_) => {
                    self.keep_memo(Some(memo));
                    return None;
                }
                None => claims.push((claim.grant, &claim.cover, 1)),
            }
        }
        let mut tree = Appender::from_edge(tree_size(memo.seq), memo.edge.clone());
        let (mut seq, mut head) = (memo.seq, memo.head.clone());
        let mut last = memo.mark.unwrap_or((0, 0));
        let mut rows = Vec::with_capacity(events.len());
        let mut outcomes = Vec::with_capacity(events.len());
        let mut checkpoints = Vec::new();
        // A tree the memory cannot extend is left to the step-by-step batch, which reads it
        // afresh (and fails the batch if the stored tree cannot be extended either).
        for event in events.iter().filter_map(|(e, _)| e.clone()) {
            seq += 1;
            let (row, leaf) = event.into_row(seq, now, head);
            if tree.push(leaf).is_err() {
                return None;
            }
            head = row.hash.clone();
            rows.push(row);
            outcomes.push(Claim::Granted { seq });
            if seq - last.0 >= CHECKPOINT_EVERY_EVENTS {
                let root = tree.root().ok()?;
                checkpoints.push(self.signer.sign(seq, &head, &root, now));
                last = (seq, now);
            }
        }
        if seq > last.0 && now - last.1 >= interval_ms() {
            let root = tree.root().ok()?;
            checkpoints.push(self.signer.sign(seq, &head, &root, now));
            last = (seq, now);
        }
        let batch = QuickBatch {
            after: (memo.seq, &memo.head),
            claims,
            rows: &rows,
            tree: tree.added(),
            seq,
            head: &head,
            checkpoints: &checkpoints,
            now_ms: now,
        };
        let written = self.store.append_batch_at_once(&batch).await;
        if !matches!(written, Ok(true)) {
            // Nothing was written: the memo still describes the head it did, and the
            // step-by-step batch checks it against the database.
            if let Err(e) = &written {
                tracing::warn!(error = %e, "an audit batch in one step failed; trying step by step");
            }
            self.keep_memo(Some(memo));
            return None;
        }
        self.keep_memo(tree.edge().map(|edge| Memo {
            seq,
            head: head.clone(),
            edge,
            checked: memo.checked,
            mark: (last != (0, 0)).then_some(last),
        }));
        let newest = checkpoints.last().and_then(|c| {
            let root = c
                .root_hash
                .as_deref()
                .and_then(|r| TreeHash::try_from(r).ok())?;
            Some((c.seq, root, c.note.clone()?))
        });
        self.remember(newest).await;
        Some(outcomes)
    }

    /// The memo, taken (a failed batch leaves none), if the head is still the one it
    /// describes.
    fn take_memo(&self, seq: i64, head: &[u8]) -> Option<Memo> {
        let memo = self.memo.lock().ok()?.take()?;
        memo.describes(seq, head).then_some(memo)
    }

    /// Whether the memo describes this head (without taking it).
    fn memo_holds(&self, seq: i64, head: &[u8]) -> bool {
        self.memo
            .lock()
            .is_ok_and(|m| m.as_ref().is_some_and(|m| m.describes(seq, head)))
    }

    fn keep_memo(&self, memo: Option<Memo>) {
        if let Ok(mut kept) = self.memo.lock() {
            *kept = memo;
        }
    }

    /// Fails the batch unless the trail still extends the last checkpoint this process
    /// signed (or started from): a history changed underneath — rewritten, cut, replaced
    /// by an older copy — is neither appended to nor signed.
    async fn check_extends(
        &self,
        tx: &mut crate::store::Tx,
        tree: &Appender,
        seq: i64,
    ) -> Result<(), StoreError> {
        let Some((size, root)) = self.remembered()? else {
            return Ok(());
        };
        if seq >= size && tree.root_at(tx, tree_size(size)).await? == root {
            return Ok(());
        }
        metrics::counter!("custodia_audit_history_changed_total").increment(1);
        tracing::error!(
            signed = size,
            head = seq,
            "the audit trail no longer extends the last checkpoint this server signed; \
             refusing to append or sign"
        );
        Err(StoreError::Other(anyhow::anyhow!(
            "the audit trail does not extend checkpoint {size}"
        )))
    }

    /// The newest checkpoint this process signed or started from.
    fn remembered(&self) -> Result<Option<(i64, TreeHash)>, StoreError> {
        self.last_signed
            .lock()
            .map(|r| *r)
            .map_err(|_| StoreError::Other(anyhow::anyhow!("the audit signer is poisoned")))
    }

    /// Writes new checkpoints; returns the newest, to remember once committed.
    async fn sign_off(
        &self,
        tx: &mut crate::store::Tx,
        checkpoints: Vec<crate::store::audit::CheckpointRow>,
    ) -> Result<Option<(i64, TreeHash, String)>, StoreError> {
        let Some(newest) = checkpoints.last() else {
            return Ok(None);
        };
        for c in &checkpoints {
            tx.insert_checkpoint(c).await?;
        }
        let root = newest
            .root_hash
            .as_deref()
            .and_then(|r| TreeHash::try_from(r).ok());
        Ok(root
            .zip(newest.note.clone())
            .map(|(root, note)| (newest.seq, root, note)))
    }

    /// After the commit: later checkpoints must extend this one, in this process and, via
    /// the memory file, after a restart.
    async fn remember(&self, signed: Option<(i64, TreeHash, String)>) {
        let Some((seq, root, note)) = signed else {
            return;
        };
        let newer = match self.last_signed.lock() {
            Ok(mut last) if last.is_none_or(|(s, _)| seq >= s) => {
                *last = Some((seq, root));
                true
            }
            _ => false,
        };
        if let (true, Some(path)) = (newer, &self.signer.memory) {
            let tmp = path.with_extension("tmp");
            let written = async {
                tokio::fs::write(&tmp, note.as_bytes()).await?;
                tokio::fs::rename(&tmp, path).await
            };
            if let Err(e) = written.await {
                tracing::warn!(error = %e, path = %path.display(), "could not remember the newest audit checkpoint");
            }
        }
    }

    /// Signs the current head if events were added since the last checkpoint (when idle).
    async fn checkpoint_if_due(&self) -> Result<(), StoreError> {
        // Reads and checks everything itself; the next batch reads afresh after it.
        self.keep_memo(None);
        let now = self.clock.now_ms();
        let mut tx = self.store.begin_audit().await?;
        let (seq, head) = tx.lock_audit_head().await?;
        let last = tx.last_checkpoint_mark().await?.map_or(0, |(s, _)| s);
        let mut signed = None;
        if seq > last {
            let tree = Appender::load(&mut tx, tree_size(seq)).await?;
            self.check_extends(&mut tx, &tree, seq).await?;
            let checkpoint = self.signer.sign(seq, &head, &tree.root()?, now);
            signed = self.sign_off(&mut tx, vec![checkpoint]).await?;
        }
        tx.commit().await?;
        self.remember(signed).await;
        Ok(())
    }
}

/// Counts a batch's claims (reads recorded with a claim on their grant) in one statement
/// per grant when all of a grant's claims fit under its `max_reads` — many officers reading
/// under one grant at once is the common case under load. A grant whose claims do not all
/// fit is counted claim by claim, in order, so the reads past the limit are refused exactly
/// as they would be singly.
async fn count_claims(
    tx: &mut crate::store::Tx,
    all: &[(Option<Staged>, Option<ReadClaim>, bool)],
    now: i64,
) -> Result<std::collections::HashMap<(GrantId, ReadCover), Counted>, StoreError> {
    let mut claims: Vec<(&ReadClaim, i32)> = Vec::new();
    for claim in all
        .iter()
        .filter(|(event, _, _)| event.is_some())
        .filter_map(|(_, claim, _)| claim.as_ref())
    {
        match claims
            .iter_mut()
            .find(|(c, _)| c.grant == claim.grant && c.cover == claim.cover)
        {
            Some((_, n)) => *n += 1,
            None => claims.push((claim, 1)),
        }
    }
    let mut counted = std::collections::HashMap::with_capacity(claims.len());
    for (claim, n) in claims {
        let how = match tx
            .claim_grant_reads(claim.grant, n, now, &claim.cover)
            .await?
        {
            Some((reads, max)) => Counted::Together {
                left: n,
                exhausted: max.is_some_and(|m| reads >= m),
            },
            None if n == 1 => Counted::Refused,
            None => Counted::OneByOne,
        };
        counted.insert((claim.grant, claim.cover.clone()), how);
    }
    Ok(counted)
}

/// How long a [`Memo`] stands in for reading and checking the stored tree.
const MEMO_FOR: std::time::Duration = std::time::Duration::from_secs(5);

fn tree_size(seq: i64) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn interval_ms() -> i64 {
    i64::try_from(CHECKPOINT_EVERY.as_millis()).unwrap_or(i64::MAX)
}

/// The newest checkpoint this server remembers signing (its memory file), if any and if
/// it is a note of its own.
async fn remembered(signer: &LogSigner) -> Option<(i64, TreeHash)> {
    let path = signer.memory.as_ref()?;
    let note = tokio::fs::read_to_string(path).await.ok()?;
    let opened = signer.open_own(&note);
    if opened.is_none() {
        tracing::warn!(path = %path.display(), "the audit checkpoint memory is not a checkpoint of this log; ignoring it");
    }
    opened
}

/// Stages `event` in the change's own transaction `tx` (the outbox): the change and its
/// record commit together or not at all, and the sequencer chains it next (call
/// [`AuditLog::flush`] after the commit to have it chained before answering). A staging
/// that fails fails the change: nothing stands without its record (SPEC G2).
pub async fn stage(tx: &mut crate::store::Tx, event: Event, now_ms: i64) -> Result<(), Error> {
    let json = staged_json(event)?;
    tx.stage_audit_event(&json, now_ms).await.map_err(|e| {
        tracing::error!(error = %e, "could not stage an audit event; refusing the change");
        Error::AuditUnavailable
    })
}

/// The outbox form of `event`, for a transaction that stages it with
/// `Tx::stage_audit_event` itself.
pub fn staged_json(event: Event) -> Result<String, Error> {
    serde_json::to_string(&event.stage()).map_err(|e| Error::Internal(e.into()))
}
