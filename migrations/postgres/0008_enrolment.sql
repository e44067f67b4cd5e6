-- One-time enrolment codes: the proof of identity registration requires (SPEC §4,
-- `custodia citizen enrol`). Only a fingerprint of each code is kept, bound to the blind
-- index of the national ID it was issued for. A new code for an ID supersedes older ones.
CREATE TABLE enrolment_codes (
    id                  UUID PRIMARY KEY,
    national_id_index   BYTEA NOT NULL,
    code_hash           BYTEA NOT NULL UNIQUE,
    issued_by           TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    used_at             BIGINT,
    superseded_at       BIGINT
);
CREATE INDEX enrolment_codes_national_id ON enrolment_codes(national_id_index);

-- Agencies allowed to issue enrolment codes (a service hall, a post office counter).
ALTER TABLE agencies ADD COLUMN is_enroller BOOLEAN NOT NULL DEFAULT FALSE;
