//! Rows of `audit_head`, `audit_events` and `audit_checkpoints`.
//!
//! The head row holds the last sequence number and hash. Every batch of appends locks it
//! (PostgreSQL: `FOR UPDATE`; SQLite: the write lock `BEGIN IMMEDIATE` already holds), so
//! several nodes writing one database still produce one chain.

use crate::ids::{CitizenId, GrantId};

use sqlx::Connection as _;

use crate::on_engine;

use super::{Store, StoreError, Tx};

/// One audit event as stored. Lists (`object_ids`, `fields`) are JSON text; the hash
/// covers the stored text exactly.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub officer_id: Option<String>,
    pub case_id: Option<String>,
    pub citizen_pseudonym: Option<String>,
    pub action: String,
    pub object_ids: String,
    pub grant_id: Option<GrantId>,
    pub purpose: Option<String>,
    pub tier: Option<String>,
    pub fields: Option<String>,
    pub outcome: String,
    pub bytes_sent: Option<i64>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// The canonical bytes the hash and the Merkle leaf were computed over (NULL for events
    /// written before they were stored; verifiers then encode the columns).
    #[sqlx(default)]
    pub body: Option<String>,
}

/// A signed checkpoint: the chain's head at one sequence number.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CheckpointRow {
    pub seq: i64,
    pub head_hash: Vec<u8>,
    pub at: i64,
    pub key_id: String,
    pub signature: Vec<u8>,
    /// The tree's root at `seq` events (NULL before the tree existed).
    pub root_hash: Option<Vec<u8>>,
    /// The C2SP checkpoint, signed (NULL before the tree existed).
    pub note: Option<String>,
}

const COLUMNS: &str = "seq, at, actor_kind, actor_id, officer_id, case_id, citizen_pseudonym, action, \
    object_ids, grant_id, purpose, tier, fields, outcome, bytes_sent, request_id, detail, prev_hash, hash";

/// A page of stored events as [`Store::audit_bytes_page`] reads it: three lists in the
/// same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BytesPage {
    /// The sequence numbers, comma-separated.
    pub seqs: String,
    /// Each event's canonical bytes, `␞` (U+001E) between events; empty for an event
    /// stored without them.
    pub bodies: String,
    /// Each event's stored hash, 32 bytes each, end to end.
    pub hashes: Vec<u8>,
    /// The first event of the page whose stored columns differ from its bytes, when the
    /// columns were checked.
    pub differs_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct BytesPageRow {
    seqs: Option<String>,
    bodies: Option<String>,
    hashes: Option<Vec<u8>>,
    differs_at: Option<i64>,
}

/// `CREATE TABLE audit_events (…)` exactly as migration 0007 wrote it on SQLite, and so as
/// `sqlite_schema` keeps it: the definition that makes every column a view of the bytes.
fn sqlite_events_table() -> &'static str {
    const MIGRATION: &str = include_str!("../../migrations/sqlite/0007_events_from_bytes.sql");
    const START: &str = "CREATE TABLE audit_events (";
    let from = MIGRATION.find(START).unwrap_or(0);
    let rest = MIGRATION.get(from..).unwrap_or_default();
    rest.find("\n);")
        .and_then(|end| rest.get(..end + 2))
        .unwrap_or(rest)
}

/// An event's columns rendered in SQLite as the canonical JSON its bytes must be (keys in
/// RFC 8785 order; `json_object` escapes strings as RFC 8785 does; the grant id, a blob,
/// as the hyphenated lower-case UUID).
const SQLITE_JCS: &str = "json_object('action', action, 'actor_id', actor_id, \
    'actor_kind', actor_kind, 'at', at, 'bytes_sent', bytes_sent, 'case_id', case_id, \
    'citizen', citizen_pseudonym, 'detail', detail, 'fields', fields, 'grant_id', \
    CASE WHEN grant_id IS NULL THEN NULL ELSE lower(substr(hex(grant_id), 1, 8) || '-' || \
    substr(hex(grant_id), 9, 4) || '-' || substr(hex(grant_id), 13, 4) || '-' || \
    substr(hex(grant_id), 17, 4) || '-' || substr(hex(grant_id), 21, 12)) END, \
    'object_ids', object_ids, 'officer_id', officer_id, 'outcome', outcome, 'purpose', purpose, \
    'request_id', request_id, 'seq', seq, 'tier', tier)";

/// The same in PostgreSQL: `to_json(text)` escapes as RFC 8785 does (`\"`, `\\`, `\b \f \n
/// \r \t`, other control characters as lower-case `\u00xx`).
const POSTGRES_JCS: &str = "('{\"action\":' || to_json(action)::text || \
    ',\"actor_id\":' || COALESCE(to_json(actor_id)::text, 'null') || \
    ',\"actor_kind\":' || to_json(actor_kind)::text || \
    ',\"at\":' || at::text || \
    ',\"bytes_sent\":' || COALESCE(bytes_sent::text, 'null') || \
    ',\"case_id\":' || COALESCE(to_json(case_id)::text, 'null') || \
    ',\"citizen\":' || COALESCE(to_json(citizen_pseudonym)::text, 'null') || \
    ',\"detail\":' || COALESCE(to_json(detail)::text, 'null') || \
    ',\"fields\":' || COALESCE(to_json(fields)::text, 'null') || \
    ',\"grant_id\":' || COALESCE(to_json(grant_id::text)::text, 'null') || \
    ',\"object_ids\":' || to_json(object_ids)::text || \
    ',\"officer_id\":' || COALESCE(to_json(officer_id)::text, 'null') || \
    ',\"outcome\":' || to_json(outcome)::text || \
    ',\"purpose\":' || COALESCE(to_json(purpose)::text, 'null') || \
    ',\"request_id\":' || COALESCE(to_json(request_id)::text, 'null') || \
    ',\"seq\":' || seq::text || \
    ',\"tier\":' || COALESCE(to_json(tier)::text, 'null') || '}')";

/// Appends the condition an [`AuditFilter`] makes to a query builder: only the filters it
/// sets, each bound as a parameter. Every combination is then a statement of its own with
/// a plan of its own, which uses the index that fits it (a catch-all `($n IS NULL OR
/// column = $m)` text leaves a cached generic plan nothing to do but scan the trail).
macro_rules! push_filter {
    ($qb:expr, $f:expr) => {{
        let f: &AuditFilter = $f;
        let qb = &mut $qb;
        let text = [
            (" AND citizen_pseudonym = ", &f.citizen_pseudonym),
            (" AND actor_kind = ", &f.actor_kind),
            (" AND actor_id = ", &f.actor_id),
            (" AND officer_id = ", &f.officer_id),
            (" AND action = ", &f.action),
            (" AND outcome = ", &f.outcome),
        ];
        for (condition, value) in text {
            if let Some(v) = value {
                qb.push(condition).push_bind(v.clone());
            }
        }
        if let Some(v) = f.since_ms {
            qb.push(" AND at >= ").push_bind(v);
        }
        if let Some(v) = f.until_ms {
            qb.push(" AND at < ").push_bind(v);
        }
        if let Some(v) = f.disclosed_at {
            qb.push(UNDISCLOSED).push_bind(v).push("))");
        }
    }};
}

/// The condition that leaves out the events of emergency grants not yet disclosed to the
/// citizen, completed by the time bound and two closing parentheses.
const UNDISCLOSED: &str = " AND (grant_id IS NULL OR grant_id NOT IN \
    (SELECT grant_id FROM emergency_accesses WHERE disclose_at > ";

/// Binds an event's 20 PostgreSQL columns (`COLUMNS`, then `body`) to `$q`.
macro_rules! bind_event {
    ($q:expr, $e:expr) => {{
        let e: &AuditRow = $e;
        $q.bind(e.seq)
            .bind(e.at)
            .bind(&e.actor_kind)
            .bind(&e.actor_id)
            .bind(&e.officer_id)
            .bind(&e.case_id)
            .bind(&e.citizen_pseudonym)
            .bind(&e.action)
            .bind(&e.object_ids)
            .bind(e.grant_id)
            .bind(&e.purpose)
            .bind(&e.tier)
            .bind(&e.fields)
            .bind(&e.outcome)
            .bind(e.bytes_sent)
            .bind(&e.request_id)
            .bind(&e.detail)
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .bind(&e.body)
    }};
}

/// Binds a checkpoint's seven columns to `$q`, in the order every insert of one lists them
/// (`seq, head_hash, at, key_id, signature, root_hash, note`).
macro_rules! bind_checkpoint {
    ($q:expr, $c:expr) => {{
        let c: &CheckpointRow = $c;
        $q.bind(c.seq)
            .bind(&c.head_hash)
            .bind(c.at)
            .bind(&c.key_id)
            .bind(&c.signature)
            .bind(&c.root_hash)
            .bind(&c.note)
    }};
}

/// Binds a claim's [`ClaimTerms`] parameters, in their order, to `$q`: the time twice, the
/// reads counted, the key's hash, the time, the document and its version.
macro_rules! bind_claim_terms {
    ($q:expr, $n:expr, $now:expr, $cover:expr) => {{
        let (n, now, cover): (i32, i64, &super::reads::ReadCover) = ($n, $now, $cover);
        $q.bind(now)
            .bind(now)
            .bind(n)
            .bind(cover.key_hash.as_slice())
            .bind(now)
            .bind(cover.document)
            .bind(cover.version)
    }};
}

/// Binds one per-day count (its [`DayKey`], then the count) to `$q`, as [`days_upsert`]
/// takes them.
macro_rules! bind_day {
    ($q:expr, $day:expr) => {{
        let ((day, kind, actor, action, outcome), n): &(DayKey<'_>, i64) = $day;
        $q.bind(*day)
            .bind(*kind)
            .bind(*actor)
            .bind(*action)
            .bind(*outcome)
            .bind(*n)
    }};
}

/// A key of `audit_daily`: UTC day, actor kind, actor (`""` for none), action, outcome.
type DayKey<'a> = (i64, &'a str, &'a str, &'a str, &'a str);

/// `rows` counted per [`DayKey`], each key once.
fn day_counts(rows: &[AuditRow]) -> Vec<(DayKey<'_>, i64)> {
    let mut days: std::collections::BTreeMap<DayKey<'_>, i64> = std::collections::BTreeMap::new();
    for e in rows {
        let key = (
            e.at.div_euclid(DAY_MS),
            e.actor_kind.as_str(),
            e.actor_id.as_deref().unwrap_or(""),
            e.action.as_str(),
            e.outcome.as_str(),
        );
        *days.entry(key).or_default() += 1;
    }
    days.into_iter().collect()
}

/// An SQLite insert of events (the stored bytes and hashes; every other column is computed
/// from the bytes), before its rows of placeholders.
const SQLITE_EVENTS_INSERT: &str = "INSERT INTO audit_events (seq, body, prev_hash, hash) VALUES ";

/// [`Tx::write_audit_batch`] on SQLite: one query of constant text, so it is prepared once
/// per connection whatever the batch's size. The events, the tree hashes and the per-day
/// counts travel as three JSON arrays that the statements read with `json_each`.
static SQLITE_BATCH_WRITE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| sqlite_batch_write(["?", "?", "?"], ["?", "?", "?"]));

/// The statements that write a batch on SQLite, reading the three JSON arrays of
/// [`sqlite_batch_json`] from `json` and the new head (seq, hash, tree size) from `head`:
/// as a query of its own ([`SQLITE_BATCH_WRITE`]) and inside [`sqlite_batch_trigger`].
fn sqlite_batch_write(json: [&str; 3], head: [&str; 3]) -> String {
    let [events, tree, days] = json;
    let [seq, hash, size] = head;
    format!(
        "INSERT INTO audit_events (seq, body, prev_hash, hash) \
            SELECT value->>0, value->>1, unhex(value->>2), unhex(value->>3) FROM json_each({events}); \
         INSERT INTO audit_tree (idx, hash) SELECT value->>0, unhex(value->>1) FROM json_each({tree}); \
         INSERT INTO audit_daily (day, actor_kind, actor_id, action, outcome, n) \
            SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5 \
            FROM json_each({days}) WHERE true \
            ON CONFLICT (day, actor_kind, actor_id, action, outcome) \
            DO UPDATE SET n = audit_daily.n + excluded.n; \
         UPDATE audit_head SET seq = {seq}, hash = {hash}, tree_size = {size} WHERE id = 1"
    )
}

/// The three JSON arrays [`SQLITE_BATCH_WRITE`] reads: events `[seq, body, prev, hash]`,
/// tree hashes `[idx, hash]` and day counts `[day, kind, actor, action, outcome, n]`, with
/// hashes in hex.
fn sqlite_batch_json(
    rows: &[AuditRow],
    tree: &[(u64, [u8; 32])],
) -> Result<[String; 3], StoreError> {
    use custodia_crypto::digest::hex;
    let mut events = Vec::with_capacity(rows.len());
    for e in rows {
        let body = e.body.as_deref().ok_or_else(|| {
            StoreError::Other(anyhow::anyhow!("audit event {} has no stored bytes", e.seq))
        })?;
        events.push(serde_json::json!([
            e.seq,
            body,
            hex(&e.prev_hash),
            hex(&e.hash)
        ]));
    }
    let tree: Vec<_> = tree
        .iter()
        .map(|(i, h)| serde_json::json!([i, hex(h)]))
        .collect();
    let days: Vec<_> = day_counts(rows)
        .into_iter()
        .map(|((day, kind, actor, action, outcome), n)| {
            serde_json::json!([day, kind, actor, action, outcome, n])
        })
        .collect();
    Ok([json_text(&events)?, json_text(&tree)?, json_text(&days)?])
}

/// Binds [`SQLITE_BATCH_WRITE`]'s parameters, in order, to `q`.
fn bind_sqlite_batch<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    json: [String; 3],
    seq: i64,
    head: &'q [u8],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    let [events, tree, days] = json;
    q.bind(events)
        .bind(tree)
        .bind(days)
        .bind(seq)
        .bind(head)
        .bind(seq)
}

async fn write_sqlite_batch(
    c: &mut sqlx::SqliteConnection,
    rows: &[AuditRow],
    tree: &[(u64, [u8; 32])],
    seq: i64,
    head: &[u8],
) -> Result<(), StoreError> {
    let json = sqlite_batch_json(rows, tree)?;
    bind_sqlite_batch(sqlx::query(SQLITE_BATCH_WRITE.as_str()), json, seq, head)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The upsert that adds counts to `audit_daily`, around its `VALUES` rows.
fn days_upsert(values: &str) -> String {
    format!(
        "INSERT INTO audit_daily (day, actor_kind, actor_id, action, outcome, n) VALUES {values} \
         ON CONFLICT (day, actor_kind, actor_id, action, outcome) \
         DO UPDATE SET n = audit_daily.n + excluded.n"
    )
}

/// How a claim's statement names what [`claim_conditions`] compares: the reads counted,
/// the time (once per use), the presented key's hash, the document and its version.
struct ClaimTerms {
    n: String,
    from: String,
    until: String,
    key_hash: String,
    key_until: String,
    document: String,
    version: String,
}

impl ClaimTerms {
    /// Parameters numbered from `first`, bound in the order [`bind_claim_terms`] binds
    /// them (PostgreSQL `$n`; SQLite reads `$n` as the n-th parameter too).
    fn numbered(first: usize) -> Self {
        let at = |i: usize| format!("${}", first + i);
        Self {
            from: at(0),
            until: at(1),
            n: at(2),
            key_hash: at(3),
            key_until: at(4),
            document: at(5),
            version: at(6),
        }
    }
}

/// Whether a claim may take a grant's last read.
#[derive(Clone, Copy)]
enum LastRead {
    /// Yes (the step-by-step batch, which then ends the grant as exhausted).
    MayTake,
    /// No (the batch written at once, which never ends a grant).
    Leaves,
}

/// What a read's claim requires of its grant, in one place for every statement that
/// counts reads (SPEC G1): live by status and window, `n` more reads within `max_reads`,
/// the presented key still the grant's agency's and unexpired, the agency enabled, and the
/// document the grant's citizen's, not deleted, at the version read, with the grant's wrap
/// of that version (all by primary key or unique column). Its own tables are aliased `k`,
/// `a`, `d` and `gw`; a statement's terms may name any other alias.
fn claim_conditions(t: &ClaimTerms, last: LastRead) -> String {
    let within = match last {
        LastRead::MayTake => "<=",
        LastRead::Leaves => "<",
    };
    format!(
        "status = 'active' AND valid_from <= {from} AND expires_at > {until} \
         AND (max_reads IS NULL OR reads + {n} {within} max_reads) \
         AND EXISTS (SELECT 1 FROM agency_keys k JOIN agencies a ON a.id = k.agency_id \
            WHERE k.key_hash = {key_hash} AND k.agency_id = grants.agency_id \
            AND a.disabled_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > {key_until})) \
         AND EXISTS (SELECT 1 FROM documents d JOIN grant_key_wraps gw \
            ON gw.document_id = d.id AND gw.version = d.current_version \
            WHERE d.id = {document} AND d.citizen_id = grants.citizen_id \
            AND d.deleted_at IS NULL AND d.current_version = {version} AND gw.grant_id = grants.id)",
        from = t.from,
        until = t.until,
        n = t.n,
        key_hash = t.key_hash,
        key_until = t.key_until,
        document = t.document,
        version = t.version,
    )
}

/// A batch as the sequencer prepared it from what it remembers of the trail, for
/// [`Store::append_batch_at_once`]: what it assumed, and what to write if that holds.
#[derive(Debug)]
pub struct QuickBatch<'a> {
    /// The head the batch was chained onto: `(seq, hash)`.
    pub after: (i64, &'a [u8]),
    /// Each grant read under, with the key, document and version the reads were prepared
    /// with, and how many reads to count.
    pub claims: Vec<(GrantId, &'a super::reads::ReadCover, i32)>,
    /// The events, chained.
    pub rows: &'a [AuditRow],
    /// The tree hashes they add.
    pub tree: &'a [(u64, [u8; 32])],
    /// The new head.
    pub seq: i64,
    /// Its hash.
    pub head: &'a [u8],
    /// Checkpoints signed in the batch.
    pub checkpoints: &'a [CheckpointRow],
    /// The time the claims are checked at.
    pub now_ms: i64,
}

/// The name of what a [`QuickBatch`] is inserted into on SQLite, and the word its refusals
/// carry: a view of the sequencer's connection whose trigger writes the batch
/// ([`sqlite_batch_trigger`]).
const SQLITE_QUICK_BATCH: &str = "audit_batch";

/// The one statement of a [`QuickBatch`] on SQLite, its values in the view's column order.
const SQLITE_QUICK_INSERT: &str = "INSERT INTO audit_batch VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// A [`QuickBatch`] on SQLite: one statement, `INSERT INTO audit_batch VALUES (…)`, so the
/// batch is one hand-off to the driver's thread and one answer back. Run outside any
/// transaction, the statement is its own: it takes the write lock as it starts (it writes)
/// and commits as it ends, or, if any part fails, undoes every part. The view and its
/// trigger are temporary objects of the sequencer's connection, made as it connects (the
/// claim's conditions are [`claim_conditions`], kept in one place in the code rather than
/// copied into the schema). The trigger refuses — `RAISE(ABORT)`, nothing written — unless
/// the head is still the one the batch was chained onto, no change waits in the outbox and
/// every claim counted, each without taking its grant's last read (that read ends the
/// grant, which only the step-by-step batch does). Two claims on one grant count as one
/// row, so such a batch is refused too and goes step by step.
pub(super) fn sqlite_batch_trigger() -> String {
    let terms = ClaimTerms {
        from: "NEW.now".into(),
        until: "NEW.now".into(),
        n: "(w.value->>1)".into(),
        key_hash: "unhex(w.value->>2)".into(),
        key_until: "NEW.now".into(),
        document: "unhex(w.value->>3)".into(),
        version: "(w.value->>4)".into(),
    };
    format!(
        "CREATE TEMP VIEW IF NOT EXISTS {SQLITE_QUICK_BATCH} \
            (after_seq, after_hash, now, claims, checkpoints, events, tree, days, seq, hash) \
            AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0; \
         CREATE TEMP TRIGGER IF NOT EXISTS {SQLITE_QUICK_BATCH} \
            INSTEAD OF INSERT ON {SQLITE_QUICK_BATCH} BEGIN \
            SELECT RAISE(ABORT, '{SQLITE_QUICK_BATCH}: the head moved or changes wait') \
                WHERE NOT EXISTS (SELECT 1 FROM audit_head \
                    WHERE id = 1 AND seq = NEW.after_seq AND hash = NEW.after_hash) \
                OR EXISTS (SELECT 1 FROM audit_outbox); \
            UPDATE grants SET reads = reads + (w.value->>1) FROM json_each(NEW.claims) AS w \
                WHERE grants.id = unhex(w.value->>0) AND {claim}; \
            SELECT RAISE(ABORT, '{SQLITE_QUICK_BATCH}: a claim does not hold') \
                WHERE changes() <> json_array_length(NEW.claims); \
            {CHECKPOINT_INSERT_COLUMNS} SELECT value->>0, unhex(value->>1), value->>2, \
                value->>3, unhex(value->>4), unhex(value->>5), value->>6 \
                FROM json_each(NEW.checkpoints) WHERE true ON CONFLICT (seq) DO NOTHING; \
            {write}; \
         END",
        claim = claim_conditions(&terms, LastRead::Leaves),
        write = sqlite_batch_write(
            ["NEW.events", "NEW.tree", "NEW.days"],
            ["NEW.seq", "NEW.hash", "NEW.seq"]
        ),
    )
}

/// `rows` as one JSON array's text, for SQLite's `json_each`.
fn json_text(rows: &[serde_json::Value]) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Other(e.into()))
}

/// The JSON arrays a [`QuickBatch`]'s claims and checkpoints travel in to
/// [`sqlite_batch_trigger`]: claims `[grant, n, key hash, document, version]` and
/// checkpoints `[seq, head, at, key id, signature, root, note]`, with bytes in hex.
fn sqlite_quick_json(batch: &QuickBatch<'_>) -> Result<[String; 2], StoreError> {
    use custodia_crypto::digest::hex;
    let claims: Vec<_> = batch
        .claims
        .iter()
        .map(|(grant, cover, n)| {
            serde_json::json!([
                hex(grant.as_bytes()),
                n,
                hex(&cover.key_hash),
                hex(cover.document.as_bytes()),
                cover.version
            ])
        })
        .collect();
    let checkpoints: Vec<_> = batch
        .checkpoints
        .iter()
        .map(|c| {
            serde_json::json!([
                c.seq,
                hex(&c.head_hash),
                c.at,
                c.key_id,
                hex(&c.signature),
                c.root_hash.as_deref().map(hex),
                c.note
            ])
        })
        .collect();
    Ok([json_text(&claims)?, json_text(&checkpoints)?])
}

/// A checkpoint's insert, before its row(s) of values (bound by [`bind_checkpoint!`]).
const CHECKPOINT_INSERT: &str = "INSERT INTO audit_checkpoints (seq, head_hash, at, key_id, \
    signature, root_hash, note) VALUES ";

/// A checkpoint's insert from a query, before its `SELECT`.
const CHECKPOINT_INSERT_COLUMNS: &str = "INSERT INTO audit_checkpoints (seq, head_hash, at, \
    key_id, signature, root_hash, note)";

impl Store {
    /// Writes a batch the sequencer chained from what it remembers, in one hand-off to the
    /// database: on SQLite one statement that takes the write lock, checks every assumption
    /// (the head, an empty outbox, each claim), writes and commits
    /// ([`sqlite_batch_trigger`]); on PostgreSQL one
    /// statement, committed on its own ([`append_postgres_batch_at_once`]). `Ok(false)`:
    /// an assumption did not hold; nothing was written, and the batch must go step by step
    /// ([`Tx::start_audit_batch`] and the rest).
    pub async fn append_batch_at_once(&self, batch: &QuickBatch<'_>) -> Result<bool, StoreError> {
        let pool = match &self.audit {
            super::OnEngine::Sqlite(pool) => pool,
            super::OnEngine::Postgres(pool) => {
                return append_postgres_batch_at_once(pool, batch).await;
            }
        };
        let mut conn = pool.acquire().await?;
        // The statement commits on its own only outside a transaction. Every transaction on
        // this connection is a `Tx`, whose end sqlx tracks; one still open here would hold
        // the batch uncommitted, so it goes the step-by-step way, which fails clearly.
        if conn.is_in_transaction() {
            return Ok(false);
        }
        let [events, tree, days] = sqlite_batch_json(batch.rows, batch.tree)?;
        let [claims, checkpoints] = sqlite_quick_json(batch)?;
        let written = sqlx::query(SQLITE_QUICK_INSERT)
            .bind(batch.after.0)
            .bind(batch.after.1)
            .bind(batch.now_ms)
            .bind(claims)
            .bind(checkpoints)
            .bind(events)
            .bind(tree)
            .bind(days)
            .bind(batch.seq)
            .bind(batch.head)
            .execute(&mut *conn)
            .await;
        let Err(e) = written else {
            return Ok(true);
        };
        // The statement failed as a whole and undid every part: nothing was written.
        let refused = matches!(&e, sqlx::Error::Database(db)
            if db.message().starts_with(SQLITE_QUICK_BATCH));
        if refused { Ok(false) } else { Err(e.into()) }
    }
}

/// [`Store::append_batch_at_once`] on PostgreSQL: one statement outside any explicit
/// transaction, so it commits on its own, in one round trip. Its parts count the claims,
/// move the head from the one the batch was chained onto (waiting for, then re-checking,
/// a head another node is moving), and write the events, tree hashes, day counts and
/// checkpoints; its result divides by zero unless the head moved and every claim counted,
/// which fails the statement and undoes every part. Another node's batch at the same
/// sequence numbers fails it too (the events' primary key). Every part reads its rows from
/// arrays (`unnest`), so the text is one whatever the batch holds, and the statement is
/// prepared once per connection rather than parsed and planned for every batch.
static POSTGRES_QUICK_BATCH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    // $1 the time; $2..$5 the head: new seq, new hash, old seq, old hash; $6..$10 the
    // claims; then the writes and the checkpoints.
    let terms = ClaimTerms {
        from: "$1".into(),
        until: "$1".into(),
        n: "w.n".into(),
        key_hash: "w.key_hash".into(),
        key_until: "$1".into(),
        document: "w.document".into(),
        version: "w.version".into(),
    };
    let (parts, used) = postgres_write_parts(10);
    // The closing `SELECT` reads the head first: its row lock is taken before any grant's,
    // as the step-by-step batch takes them.
    format!(
        "WITH wanted (id, n, key_hash, document, version) AS (SELECT * FROM \
            unnest($6::uuid[], $7::int[], $8::bytea[], $9::uuid[], $10::int[])), \
         claims AS (UPDATE grants SET reads = reads + w.n FROM wanted w \
            WHERE grants.id = w.id AND {claim} RETURNING grants.id), \
         head AS (UPDATE audit_head SET seq = $2, hash = $3, tree_size = $2 \
            WHERE id = 1 AND seq = $4 AND hash = $5 \
            AND NOT EXISTS (SELECT 1 FROM audit_outbox) RETURNING 1), \
         {parts}, \
         signed AS ({CHECKPOINT_INSERT_COLUMNS} SELECT * FROM unnest(${c1}::bigint[], \
            ${c2}::bytea[], ${c3}::bigint[], ${c4}::text[], ${c5}::bytea[], ${c6}::bytea[], \
            ${c7}::text[]) ON CONFLICT (seq) DO NOTHING) \
         SELECT 1 / ((SELECT count(*) FROM head) \
            * (CASE WHEN (SELECT count(*) FROM claims) = cardinality($6::uuid[]) \
               THEN 1 ELSE 0 END))",
        claim = claim_conditions(&terms, LastRead::Leaves),
        c1 = used + 1,
        c2 = used + 2,
        c3 = used + 3,
        c4 = used + 4,
        c5 = used + 5,
        c6 = used + 6,
        c7 = used + 7,
    )
});

async fn append_postgres_batch_at_once(
    pool: &sqlx::PgPool,
    batch: &QuickBatch<'_>,
) -> Result<bool, StoreError> {
    let (claims, signed) = (&batch.claims, batch.checkpoints);
    let q = sqlx::query(POSTGRES_QUICK_BATCH.as_str())
        .bind(batch.now_ms)
        .bind(batch.seq)
        .bind(batch.head)
        .bind(batch.after.0)
        .bind(batch.after.1)
        .bind(column(claims, |(g, _, _)| g.uuid()))
        .bind(column(claims, |(_, _, n)| *n))
        .bind(column(claims, |(_, c, _)| c.key_hash.clone()))
        .bind(column(claims, |(_, c, _)| c.document.uuid()))
        .bind(column(claims, |(_, c, _)| c.version));
    let days = day_counts(batch.rows);
    let q = bind_postgres_write_parts(q, batch.rows, batch.tree, &days)
        .bind(column(signed, |c| c.seq))
        .bind(column(signed, |c| c.head_hash.clone()))
        .bind(column(signed, |c| c.at))
        .bind(column(signed, |c| c.key_id.clone()))
        .bind(column(signed, |c| c.signature.clone()))
        .bind(column(signed, |c| c.root_hash.clone()))
        .bind(column(signed, |c| c.note.clone()));
    match q.execute(pool).await {
        Ok(_) => Ok(true),
        // 22012: the guard's division by zero; 23505: another node's events came first;
        // 40P01: a deadlock with another node's batch, which PostgreSQL ended here.
        Err(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("22012" | "23505" | "40P01")) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// The parts of a PostgreSQL batch statement that write its events, tree hashes and day
/// counts — `events AS (…), tree AS (…), days AS (…)` — each reading its rows from arrays
/// (`unnest`), one array a column, so the text is the same whatever the batch's size;
/// placeholders numbered after `before`; and the last placeholder they use. Bound by
/// [`bind_postgres_write_parts`].
fn postgres_write_parts(before: usize) -> (String, usize) {
    const EVENT_TYPES: [&str; 20] = [
        "bigint", "bigint", "text", "text", "text", "text", "text", "text", "text", "uuid", "text",
        "text", "text", "text", "bigint", "text", "text", "bytea", "bytea", "text",
    ];
    let mut at = before;
    let mut arrays = |types: &[&str]| {
        let text: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}[]", at + i + 1))
            .collect();
        at += types.len();
        text.join(", ")
    };
    let events = arrays(&EVENT_TYPES);
    let tree = arrays(&["bigint", "bytea"]);
    let days = arrays(&["bigint", "text", "text", "text", "text", "bigint"]);
    let sql = format!(
        "events AS (INSERT INTO audit_events ({COLUMNS}, body) SELECT * FROM unnest({events})), \
         tree AS (INSERT INTO audit_tree (idx, hash) SELECT * FROM unnest({tree})), \
         days AS (INSERT INTO audit_daily (day, actor_kind, actor_id, action, outcome, n) \
            SELECT * FROM unnest({days}) \
            ON CONFLICT (day, actor_kind, actor_id, action, outcome) \
            DO UPDATE SET n = audit_daily.n + excluded.n)"
    );
    (sql, at)
}

/// [`Tx::write_audit_batch`] on PostgreSQL: the written parts, then the head's move
/// (its sequence number, hash and tree size).
static POSTGRES_BATCH_WRITE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let (parts, used) = postgres_write_parts(0);
    format!(
        "WITH {parts} UPDATE audit_head SET seq = ${seq_at}, hash = ${hash_at}, \
         tree_size = ${seq_at} WHERE id = 1",
        seq_at = used + 1,
        hash_at = used + 2,
    )
});

/// Binds [`postgres_write_parts`]' arrays, in their order, to `q`.
fn bind_postgres_write_parts<'q>(
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    rows: &[AuditRow],
    tree: &[(u64, [u8; 32])],
    days: &[(DayKey<'_>, i64)],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(column(rows, |e| e.seq))
        .bind(column(rows, |e| e.at))
        .bind(column(rows, |e| e.actor_kind.clone()))
        .bind(column(rows, |e| e.actor_id.clone()))
        .bind(column(rows, |e| e.officer_id.clone()))
        .bind(column(rows, |e| e.case_id.clone()))
        .bind(column(rows, |e| e.citizen_pseudonym.clone()))
        .bind(column(rows, |e| e.action.clone()))
        .bind(column(rows, |e| e.object_ids.clone()))
        .bind(column(rows, |e| e.grant_id.map(GrantId::uuid)))
        .bind(column(rows, |e| e.purpose.clone()))
        .bind(column(rows, |e| e.tier.clone()))
        .bind(column(rows, |e| e.fields.clone()))
        .bind(column(rows, |e| e.outcome.clone()))
        .bind(column(rows, |e| e.bytes_sent))
        .bind(column(rows, |e| e.request_id.clone()))
        .bind(column(rows, |e| e.detail.clone()))
        .bind(column(rows, |e| e.prev_hash.clone()))
        .bind(column(rows, |e| e.hash.clone()))
        .bind(column(rows, |e| e.body.clone()))
        .bind(column(tree, |(i, _)| i64::try_from(*i).unwrap_or(i64::MAX)))
        .bind(column(tree, |(_, h)| h.to_vec()))
        .bind(column(days, |((d, ..), _)| *d))
        .bind(column(days, |((_, k, ..), _)| (*k).to_owned()))
        .bind(column(days, |((_, _, a, ..), _)| (*a).to_owned()))
        .bind(column(days, |((_, _, _, a, _), _)| (*a).to_owned()))
        .bind(column(days, |((.., o), _)| (*o).to_owned()))
        .bind(column(days, |(_, n)| *n))
}

/// One field of each of `items`: a column, bound to PostgreSQL as an array.
fn column<I, T>(items: &[I], field: impl Fn(&I) -> T) -> Vec<T> {
    items.iter().map(field).collect()
}

/// What an audit batch starts from ([`Tx::start_audit_batch`]).
#[derive(Debug)]
pub struct BatchStart {
    /// The head's sequence number.
    pub seq: i64,
    /// The head's hash.
    pub head: Vec<u8>,
    /// The staged events taken from the outbox, in the order they were staged.
    pub staged: Vec<String>,
    /// The newest checkpoint's `(seq, at)` (inner `None`: there is none), if it was read.
    pub mark: Option<Option<(i64, i64)>>,
}

/// A UTC day in milliseconds: the unit of the per-day counts.
const DAY_MS: i64 = 86_400_000;

/// Filters for reading the trail. `None` means any.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub citizen_pseudonym: Option<String>,
    pub actor_kind: Option<String>,
    pub actor_id: Option<String>,
    pub officer_id: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only events with a sequence number below this (newest-first paging).
    pub before_seq: Option<i64>,
    /// As the citizen sees her trail at this time (ms): without the events of emergency
    /// grants whose disclosure is still delayed (SPEC §6).
    pub disclosed_at: Option<i64>,
}

impl Store {
    /// Creates the head row (sequence 0, the all-zero genesis hash) if it is missing.
    pub async fn ensure_audit_head(&self) -> Result<(), StoreError> {
        const SQL: &str =
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, $1) ON CONFLICT (id) DO NOTHING";
        on_engine!(self.pool(), p => {
            sqlx::query(SQL).bind(vec![0u8; 32]).execute(p).await?;
        });
        Ok(())
    }

    /// The head as last committed.
    pub async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
        const SQL: &str = "SELECT seq, hash FROM audit_head WHERE id = 1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, (i64, Vec<u8>)>(SQL).fetch_one(p).await?
        }))
    }

    /// Up to `limit` events after `seq`, in order (for verification and export).
    pub async fn audit_events_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(sql)).bind(seq).bind(limit).fetch_all(p).await?
        }))
    }

    /// Events after `seq` with their stored canonical bytes, in order, at most `limit`:
    /// what verification reads.
    pub async fn audit_events_with_bytes_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS}, body FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(sql)).bind(seq).bind(limit).fetch_all(p).await?
        }))
    }

    /// Events after `seq` (at most `limit`, in order), a page in three values built by the
    /// database — their sequence numbers, their bytes joined by `␞` (U+001E: canonical
    /// bytes never hold a raw control character), their hashes end to end — so ten thousand
    /// events cross from the database in one row, not ten thousand, and no event is
    /// assembled into a string of its own on the way. `None` past the end.
    ///
    /// With `check_columns`, the database also holds each event's stored columns to its
    /// bytes (it renders the columns as the canonical JSON they must be: PostgreSQL's
    /// `to_json` and SQLite's `json_object` escape exactly as RFC 8785 does) and names the
    /// first event of the page whose columns differ. Needed wherever columns are stored
    /// beside the bytes: always on PostgreSQL, and on SQLite only if `audit_events` is not
    /// the table that computes them (see [`Store::audit_columns_derived`]).
    pub async fn audit_bytes_page(
        &self,
        seq: i64,
        limit: i64,
        check_columns: bool,
    ) -> Result<Option<BytesPage>, StoreError> {
        // The page is cut in order; each aggregate keeps the rows as they come (no second
        // sort), so the three lists line up. SQLite's group_concat appends a blob's bytes
        // as they are (value and length), so the hashes need no hex on the way.
        let sqlite = format!(
            "SELECT group_concat(seq, ',') AS seqs, group_concat(COALESCE(body, ''), char(30)) AS bodies, \
            CAST(group_concat(hash, '') AS BLOB) AS hashes, {} AS differs_at \
            FROM (SELECT {} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
            if check_columns {
                format!("MIN(CASE WHEN body IS NOT NULL AND body IS NOT {SQLITE_JCS} THEN seq END)")
            } else {
                "NULL".to_owned()
            },
            if check_columns {
                "*"
            } else {
                "seq, body, hash"
            },
        );
        let postgres = format!(
            "SELECT string_agg(seq::text, ',') AS seqs, string_agg(COALESCE(body, ''), chr(30)) AS bodies, \
            string_agg(hash, ''::bytea) AS hashes, \
            MIN(CASE WHEN $3 AND body IS NOT NULL AND body <> {POSTGRES_JCS} THEN seq END) AS differs_at \
            FROM (SELECT * FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2) page"
        );
        let page = match self.pool() {
            super::OnEngine::Sqlite(p) => {
                sqlx::query_as::<_, BytesPageRow>(sqlx::AssertSqlSafe(sqlite))
                    .bind(seq)
                    .bind(limit)
                    .fetch_one(p)
                    .await?
            }
            super::OnEngine::Postgres(p) => {
                sqlx::query_as::<_, BytesPageRow>(sqlx::AssertSqlSafe(postgres))
                    .bind(seq)
                    .bind(limit)
                    .bind(check_columns)
                    .fetch_one(p)
                    .await?
            }
        };
        Ok(match page {
            BytesPageRow {
                seqs: Some(seqs),
                bodies: Some(bodies),
                hashes: Some(hashes),
                differs_at,
            } => Some(BytesPage {
                seqs,
                bodies,
                hashes,
                differs_at,
            }),
            _ => None,
        })
    }

    /// Whether the database computes every event column from the event's bytes, so that no
    /// column can differ from what the hashes cover: on SQLite, `audit_events` must be
    /// exactly the table migration 0007 created (its columns VIRTUAL, generated from
    /// `body`); a table redefined to store its columns — or to compute them otherwise — is
    /// not. PostgreSQL stores its columns: always `false`.
    pub async fn audit_columns_derived(&self) -> Result<bool, StoreError> {
        match self.pool() {
            super::OnEngine::Sqlite(p) => {
                let sql: Option<String> = sqlx::query_scalar(
                    "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'audit_events'",
                )
                .fetch_optional(p)
                .await?;
                Ok(sql.as_deref() == Some(sqlite_events_table()))
            }
            super::OnEngine::Postgres(_) => Ok(false),
        }
    }

    /// Number of events and the highest sequence number stored.
    pub async fn audit_extent(&self) -> Result<(i64, Option<i64>), StoreError> {
        const SQL: &str = "SELECT COUNT(*), MAX(seq) FROM audit_events";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, (i64, Option<i64>)>(SQL).fetch_one(p).await?
        }))
    }

    /// Every checkpoint, in order.
    pub async fn audit_checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        const SQL: &str = "SELECT seq, head_hash, at, key_id, signature, root_hash, note FROM audit_checkpoints ORDER BY seq";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, CheckpointRow>(SQL).fetch_all(p).await?
        }))
    }

    /// The latest checkpoint.
    pub async fn last_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        const SQL: &str = "SELECT seq, head_hash, at, key_id, signature, root_hash, note \
            FROM audit_checkpoints ORDER BY seq DESC LIMIT 1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_as::<_, CheckpointRow>(SQL).fetch_optional(p).await?
        }))
    }

    /// Events matching `filter`, newest first, at most `limit`.
    pub async fn audit_search(
        &self,
        filter: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let head = format!("SELECT {COLUMNS} FROM audit_events WHERE TRUE");
        Ok(on_engine!(self.pool(), p => {
            let mut qb = sqlx::QueryBuilder::new(head);
            push_filter!(qb, filter);
            if let Some(before) = filter.before_seq {
                qb.push(" AND seq < ").push_bind(before);
            }
            qb.push(" ORDER BY seq DESC LIMIT ").push_bind(limit);
            qb.build_query_as::<AuditRow>().fetch_all(p).await?
        }))
    }
}

impl Store {
    /// Events matching `filter` (and, with `reads_only`, only document reads), counted per
    /// actor and per UTC day (`at / 86 400 000`), in the database: a chart never reads the
    /// events themselves, however many there are. Paging (`before_seq`) is ignored.
    pub async fn audit_volume(
        &self,
        filter: &AuditFilter,
        reads_only: bool,
    ) -> Result<Vec<(Option<String>, i64, i64)>, StoreError> {
        // Whole days filtered by who, what and how only: the per-day counts answer without
        // touching the events (a 30-day chart over millions of them reads a few hundred
        // rows). A filter the counts do not keep (a citizen, an officer, a time within a
        // day) counts the events themselves, through the index that filter uses.
        let whole_days = filter.citizen_pseudonym.is_none()
            && filter.officer_id.is_none()
            && filter.disclosed_at.is_none()
            && filter.since_ms.is_none_or(|t| t % DAY_MS == 0)
            && filter.until_ms.is_none_or(|t| t % DAY_MS == 0);
        if whole_days {
            return Ok(on_engine!(self.pool(), p => {
                let mut qb = sqlx::QueryBuilder::new(
                    "SELECT NULLIF(actor_id, '') AS actor, day, CAST(SUM(n) AS BIGINT) AS n \
                     FROM audit_daily WHERE TRUE",
                );
                let text = [
                    (" AND actor_kind = ", &filter.actor_kind),
                    (" AND actor_id = ", &filter.actor_id),
                    (" AND action = ", &filter.action),
                    (" AND outcome = ", &filter.outcome),
                ];
                for (condition, value) in text {
                    if let Some(v) = value {
                        qb.push(condition).push_bind(v.clone());
                    }
                }
                if let Some(t) = filter.since_ms {
                    qb.push(" AND day >= ").push_bind(t / DAY_MS);
                }
                if let Some(t) = filter.until_ms {
                    qb.push(" AND day < ").push_bind(t / DAY_MS);
                }
                if reads_only {
                    qb.push(" AND action IN ('document.read', 'document.file')");
                }
                qb.push(" GROUP BY actor_id, day ORDER BY day");
                qb.build_query_as::<(Option<String>, i64, i64)>().fetch_all(p).await?
            }));
        }
        Ok(on_engine!(self.pool(), p => {
            let mut qb = sqlx::QueryBuilder::new(
                "SELECT actor_id, at / 86400000 AS day, COUNT(*) AS n FROM audit_events WHERE TRUE",
            );
            push_filter!(qb, filter);
            if reads_only {
                qb.push(" AND action IN ('document.read', 'document.file')");
            }
            qb.push(" GROUP BY actor_id, day ORDER BY day");
            qb.build_query_as::<(Option<String>, i64, i64)>().fetch_all(p).await?
        }))
    }
}

/// What the console's flags are made of, counted in the database over the events since a
/// moment (see `auditors::flags` for the rules and their thresholds).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlagCounts {
    /// `(agency, officer, hour since the epoch, distinct citizens read)` for every officer
    /// hour at or above the threshold.
    pub many_citizens: Vec<(Option<String>, Option<String>, i64, i64)>,
    /// `(agency, officer, reads)` for reads between 22:00 and 06:00 UTC+8.
    pub night_reads: Vec<(Option<String>, Option<String>, i64)>,
    /// `(agency, refusals)` for agencies with a burst of refusals.
    pub refusal_bursts: Vec<(Option<String>, i64)>,
}

/// Successful agency reads: the events the read flags look at.
const AGENCY_READS: &str =
    "actor_kind = 'agency' AND action IN ('document.read', 'document.file') AND outcome = 'ok'";

impl Store {
    /// Counts the console's patterns in the database, over every event since `since_ms`:
    /// officers reading at least `many` distinct citizens within one clock hour, reads at
    /// night in UTC+8, and agencies with `burst` refusals within any ten minutes (found
    /// with a window function: the refusal `burst - 1` before each one).
    pub async fn audit_flag_counts(
        &self,
        since_ms: i64,
        many: i64,
        burst: u32,
    ) -> Result<FlagCounts, StoreError> {
        let many_sql = format!(
            "SELECT actor_id, officer_id, at / 3600000 AS hour, COUNT(DISTINCT citizen_pseudonym) AS n \
             FROM audit_events WHERE {AGENCY_READS} AND at >= $1 \
             GROUP BY actor_id, officer_id, hour HAVING COUNT(DISTINCT citizen_pseudonym) >= $2 \
             ORDER BY hour, actor_id, officer_id"
        );
        let night_sql = format!(
            "SELECT actor_id, officer_id, COUNT(*) AS n FROM audit_events \
             WHERE {AGENCY_READS} AND at >= $1 AND ((at / 3600000) + 8) % 24 NOT BETWEEN 6 AND 21 \
             GROUP BY actor_id, officer_id ORDER BY actor_id, officer_id"
        );
        // The offset is a constant of the code, not input: formatted, not bound, because
        // LAG's offset must be a literal on some engines.
        let lag = burst.saturating_sub(1).max(1);
        let burst_sql = format!(
            "SELECT actor_id, COUNT(*) AS n FROM ( \
               SELECT actor_id, at, LAG(at, {lag}) OVER (PARTITION BY actor_id ORDER BY at, seq) AS earlier \
               FROM audit_events WHERE actor_kind = 'agency' AND outcome = 'refused' AND at >= $1 \
             ) AS refusals GROUP BY actor_id \
             HAVING MAX(CASE WHEN earlier IS NOT NULL AND at - earlier <= 600000 THEN 1 ELSE 0 END) = 1 \
             ORDER BY actor_id"
        );
        Ok(on_engine!(self.pool(), p => {
            FlagCounts {
                many_citizens: sqlx::query_as(sqlx::AssertSqlSafe(many_sql))
                    .bind(since_ms)
                    .bind(many)
                    .fetch_all(p)
                    .await?,
                night_reads: sqlx::query_as(sqlx::AssertSqlSafe(night_sql))
                    .bind(since_ms)
                    .fetch_all(p)
                    .await?,
                refusal_bursts: sqlx::query_as(sqlx::AssertSqlSafe(burst_sql))
                    .bind(since_ms)
                    .fetch_all(p)
                    .await?,
            }
        }))
    }
}

impl Store {
    /// The sequence number of a grant's creation event.
    pub async fn grant_created_seq(&self, grant: GrantId) -> Result<Option<i64>, StoreError> {
        const SQL: &str = "SELECT seq FROM audit_events WHERE grant_id = $1 AND action IN ('grant.create', 'emergency.access') \
            ORDER BY seq LIMIT 1";
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, i64>(SQL).bind(grant).fetch_optional(p).await?
        }))
    }
}

impl Store {
    /// Successful agency reads of this citizen's documents after `seq`.
    pub async fn count_reads_after(
        &self,
        pseudonym: &str,
        seq: i64,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        // Reads under an emergency grant whose disclosure is delayed are not counted yet:
        // the same condition the trail's filter applies.
        let sql = format!(
            "SELECT COUNT(*) FROM audit_events WHERE citizen_pseudonym = $1 AND seq > $2 \
             AND actor_kind = 'agency' AND outcome = 'ok' AND action IN ('document.read', 'document.file') \
             {UNDISCLOSED}$3))"
        );
        Ok(on_engine!(self.pool(), p => {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).bind(pseudonym).bind(seq).bind(now_ms).fetch_one(p).await?
        }))
    }

    /// Records how far a citizen has looked at their trail.
    pub async fn set_activity_seen(&self, citizen: CitizenId, seq: i64) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE citizens SET activity_seen_seq = $1 WHERE id = $2 AND activity_seen_seq < $3";
        on_engine!(self.pool(), p => {
            sqlx::query(SQL).bind(seq).bind(citizen).bind(seq).execute(p).await?;
        });
        Ok(())
    }
}

impl Tx {
    /// Stages an event (the JSON of `audit::Staged`) in this change's transaction.
    pub async fn stage_audit_event(&mut self, event: &str, now: i64) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO audit_outbox (event, created_at) VALUES ($1, $2)";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(event).bind(now).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Takes (deletes) up to `limit` staged events, oldest first. Called under the audit
    /// head's lock, so one sequencer at a time, on any node, takes each event once. One
    /// statement selects and deletes, so a row that commits meanwhile is either taken
    /// here or left for the next batch, never deleted unread.
    pub async fn take_audit_outbox(&mut self, limit: usize) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "DELETE FROM audit_outbox WHERE id IN \
            (SELECT id FROM audit_outbox ORDER BY id LIMIT $1) RETURNING id, event";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows: Vec<(i64, String)> = on_engine!(self, c => {
            sqlx::query_as::<_, (i64, String)>(SQL).bind(limit).fetch_all(&mut **c).await?
        });
        rows.sort_by_key(|(id, _)| *id);
        Ok(rows.into_iter().map(|(_, e)| e).collect())
    }

    /// Reads the head and holds it for this transaction.
    pub async fn lock_audit_head(&mut self) -> Result<(i64, Vec<u8>), StoreError> {
        Ok(match self {
            super::OnEngine::Sqlite(c) => {
                sqlx::query_as::<_, (i64, Vec<u8>)>("SELECT seq, hash FROM audit_head WHERE id = 1")
                    .fetch_one(&mut **c)
                    .await?
            }
            super::OnEngine::Postgres(c) => {
                sqlx::query_as::<_, (i64, Vec<u8>)>(
                    "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
                )
                .fetch_one(&mut **c)
                .await?
            }
        })
    }

    /// The start of an audit batch in a [`Store::begin_audit`] transaction: the head, the
    /// staged events taken ([`Tx::take_audit_outbox`]) and, when `mark_needed` says so for
    /// that head, the newest checkpoint's `(seq, at)`. On PostgreSQL one statement (the
    /// head's lock is already held, so its snapshot sees every batch committed before);
    /// on SQLite plain statements under the write lock.
    pub async fn start_audit_batch(
        &mut self,
        limit: usize,
        mark_needed: impl FnOnce(i64, &[u8]) -> bool,
    ) -> Result<BatchStart, StoreError> {
        let super::OnEngine::Postgres(c) = self else {
            let (seq, head) = self.lock_audit_head().await?;
            let staged = self.take_audit_outbox(limit).await?;
            let mark = if mark_needed(seq, &head) {
                Some(self.last_checkpoint_mark().await?)
            } else {
                None
            };
            return Ok(BatchStart {
                seq,
                head,
                staged,
                mark,
            });
        };
        const SQL: &str = "WITH taken AS (DELETE FROM audit_outbox WHERE id IN \
            (SELECT id FROM audit_outbox ORDER BY id LIMIT $1) RETURNING id, event) \
            SELECT id, event, NULL::BIGINT, NULL::BIGINT, NULL::BYTEA FROM taken \
            UNION ALL SELECT NULL, NULL, seq, at, NULL FROM \
            (SELECT seq, at FROM audit_checkpoints ORDER BY seq DESC LIMIT 1) AS newest \
            UNION ALL SELECT NULL, NULL, seq, NULL, hash FROM audit_head WHERE id = 1";
        type Row = (
            Option<i64>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<Vec<u8>>,
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<Row> = sqlx::query_as(SQL).bind(limit).fetch_all(&mut **c).await?;
        let mut staged = Vec::new();
        let mut mark = None;
        let mut head = None;
        for row in rows {
            match row {
                (Some(id), Some(event), _, _, _) => staged.push((id, event)),
                (_, _, Some(seq), Some(at), None) => mark = Some((seq, at)),
                (_, _, Some(seq), None, Some(hash)) => head = Some((seq, hash)),
                _ => {}
            }
        }
        let (seq, head) = head.ok_or(StoreError::NotFound)?;
        staged.sort_by_key(|(id, _)| *id);
        Ok(BatchStart {
            seq,
            head,
            staged: staged.into_iter().map(|(_, e)| e).collect(),
            mark: Some(mark),
        })
    }

    /// Writes a batch: its events, the tree hashes they add, the per-day counts, and the
    /// new head (sequence, hash, tree size). On PostgreSQL one statement of constant text
    /// ([`POSTGRES_BATCH_WRITE`]: data-modifying `WITH` parts reading arrays, and the
    /// head's update), prepared once: under load each statement of the batch is a round
    /// trip the whole batch waits for. On SQLite the parts are statements of one query, run
    /// by the driver's thread in one hand-off.
    pub async fn write_audit_batch(
        &mut self,
        rows: &[AuditRow],
        tree: &[(u64, [u8; 32])],
        seq: i64,
        head: &[u8],
    ) -> Result<(), StoreError> {
        let c = match self {
            super::OnEngine::Postgres(c) => c,
            super::OnEngine::Sqlite(c) => {
                return write_sqlite_batch(c, rows, tree, seq, head).await;
            }
        };
        let days = day_counts(rows);
        let q = sqlx::query(POSTGRES_BATCH_WRITE.as_str());
        let q = bind_postgres_write_parts(q, rows, tree, &days);
        q.bind(seq).bind(head).execute(&mut **c).await?;
        Ok(())
    }

    /// Moves the head.
    pub async fn set_audit_head(&mut self, seq: i64, hash: &[u8]) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1";
        on_engine!(self, c => {
            sqlx::query(SQL).bind(seq).bind(hash).execute(&mut **c).await?;
        });
        Ok(())
    }

    /// Appends one event.
    pub async fn insert_audit_event(&mut self, e: &AuditRow) -> Result<(), StoreError> {
        self.insert_audit_events(std::slice::from_ref(e)).await
    }

    /// Appends events in multi-row statements (a batch of 512 is 16 statements, not 512:
    /// on SQLite each statement is a hand-off to the driver's thread). Placeholders are
    /// plain `?` on SQLite, which binds them by position without looking names up. SQLite
    /// stores only the bytes and the hashes (every column is computed from the bytes);
    /// PostgreSQL stores the columns beside them.
    pub async fn insert_audit_events(&mut self, rows: &[AuditRow]) -> Result<(), StoreError> {
        const PER_STATEMENT: usize = 32;
        for chunk in rows.chunks(PER_STATEMENT) {
            match self {
                super::OnEngine::Sqlite(c) => {
                    let sql = format!(
                        "{SQLITE_EVENTS_INSERT}{}",
                        super::placeholders(true, chunk.len(), 4)
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for e in chunk {
                        q = q.bind(e.seq).bind(&e.body).bind(&e.prev_hash).bind(&e.hash);
                    }
                    q.execute(&mut **c).await?;
                }
                super::OnEngine::Postgres(c) => {
                    let sql = format!(
                        "INSERT INTO audit_events ({COLUMNS}, body) VALUES {}",
                        super::placeholders(false, chunk.len(), 20)
                    );
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for e in chunk {
                        q = bind_event!(q, e);
                    }
                    q.execute(&mut **c).await?;
                }
            }
        }
        self.count_audit_days(rows).await
    }

    /// Adds `rows` to the per-day counts the charts read (`audit_daily`), in the
    /// transaction that appends them: one upsert per batch, whatever the trail's length.
    async fn count_audit_days(&mut self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let days = day_counts(rows);
        for chunk in days.chunks(64) {
            let sqlite = matches!(self, super::OnEngine::Sqlite(_));
            let sql = days_upsert(&super::placeholders(sqlite, chunk.len(), 6));
            on_engine!(self, c => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for day in chunk {
                    q = bind_day!(q, day);
                }
                q.execute(&mut **c).await?;
            });
        }
        Ok(())
    }

    /// Stores a checkpoint.
    pub async fn insert_checkpoint(&mut self, c: &CheckpointRow) -> Result<(), StoreError> {
        let sql =
            format!("{CHECKPOINT_INSERT}($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (seq) DO NOTHING");
        on_engine!(self, t => {
            bind_checkpoint!(sqlx::query(sqlx::AssertSqlSafe(sql)), c).execute(&mut **t).await?;
        });
        Ok(())
    }

    /// The latest checkpoint's sequence number and time, read inside the batch.
    pub async fn last_checkpoint_mark(&mut self) -> Result<Option<(i64, i64)>, StoreError> {
        const SQL: &str = "SELECT seq, at FROM audit_checkpoints ORDER BY seq DESC LIMIT 1";
        Ok(on_engine!(self, c => {
            sqlx::query_as::<_, (i64, i64)>(SQL).fetch_optional(&mut **c).await?
        }))
    }

    /// Counts `n` reads against an active grant inside its window, atomically with their
    /// audit records, if all `n` fit under its `max_reads` and what the reads were
    /// prepared from still holds ([`claim_conditions`]). Returns `(reads, max_reads)` after
    /// counting, or `None` when nothing was counted: the grant is not live (revoked,
    /// expired, exhausted, not yet valid), has fewer than `n` reads left, or the cover no
    /// longer holds (see [`super::reads::ReadCover`]).
    pub async fn claim_grant_reads(
        &mut self,
        grant: GrantId,
        n: i32,
        now_ms: i64,
        cover: &super::reads::ReadCover,
    ) -> Result<Option<(i32, Option<i32>)>, StoreError> {
        let sql = format!(
            "UPDATE grants SET reads = reads + $1 WHERE id = $2 AND {} RETURNING reads, max_reads",
            claim_conditions(&ClaimTerms::numbered(3), LastRead::MayTake)
        );
        Ok(on_engine!(self, c => {
            let q = sqlx::query_as::<_, (i32, Option<i32>)>(sqlx::AssertSqlSafe(sql))
                .bind(n)
                .bind(grant);
            bind_claim_terms!(q, n, now_ms, cover).fetch_optional(&mut **c).await?
        }))
    }
}
