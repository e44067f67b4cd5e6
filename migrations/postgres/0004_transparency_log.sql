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
-- Each grant's creation event, for the receipt's inclusion proof (partial: only those
-- events, so the append path maintains it once per grant, not once per read).
CREATE INDEX audit_events_grant_created ON audit_events(grant_id) WHERE action = 'grant.create';
