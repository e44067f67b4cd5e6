-- Issuers are bounded (issue: a county bureau must not mint a degree certificate).
--
-- `issuer_types`: the document types an issuer may deposit, a JSON list. An issuer that
-- has already deposited keeps exactly the types it has deposited; anything more is the
-- operator's decision (`custodia agency set-issuer-types`).
ALTER TABLE agencies ADD COLUMN issuer_types TEXT NOT NULL DEFAULT '[]';
UPDATE agencies SET issuer_types = COALESCE(
    (SELECT json_group_array(t) FROM
        (SELECT DISTINCT doc_type AS t FROM documents
          WHERE issuer_agency_id = agencies.id ORDER BY doc_type)),
    '[]')
WHERE is_issuer = 1;

-- Every key an issuer has held. `verify` reads check a deposit's signature against the
-- key registered here, not only the key the deposit carries; a key revoked as
-- compromised since `compromised_from` makes the deposits received from then on
-- untrusted.
CREATE TABLE issuer_keys (
    agency_id           BLOB NOT NULL REFERENCES agencies(id),
    public_key          BLOB NOT NULL,
    registered_at       INTEGER NOT NULL,
    retired_at          INTEGER,
    revoked_at          INTEGER,
    compromised_from    INTEGER,
    PRIMARY KEY (agency_id, public_key)
);
INSERT INTO issuer_keys (agency_id, public_key, registered_at)
    SELECT id, issuer_public_key, created_at FROM agencies WHERE issuer_public_key IS NOT NULL;

-- A deposit is `received` until its citizen accepts it; only accepted documents join
-- grants. What a citizen stored, or a deposit already received, counts as accepted.
ALTER TABLE documents ADD COLUMN accepted_at INTEGER;
UPDATE documents SET accepted_at = created_at
 WHERE issuer_agency_id IS NULL
    OR NOT EXISTS (SELECT 1 FROM document_versions v
                    WHERE v.document_id = documents.id AND v.sealed_deposit IS NOT NULL);
