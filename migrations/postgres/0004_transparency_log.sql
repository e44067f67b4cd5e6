-- The trail as a transparency log (RFC 9162): the hash of every complete subtree of the
-- Merkle tree over the events, under its stored-hash index (the tlog layout: leaves are
-- SHA-256(0x00 ‖ canonical event bytes)). Written in the same transaction as the events.
CREATE TABLE audit_tree (
    idx     BIGINT PRIMARY KEY,
    hash    BYTEA NOT NULL
);
-- How many events the tree holds (equal to audit_head.seq after every commit; behind it
-- only on a database from before the tree, until the server builds the rest at start).
ALTER TABLE audit_head ADD COLUMN tree_size BIGINT NOT NULL DEFAULT 0;
-- Each checkpoint's tree root and its C2SP signed note (NULL for checkpoints signed before
-- the tree existed).
ALTER TABLE audit_checkpoints ADD COLUMN root_hash BYTEA;
ALTER TABLE audit_checkpoints ADD COLUMN note TEXT;
-- A grant's events (its creation, for the receipt's inclusion proof).
CREATE INDEX audit_events_grant ON audit_events(grant_id, seq);
