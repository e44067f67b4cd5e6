-- Custodia schema, PostgreSQL. Mirrors migrations/sqlite/0001_init.sql table for table.
-- Conventions: ids are UUIDs; times are BIGINT milliseconds since the Unix epoch (UTC);
-- ciphertext is BYTEA; JSON lists are TEXT holding JSON. No personal value is stored in
-- clear: national IDs appear only as blind indexes, everything else personal is sealed.

-- Random service keys (grant wrapping, blind index), wrapped under the master key.
CREATE TABLE service_keys (
    name            TEXT PRIMARY KEY,
    wrapped         BYTEA NOT NULL,
    master_key_id   TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

-- Public halves of every service signing key ever used, so old checkpoints and
-- receipts stay verifiable after a rotation.
CREATE TABLE signing_keys (
    key_id          TEXT PRIMARY KEY,
    public_key      BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT
);

CREATE TABLE citizens (
    id                      UUID PRIMARY KEY,
    national_id_index       BYTEA NOT NULL UNIQUE,
    pseudonym               TEXT NOT NULL UNIQUE,
    display_name_enc        BYTEA NOT NULL,
    public_key              BYTEA NOT NULL,
    secret_key_enc          BYTEA NOT NULL,
    passphrase_kdf          TEXT NOT NULL,
    vault_key_passphrase    BYTEA NOT NULL,
    recovery_salt           BYTEA NOT NULL,
    vault_key_recovery      BYTEA NOT NULL,
    created_at              BIGINT NOT NULL,
    disabled_at             BIGINT
);

CREATE TABLE auditors (
    id              UUID PRIMARY KEY,
    name            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    disabled_at     BIGINT
);

CREATE TABLE auditor_invites (
    id              UUID PRIMARY KEY,
    token_hash      BYTEA NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT,
    auditor_id      UUID REFERENCES auditors(id)
);

-- Passkeys of citizens and auditors: exactly one owner each.
CREATE TABLE credentials (
    id              UUID PRIMARY KEY,
    citizen_id      UUID REFERENCES citizens(id) ON DELETE CASCADE,
    auditor_id      UUID REFERENCES auditors(id) ON DELETE CASCADE,
    credential_id   BYTEA NOT NULL UNIQUE,
    passkey         TEXT NOT NULL,
    label           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_used_at    BIGINT,
    CHECK ((citizen_id IS NULL) <> (auditor_id IS NULL))
);
CREATE INDEX credentials_citizen ON credentials(citizen_id);
CREATE INDEX credentials_auditor ON credentials(auditor_id);

-- WebAuthn ceremony state between start and finish: single-use, short-lived.
CREATE TABLE ceremonies (
    id              UUID PRIMARY KEY,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    subject         BYTEA,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX ceremonies_expiry ON ceremonies(expires_at);

-- Sessions live here so any node can serve them. The id is stored hashed; the vault
-- key is wrapped under a secret that only the cookie holds.
CREATE TABLE sessions (
    id_hash         BYTEA PRIMARY KEY,
    citizen_id      UUID REFERENCES citizens(id) ON DELETE CASCADE,
    auditor_id      UUID REFERENCES auditors(id) ON DELETE CASCADE,
    csrf_hash       BYTEA NOT NULL,
    vault_key_wrap  BYTEA,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    CHECK ((citizen_id IS NULL) <> (auditor_id IS NULL))
);
CREATE INDEX sessions_citizen ON sessions(citizen_id);
CREATE INDEX sessions_expiry ON sessions(expires_at);

-- Fixed-window counters for security rate limits, shared by every node.
CREATE TABLE rate_limits (
    bucket          TEXT PRIMARY KEY,
    window_start    BIGINT NOT NULL,
    hits            BIGINT NOT NULL
);

CREATE TABLE agencies (
    id                  UUID PRIMARY KEY,
    name                TEXT NOT NULL,
    level               TEXT NOT NULL CHECK (level IN ('national', 'provincial', 'municipal', 'county')),
    is_consumer         BOOLEAN NOT NULL,
    is_issuer           BOOLEAN NOT NULL,
    issuer_public_key   BYTEA,
    created_at          BIGINT NOT NULL,
    disabled_at         BIGINT
);

CREATE TABLE agency_keys (
    id              UUID PRIMARY KEY,
    agency_id       UUID NOT NULL REFERENCES agencies(id),
    prefix          TEXT NOT NULL,
    key_hash        BYTEA NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT
);
CREATE INDEX agency_keys_agency ON agency_keys(agency_id);

CREATE TABLE documents (
    id                  UUID PRIMARY KEY,
    citizen_id          UUID NOT NULL REFERENCES citizens(id),
    doc_type            TEXT NOT NULL,
    current_version     INTEGER NOT NULL,
    issuer_agency_id    UUID REFERENCES agencies(id),
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    deleted_at          BIGINT
);
CREATE INDEX documents_citizen ON documents(citizen_id, doc_type);

-- One row per version. `meta_enc` seals fields, dates, content digest and issuer
-- signature under the version's data key; `data_key_wrap` is that key under the vault
-- key, or NULL while an issuer deposit waits sealed (HPKE) in `sealed_deposit`.
CREATE TABLE document_versions (
    document_id     UUID NOT NULL REFERENCES documents(id),
    version         INTEGER NOT NULL,
    data_key_wrap   BYTEA,
    sealed_deposit  BYTEA,
    meta_enc        BYTEA,
    blob_name       TEXT,
    blob_size       BIGINT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (document_id, version)
);

-- Blobs being written: registered before the first byte so an interrupted upload is
-- always found and removed by the sweeper (SPEC G7).
CREATE TABLE pending_blobs (
    blob_name       TEXT PRIMARY KEY,
    started_at      BIGINT NOT NULL
);

CREATE TABLE access_requests (
    id                  UUID PRIMARY KEY,
    agency_id           UUID NOT NULL REFERENCES agencies(id),
    citizen_id          UUID REFERENCES citizens(id),
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
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    decided_at          BIGINT,
    grant_id            UUID
);
CREATE INDEX access_requests_citizen ON access_requests(citizen_id, status);
CREATE INDEX access_requests_agency ON access_requests(agency_id);

CREATE TABLE grants (
    id                  UUID PRIMARY KEY,
    citizen_id          UUID NOT NULL REFERENCES citizens(id),
    agency_id           UUID NOT NULL REFERENCES agencies(id),
    request_id          UUID REFERENCES access_requests(id),
    document_ids        TEXT NOT NULL,
    document_types      TEXT NOT NULL,
    tier                TEXT NOT NULL CHECK (tier IN ('verify', 'fields', 'full')),
    fields              TEXT NOT NULL,
    purpose_code        TEXT,
    purpose             TEXT NOT NULL,
    legal_basis         TEXT,
    valid_from          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    max_reads           INTEGER,
    reads               INTEGER NOT NULL DEFAULT 0,
    retention_days      INTEGER NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('active', 'revoked', 'expired', 'exhausted')),
    status_changed_at   BIGINT NOT NULL,
    grant_key_wrap      BYTEA,
    receipt             TEXT NOT NULL,
    receipt_signature   BYTEA NOT NULL,
    created_at          BIGINT NOT NULL
);
CREATE INDEX grants_citizen ON grants(citizen_id, status);
CREATE INDEX grants_agency ON grants(agency_id, status);
CREATE INDEX grants_expiry ON grants(status, expires_at);

-- Data keys re-wrapped under a grant's key. Deleted with the grant's end.
CREATE TABLE grant_key_wraps (
    grant_id        UUID NOT NULL REFERENCES grants(id),
    document_id     UUID NOT NULL REFERENCES documents(id),
    version         INTEGER NOT NULL,
    wrapped_key     BYTEA NOT NULL,
    PRIMARY KEY (grant_id, document_id, version)
);

-- The audit trail: one hash chain, appended in batches under the head row's lock.
CREATE TABLE audit_head (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    seq             BIGINT NOT NULL,
    hash            BYTEA NOT NULL
);

CREATE TABLE audit_events (
    seq                 BIGINT PRIMARY KEY,
    at                  BIGINT NOT NULL,
    actor_kind          TEXT NOT NULL,
    actor_id            TEXT,
    officer_id          TEXT,
    case_id             TEXT,
    citizen_pseudonym   TEXT,
    action              TEXT NOT NULL,
    object_ids          TEXT NOT NULL,
    grant_id            UUID,
    purpose             TEXT,
    tier                TEXT,
    fields              TEXT,
    outcome             TEXT NOT NULL,
    bytes_sent          BIGINT,
    request_id          TEXT,
    detail              TEXT,
    prev_hash           BYTEA NOT NULL,
    hash                BYTEA NOT NULL
);
CREATE INDEX audit_events_citizen ON audit_events(citizen_pseudonym, seq);
CREATE INDEX audit_events_actor ON audit_events(actor_kind, actor_id, seq);
CREATE INDEX audit_events_at ON audit_events(at);

CREATE TABLE audit_checkpoints (
    seq             BIGINT PRIMARY KEY,
    head_hash       BYTEA NOT NULL,
    at              BIGINT NOT NULL,
    key_id          TEXT NOT NULL,
    signature       BYTEA NOT NULL
);
