-- A running run's process touches this every few seconds; a run whose heartbeat stopped was orphaned
-- by a process that died, and any replica marks it failed (no replica may fail another's live run).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now();
