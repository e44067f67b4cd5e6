-- The auditor's search by officer, newest first (only agency reads name an officer).
CREATE INDEX audit_events_officer ON audit_events(officer_id, seq) WHERE officer_id IS NOT NULL;

-- Events counted per UTC day, actor, action and outcome, kept by the append that writes
-- them (in its transaction): what the charts read, so a month's chart costs a few hundred
-- rows whatever the trail's length. A summary for display; the events stay the record.
CREATE TABLE audit_daily (
    day         INTEGER NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (day, actor_kind, actor_id, action, outcome)
) WITHOUT ROWID;

INSERT INTO audit_daily (day, actor_kind, actor_id, action, outcome, n)
SELECT at / 86400000, actor_kind, COALESCE(actor_id, ''), action, outcome, COUNT(*)
FROM audit_events GROUP BY 1, 2, 3, 4, 5;
