-- The national ID sealed under the identity-escrow service key, for an auditor's
-- reasoned, audited reveal (NULL for accounts made before it existed).
ALTER TABLE citizens ADD COLUMN national_id_escrow BLOB;
CREATE UNIQUE INDEX auditors_name ON auditors(name);
CREATE INDEX citizens_pseudonym ON citizens(pseudonym);
