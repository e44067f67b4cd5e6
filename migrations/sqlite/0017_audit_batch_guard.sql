-- A table no row can enter. An audit batch written in one hand-off to the database
-- (`Store::append_batch_at_once`) inserts into it when one of its assumptions does not
-- hold — the trail's head moved, changes wait in the outbox, a read's claim no longer
-- fits — and the constraint's failure ends the batch with nothing written.
CREATE TABLE audit_batch_guard (
    refused TEXT,
    CONSTRAINT audit_batch_guard CHECK (refused IS NULL)
);
