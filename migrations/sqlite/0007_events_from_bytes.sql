-- Every event column becomes a view of the event's canonical bytes: `body` is what the chain
-- and the Merkle tree hash, and the columns readers filter and show are computed from it
-- (VIRTUAL: nothing but the bytes is stored), so no edit can make what a page shows differ
-- from what the hashes cover. `custodia audit verify` holds this table's definition to the
-- text below (`store::audit::SQLITE_EVENTS_TABLE`); keep the two identical.
--
-- Events written before their bytes were stored get them now: `json_object` with the keys
-- in JCS order writes exactly the RFC 8785 form the hash was computed over (SQLite escapes
-- `"` and `\`, `\b \t \n \f \r`, other control characters as lower-case `\u00xx`, and
-- nothing else, as JCS does; a test holds the two to each other).
ALTER TABLE audit_events RENAME TO audit_events_columns;
DROP INDEX audit_events_citizen;
DROP INDEX audit_events_actor;
DROP INDEX audit_events_at;
DROP INDEX audit_events_grant_created;

CREATE TABLE audit_events (
    seq INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    at INTEGER NOT NULL GENERATED ALWAYS AS (json_extract(body, '$.at')) VIRTUAL,
    actor_kind TEXT NOT NULL GENERATED ALWAYS AS (json_extract(body, '$.actor_kind')) VIRTUAL,
    actor_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.actor_id')) VIRTUAL,
    officer_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.officer_id')) VIRTUAL,
    case_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.case_id')) VIRTUAL,
    citizen_pseudonym TEXT GENERATED ALWAYS AS (json_extract(body, '$.citizen')) VIRTUAL,
    action TEXT NOT NULL GENERATED ALWAYS AS (json_extract(body, '$.action')) VIRTUAL,
    object_ids TEXT NOT NULL GENERATED ALWAYS AS (json_extract(body, '$.object_ids')) VIRTUAL,
    grant_id BLOB GENERATED ALWAYS AS (unhex(replace(json_extract(body, '$.grant_id'), '-', ''))) VIRTUAL,
    purpose TEXT GENERATED ALWAYS AS (json_extract(body, '$.purpose')) VIRTUAL,
    tier TEXT GENERATED ALWAYS AS (json_extract(body, '$.tier')) VIRTUAL,
    fields TEXT GENERATED ALWAYS AS (json_extract(body, '$.fields')) VIRTUAL,
    outcome TEXT NOT NULL GENERATED ALWAYS AS (json_extract(body, '$.outcome')) VIRTUAL,
    bytes_sent INTEGER GENERATED ALWAYS AS (json_extract(body, '$.bytes_sent')) VIRTUAL,
    request_id TEXT GENERATED ALWAYS AS (json_extract(body, '$.request_id')) VIRTUAL,
    detail TEXT GENERATED ALWAYS AS (json_extract(body, '$.detail')) VIRTUAL
);

INSERT INTO audit_events (seq, body, prev_hash, hash)
SELECT seq,
       COALESCE(body, json_object(
           'action', action,
           'actor_id', actor_id,
           'actor_kind', actor_kind,
           'at', at,
           'bytes_sent', bytes_sent,
           'case_id', case_id,
           'citizen', citizen_pseudonym,
           'detail', detail,
           'fields', fields,
           'grant_id', CASE WHEN grant_id IS NULL THEN NULL ELSE lower(
               substr(hex(grant_id), 1, 8) || '-' || substr(hex(grant_id), 9, 4) || '-' ||
               substr(hex(grant_id), 13, 4) || '-' || substr(hex(grant_id), 17, 4) || '-' ||
               substr(hex(grant_id), 21, 12)) END,
           'object_ids', object_ids,
           'officer_id', officer_id,
           'outcome', outcome,
           'purpose', purpose,
           'request_id', request_id,
           'seq', seq,
           'tier', tier)),
       prev_hash,
       hash
FROM audit_events_columns ORDER BY seq;

DROP TABLE audit_events_columns;

CREATE INDEX audit_events_citizen ON audit_events(citizen_pseudonym, seq);
CREATE INDEX audit_events_actor ON audit_events(actor_kind, actor_id, seq);
CREATE INDEX audit_events_at ON audit_events(at);
CREATE INDEX audit_events_grant_created ON audit_events(grant_id) WHERE action = 'grant.create';
