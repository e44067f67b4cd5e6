-- When the session's holder last proved a passkey (sign-in, registration or step-up):
-- account changes need it to be at most five minutes old.
ALTER TABLE sessions ADD COLUMN verified_at BIGINT;
