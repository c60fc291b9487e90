-- The relay deletes published rows after the retention period: an index to find them without a scan.
CREATE INDEX IF NOT EXISTS outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
