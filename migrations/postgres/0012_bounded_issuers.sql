-- Issuers are bounded; see the SQLite migration of the same name for the reasons.
ALTER TABLE agencies ADD COLUMN issuer_types TEXT NOT NULL DEFAULT '[]';
UPDATE agencies SET issuer_types = COALESCE(
    (SELECT json_agg(t ORDER BY t)::text FROM
        (SELECT DISTINCT doc_type AS t FROM documents
          WHERE issuer_agency_id = agencies.id) AS deposited),
    '[]')
WHERE is_issuer;

CREATE TABLE issuer_keys (
    agency_id           UUID NOT NULL REFERENCES agencies(id),
    public_key          BYTEA NOT NULL,
    registered_at       BIGINT NOT NULL,
    retired_at          BIGINT,
    revoked_at          BIGINT,
    compromised_from    BIGINT,
    PRIMARY KEY (agency_id, public_key)
);
INSERT INTO issuer_keys (agency_id, public_key, registered_at)
    SELECT id, issuer_public_key, created_at FROM agencies WHERE issuer_public_key IS NOT NULL;

ALTER TABLE documents ADD COLUMN accepted_at BIGINT;
UPDATE documents SET accepted_at = created_at
 WHERE issuer_agency_id IS NULL
    OR NOT EXISTS (SELECT 1 FROM document_versions v
                    WHERE v.document_id = documents.id AND v.sealed_deposit IS NOT NULL);
