-- The oversight office's public keys (`custodia audit oversight-key`): each citizen's
-- national ID is sealed (HPKE) to the current one, whose private half never reaches the
-- server. Escrow under a server key (`national_id_escrow`) is moved to it and cleared.
CREATE TABLE oversight_keys (
    id          BLOB PRIMARY KEY,
    public_key  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);
ALTER TABLE citizens ADD COLUMN national_id_sealed BLOB;
ALTER TABLE citizens ADD COLUMN oversight_key_id BLOB;
