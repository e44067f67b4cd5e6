-- Agencies hear back (SPEC §6): signed webhooks, and acknowledgements of a grant's end and
-- of the deletion of what was read under it.
--
-- An event (`request.decided`, `grant.revoked`, `grant.expired`, `grant.exhausted`,
-- `retention.due`) is queued as one delivery per live endpoint of the agency, in the
-- transaction of the change it reports, so none is lost and none is sent for a change that
-- rolled back. Any node delivers: a node claims due deliveries for a lease
-- (`claimed_until`), so no two send the same one at once; a failed one waits
-- (`next_attempt_at`, doubling) and after the last try is dead — listed for the agency to
-- replay. Payloads hold ids, never personal data.
CREATE TABLE webhooks (
    id          UUID PRIMARY KEY,
    agency_id   UUID NOT NULL REFERENCES agencies(id),
    url         TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    disabled_at BIGINT
);
CREATE INDEX webhooks_agency ON webhooks(agency_id);

CREATE TABLE webhook_deliveries (
    id              UUID PRIMARY KEY,
    webhook_id      UUID NOT NULL REFERENCES webhooks(id),
    agency_id       UUID NOT NULL REFERENCES agencies(id),
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_agency ON webhook_deliveries(agency_id, created_at);

-- The agency's acknowledgements: it stopped using an ended grant; it deleted every copy
-- of what it read once the retention it promised ran out (when, and its statement).
ALTER TABLE grants ADD COLUMN revocation_ack_at BIGINT;
ALTER TABLE grants ADD COLUMN retention_ack_at BIGINT;
ALTER TABLE grants ADD COLUMN retention_deleted_at BIGINT;
ALTER TABLE grants ADD COLUMN retention_statement TEXT;
-- When `retention.due` was queued (once per grant).
ALTER TABLE grants ADD COLUMN retention_notified_at BIGINT;
CREATE INDEX grants_retention_pending ON grants(status_changed_at)
    WHERE retention_notified_at IS NULL AND status <> 'active';
