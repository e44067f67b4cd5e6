-- Each event's canonical bytes (RFC 8785 JSON), exactly as hashed into the chain and the
-- Merkle tree, so verification hashes bytes and never re-encodes. NULL for events written
-- before this column; verifiers encode those from their columns.
ALTER TABLE audit_events ADD COLUMN body TEXT;
