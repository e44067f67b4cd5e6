-- Delegations: a citizen (the principal) lets another registered citizen (the delegate)
-- act for her within a scope of document types and actions, until an expiry.
--
-- Keys follow the delegation (SPEC G5): a random delegation key is sealed (HPKE) to the
-- delegate's public key (`key_for_delegate`) and wrapped under the principal's vault key
-- (`key_for_principal`, so her unlocked sessions add new documents in scope); the covered
-- data keys are wrapped under it in `delegation_key_wraps`. Ending a delegation deletes
-- both key columns and every wrap. A delegation appointed by a guardianship authority has
-- no keys until the principal (the ward) next unlocks her vault.
--
-- Names are personal data: each side's display name is sealed (HPKE) to the other's public
-- key — the principal's when she appoints, the delegate's when she accepts — so each sees
-- who the other is with her own vault, and the database holds neither in clear.
--
-- A guardianship over a ward who had no account holds the account's hand-over code sealed
-- to the guardian (`handover_code`), for the ward to recover her vault with at majority.
CREATE TABLE delegations (
    id                  BLOB PRIMARY KEY,
    principal_id        BLOB NOT NULL REFERENCES citizens(id),
    delegate_id         BLOB NOT NULL REFERENCES citizens(id),
    document_types      TEXT NOT NULL,
    actions             TEXT NOT NULL,
    status              TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    accepted_at         INTEGER,
    expires_at          INTEGER NOT NULL,
    ended_at            INTEGER,
    ended_by            TEXT,
    key_for_delegate    BLOB,
    key_for_principal   BLOB,
    principal_name      BLOB,
    delegate_name       BLOB,
    handover_code       BLOB,
    guardianship_id     BLOB
);
CREATE INDEX delegations_principal ON delegations(principal_id, created_at);
CREATE INDEX delegations_delegate ON delegations(delegate_id, created_at);

CREATE TABLE delegation_key_wraps (
    delegation_id   BLOB NOT NULL REFERENCES delegations(id),
    document_id     BLOB NOT NULL REFERENCES documents(id),
    version         INTEGER NOT NULL,
    wrapped_key     BLOB NOT NULL,
    PRIMARY KEY (delegation_id, document_id, version)
) WITHOUT ROWID;

-- Agencies that declare guardianships (`custodia agency create … --guardianship-authority`).
ALTER TABLE agencies ADD COLUMN is_guardianship_authority INTEGER NOT NULL DEFAULT 0;

-- Guardianships declared by an authority: each is carried out by a delegation (full scope
-- but account settings) from the ward to the guardian; this row keeps who declared it and
-- on what basis. A minor's ends at the 18th birthday read from the national ID.
CREATE TABLE guardianships (
    id              BLOB PRIMARY KEY,
    agency_id       BLOB NOT NULL REFERENCES agencies(id),
    delegation_id   BLOB NOT NULL REFERENCES delegations(id),
    basis           TEXT NOT NULL,
    majority_at     INTEGER,
    created_at      INTEGER NOT NULL
);
