-- The last audit sequence number a citizen has seen on their activity page, for the
-- home page's "read since your last visit" notice.
ALTER TABLE citizens ADD COLUMN activity_seen_seq BIGINT NOT NULL DEFAULT 0;
