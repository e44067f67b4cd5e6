-- Events staged by a change in its own transaction, so the change and its record commit
-- together; the audit sequencer chains them in commit order and deletes them in the same
-- transaction as the chain rows it writes.
CREATE TABLE audit_outbox (
    id          BIGSERIAL PRIMARY KEY,
    event       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Idempotency-Key of agency POSTs: the first answer, replayed to a retry.
CREATE TABLE idempotency_keys (
    agency_id     UUID NOT NULL REFERENCES agencies(id),
    key           TEXT NOT NULL,
    request_hash  BYTEA NOT NULL,
    status        INTEGER,
    body          TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (agency_id, key)
);
