-- What an auditor needs to replay a run: the code that solved it, and the dry run a publication came from.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS code_version TEXT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS published_from TEXT REFERENCES runs (run_id);
