-- One-time enrolment codes: the proof of identity registration requires (SPEC §4,
-- `custodia citizen enrol`). Only a fingerprint of each code is kept, bound to the blind
-- index of the national ID it was issued for. A new code for an ID supersedes older ones.
CREATE TABLE enrolment_codes (
    id                  BLOB PRIMARY KEY,
    national_id_index   BLOB NOT NULL,
    code_hash           BLOB NOT NULL UNIQUE,
    issued_by           TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    used_at             INTEGER,
    superseded_at       INTEGER
);
CREATE INDEX enrolment_codes_national_id ON enrolment_codes(national_id_index);

-- Agencies allowed to issue enrolment codes (a service hall, a post office counter).
ALTER TABLE agencies ADD COLUMN is_enroller INTEGER NOT NULL DEFAULT 0;
