-- Custodia schema, SQLite. Mirrors migrations/postgres/0001_init.sql table for table.
-- Conventions: ids are UUIDs (16-byte BLOBs); times are INTEGER milliseconds since the Unix epoch (UTC);
-- ciphertext is BLOB; JSON lists are TEXT holding JSON. No personal value is stored in
-- clear: national IDs appear only as blind indexes, everything else personal is sealed.

-- Random service keys (grant wrapping, blind index), wrapped under the master key.
CREATE TABLE service_keys (
    name            TEXT PRIMARY KEY,
    wrapped         BLOB NOT NULL,
    master_key_id   TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);

-- Public halves of every service signing key ever used, so old checkpoints and
-- receipts stay verifiable after a rotation.
CREATE TABLE signing_keys (
    key_id          TEXT PRIMARY KEY,
    public_key      BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    retired_at      INTEGER
);

CREATE TABLE citizens (
    id                      BLOB PRIMARY KEY,
    national_id_index       BLOB NOT NULL UNIQUE,
    pseudonym               TEXT NOT NULL UNIQUE,
    display_name_enc        BLOB NOT NULL,
    public_key              BLOB NOT NULL,
    secret_key_enc          BLOB NOT NULL,
    passphrase_kdf          TEXT NOT NULL,
    vault_key_passphrase    BLOB NOT NULL,
    recovery_salt           BLOB NOT NULL,
    vault_key_recovery      BLOB NOT NULL,
    created_at              INTEGER NOT NULL,
    disabled_at             INTEGER
);

CREATE TABLE auditors (
    id              BLOB PRIMARY KEY,
    name            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    disabled_at     INTEGER
);

CREATE TABLE auditor_invites (
    id              BLOB PRIMARY KEY,
    token_hash      BLOB NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    used_at         INTEGER,
    auditor_id      BLOB REFERENCES auditors(id)
);

-- Passkeys of citizens and auditors: exactly one owner each.
CREATE TABLE credentials (
    id              BLOB PRIMARY KEY,
    citizen_id      BLOB REFERENCES citizens(id) ON DELETE CASCADE,
    auditor_id      BLOB REFERENCES auditors(id) ON DELETE CASCADE,
    credential_id   BLOB NOT NULL UNIQUE,
    passkey         TEXT NOT NULL,
    label           TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    CHECK ((citizen_id IS NULL) <> (auditor_id IS NULL))
);
CREATE INDEX credentials_citizen ON credentials(citizen_id);
CREATE INDEX credentials_auditor ON credentials(auditor_id);

-- WebAuthn ceremony state between start and finish: single-use, short-lived.
CREATE TABLE ceremonies (
    id              BLOB PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    subject         BLOB,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL
);
CREATE INDEX ceremonies_expiry ON ceremonies(expires_at);

-- Sessions live here so any node can serve them. The id is stored hashed; the vault
-- key is wrapped under a secret that only the cookie holds.
CREATE TABLE sessions (
    id_hash         BLOB PRIMARY KEY,
    citizen_id      BLOB REFERENCES citizens(id) ON DELETE CASCADE,
    auditor_id      BLOB REFERENCES auditors(id) ON DELETE CASCADE,
    csrf_hash       BLOB NOT NULL,
    vault_key_wrap  BLOB,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    CHECK ((citizen_id IS NULL) <> (auditor_id IS NULL))
);
CREATE INDEX sessions_citizen ON sessions(citizen_id);
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- Fixed-window counters for security rate limits, shared by every node.
CREATE TABLE rate_limits (
    bucket          TEXT PRIMARY KEY,
    window_start    INTEGER NOT NULL,
    hits            INTEGER NOT NULL
);

CREATE TABLE agencies (
    id                  BLOB PRIMARY KEY,
    name                TEXT NOT NULL,
    level               TEXT NOT NULL CHECK (level IN ('national', 'provincial', 'municipal', 'county')),
    is_consumer         INTEGER NOT NULL,
    is_issuer           INTEGER NOT NULL,
    issuer_public_key   BLOB,
    created_at          INTEGER NOT NULL,
    disabled_at         INTEGER
);

CREATE TABLE agency_keys (
    id              BLOB PRIMARY KEY,
    agency_id       BLOB NOT NULL REFERENCES agencies(id),
    prefix          TEXT NOT NULL,
    key_hash        BLOB NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER
);
CREATE INDEX agency_keys_agency ON agency_keys(agency_id);

CREATE TABLE documents (
    id                  BLOB PRIMARY KEY,
    citizen_id          BLOB NOT NULL REFERENCES citizens(id),
    doc_type            TEXT NOT NULL,
    current_version     INTEGER NOT NULL,
    issuer_agency_id    BLOB REFERENCES agencies(id),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    deleted_at          INTEGER
);
CREATE INDEX documents_citizen ON documents(citizen_id, doc_type);

-- One row per version. `meta_enc` seals fields, dates, content digest and issuer
-- signature under the version's data key; `data_key_wrap` is that key under the vault
-- key, or NULL while an issuer deposit waits sealed (HPKE) in `sealed_deposit`.
CREATE TABLE document_versions (
    document_id     BLOB NOT NULL REFERENCES documents(id),
    version         INTEGER NOT NULL,
    data_key_wrap   BLOB,
    sealed_deposit  BLOB,
    meta_enc        BLOB,
    blob_name       TEXT,
    blob_size       INTEGER,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (document_id, version)
);

-- Blobs being written: registered before the first byte so an interrupted upload is
-- always found and removed by the sweeper (SPEC G7).
CREATE TABLE pending_blobs (
    blob_name       TEXT PRIMARY KEY,
    started_at      INTEGER NOT NULL
);

CREATE TABLE access_requests (
    id                  BLOB PRIMARY KEY,
    agency_id           BLOB NOT NULL REFERENCES agencies(id),
    citizen_id          BLOB REFERENCES citizens(id),
    document_types      TEXT NOT NULL,
    tier                TEXT NOT NULL CHECK (tier IN ('verify', 'fields', 'full')),
    fields              TEXT NOT NULL,
    purpose_code        TEXT NOT NULL,
    purpose             TEXT NOT NULL,
    legal_basis         TEXT,
    officer_id          TEXT,
    case_id             TEXT,
    duration_days       INTEGER NOT NULL,
    retention_days      INTEGER NOT NULL,
    status              TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    decided_at          INTEGER,
    grant_id            BLOB
);
CREATE INDEX access_requests_citizen ON access_requests(citizen_id, status);
CREATE INDEX access_requests_agency ON access_requests(agency_id);

CREATE TABLE grants (
    id                  BLOB PRIMARY KEY,
    citizen_id          BLOB NOT NULL REFERENCES citizens(id),
    agency_id           BLOB NOT NULL REFERENCES agencies(id),
    request_id          BLOB REFERENCES access_requests(id),
    document_ids        TEXT NOT NULL,
    document_types      TEXT NOT NULL,
    tier                TEXT NOT NULL CHECK (tier IN ('verify', 'fields', 'full')),
    fields              TEXT NOT NULL,
    purpose_code        TEXT,
    purpose             TEXT NOT NULL,
    legal_basis         TEXT,
    valid_from          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    max_reads           INTEGER,
    reads               INTEGER NOT NULL DEFAULT 0,
    retention_days      INTEGER NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('active', 'revoked', 'expired', 'exhausted')),
    status_changed_at   INTEGER NOT NULL,
    grant_key_wrap      BLOB,
    receipt             TEXT NOT NULL,
    receipt_signature   BLOB NOT NULL,
    created_at          INTEGER NOT NULL
);
CREATE INDEX grants_citizen ON grants(citizen_id, status);
CREATE INDEX grants_agency ON grants(agency_id, status);
CREATE INDEX grants_expiry ON grants(status, expires_at);

-- Data keys re-wrapped under a grant's key. Deleted with the grant's end.
CREATE TABLE grant_key_wraps (
    grant_id        BLOB NOT NULL REFERENCES grants(id),
    document_id     BLOB NOT NULL REFERENCES documents(id),
    version         INTEGER NOT NULL,
    wrapped_key     BLOB NOT NULL,
    PRIMARY KEY (grant_id, document_id, version)
);

-- The audit trail: one hash chain, appended in batches under the head row's lock.
CREATE TABLE audit_head (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    seq             INTEGER NOT NULL,
    hash            BLOB NOT NULL
);

CREATE TABLE audit_events (
    seq                 INTEGER PRIMARY KEY,
    at                  INTEGER NOT NULL,
    actor_kind          TEXT NOT NULL,
    actor_id            TEXT,
    officer_id          TEXT,
    case_id             TEXT,
    citizen_pseudonym   TEXT,
    action              TEXT NOT NULL,
    object_ids          TEXT NOT NULL,
    grant_id            BLOB,
    purpose             TEXT,
    tier                TEXT,
    fields              TEXT,
    outcome             TEXT NOT NULL,
    bytes_sent          INTEGER,
    request_id          TEXT,
    detail              TEXT,
    prev_hash           BLOB NOT NULL,
    hash                BLOB NOT NULL
);
CREATE INDEX audit_events_citizen ON audit_events(citizen_pseudonym, seq);
CREATE INDEX audit_events_actor ON audit_events(actor_kind, actor_id, seq);
CREATE INDEX audit_events_at ON audit_events(at);

CREATE TABLE audit_checkpoints (
    seq             INTEGER PRIMARY KEY,
    head_hash       BLOB NOT NULL,
    at              INTEGER NOT NULL,
    key_id          TEXT NOT NULL,
    signature       BLOB NOT NULL
);
