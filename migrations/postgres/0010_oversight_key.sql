-- The oversight office's public keys (`custodia audit oversight-key`): each citizen's
-- national ID is sealed (HPKE) to the current one, whose private half never reaches the
-- server. Escrow under a server key (`national_id_escrow`) is moved to it and cleared.
CREATE TABLE oversight_keys (
    id          UUID PRIMARY KEY,
    public_key  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
ALTER TABLE citizens ADD COLUMN national_id_sealed BYTEA;
ALTER TABLE citizens ADD COLUMN oversight_key_id UUID;
