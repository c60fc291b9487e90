-- The groups each mentor leads now (from matching's group.matched and sessions' relationship.closed), so
-- a capacity cut below a mentor's current load is refused with the groups that hold it.
CREATE TABLE IF NOT EXISTS mentor_groups (
    group_id   TEXT PRIMARY KEY,
    program_id TEXT NOT NULL,
    mentor_ids TEXT[] NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT true
);
CREATE INDEX IF NOT EXISTS mentor_groups_active ON mentor_groups USING gin (mentor_ids) WHERE active;
