-- An override is never deleted: revoking it keeps who revoked it, when and why, for the audit.
ALTER TABLE overrides ADD COLUMN IF NOT EXISTS revoked_by TEXT;
ALTER TABLE overrides ADD COLUMN IF NOT EXISTS revoked_reason TEXT;
ALTER TABLE overrides ADD COLUMN IF NOT EXISTS revoked_at TIMESTAMPTZ;
