-- Witnesses' cosignatures on checkpoints (C2SP tlog-cosignature): each witness's signature
-- line on the checkpoint at `seq`, kept as the witness sent it, after the server checked it
-- against the witness's configured key.
CREATE TABLE audit_cosignatures (
    seq         INTEGER NOT NULL,
    witness     TEXT NOT NULL,
    signature   TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (seq, witness)
);
