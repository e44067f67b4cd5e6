-- An audit batch written in one hand-off (`Store::append_batch_at_once`) is now one
-- statement through a temporary view of the sequencer's connection, whose trigger refuses
-- with RAISE(ABORT) when an assumption does not hold; the guard table is no longer used.
DROP TABLE audit_batch_guard;
