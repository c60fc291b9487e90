-- A header key may hold a NUL, which PostgreSQL's text cannot: a dead letter with one was refused by the
-- table, and the consumer restarted on it for ever (found by an outside-in probe). The keys are kept as
-- their UTF-8 bytes too; `header_keys` stays for reading (a NUL shown as U+FFFD), replay uses the bytes.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS header_keys_utf8 BYTEA[];
