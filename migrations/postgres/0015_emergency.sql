-- Break-glass (SPEC §6): emergency reads the citizen allowed in advance, each reviewed by an
-- auditor and disclosed to her.
--
-- A citizen chooses which document types may be read in an emergency
-- (`citizen_emergency_types`). The current data key of each of her documents of those types
-- is then also wrapped under the `emergency-wrap` service key (`emergency_key_wraps`): the
-- only keys the operator side can open without a live grant. Removing a type deletes its
-- wraps and ends every live emergency grant on her documents, in one transaction.
--
-- An emergency grant is an ordinary grant (`grants.emergency`), keyed from those wraps when
-- an emergency agency breaks the glass; `emergency_accesses` keeps why, who, when the
-- citizen is told (`disclose_at`) and the auditor's verdict.
ALTER TABLE agencies ADD COLUMN is_emergency BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE grants ADD COLUMN emergency BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE citizen_emergency_types (
    citizen_id  UUID NOT NULL REFERENCES citizens(id),
    doc_type    TEXT NOT NULL,
    since       BIGINT NOT NULL,
    PRIMARY KEY (citizen_id, doc_type)
);

CREATE TABLE emergency_key_wraps (
    document_id UUID NOT NULL REFERENCES documents(id),
    version     INTEGER NOT NULL,
    citizen_id  UUID NOT NULL REFERENCES citizens(id),
    doc_type    TEXT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    PRIMARY KEY (document_id, version)
);
CREATE INDEX emergency_key_wraps_citizen ON emergency_key_wraps(citizen_id, doc_type);

CREATE TABLE emergency_accesses (
    grant_id        UUID PRIMARY KEY REFERENCES grants(id),
    agency_id       UUID NOT NULL REFERENCES agencies(id),
    citizen_id      UUID NOT NULL REFERENCES citizens(id),
    officer_id      TEXT NOT NULL,
    case_id         TEXT NOT NULL,
    justification   TEXT NOT NULL,
    legal_basis     TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    disclose_at     BIGINT NOT NULL,
    verdict         TEXT,
    review_note     TEXT,
    reviewed_by     UUID,
    reviewed_at     BIGINT
);
CREATE INDEX emergency_accesses_created ON emergency_accesses(created_at);
CREATE INDEX emergency_accesses_citizen ON emergency_accesses(citizen_id, disclose_at);
CREATE INDEX emergency_accesses_agency ON emergency_accesses(agency_id, citizen_id, created_at);
