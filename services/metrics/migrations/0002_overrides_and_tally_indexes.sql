-- Admin overrides recorded by matching (match.override.recorded): ids and kind only, never the reason's text.
CREATE TABLE overrides (
    override_id     TEXT PRIMARY KEY,
    program_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    participant_ids TEXT[] NOT NULL,
    at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX overrides_program ON overrides (program_id, at);

-- The KPI tallies are SQL aggregates (services/metrics/adapters/aggregates.py) that look up one group's
-- slips, answers and goals, and one program's rows: indexes for those lookups.
CREATE INDEX slips_group ON slips (group_id, at);
CREATE INDEX feedback_group ON feedback (group_id, given_at);
CREATE INDEX goals_group ON goals (group_id);
CREATE INDEX goals_program ON goals (program_id);
CREATE INDEX participants_program_role ON participants (program_id, role);
CREATE INDEX members_group ON members (group_id, role);
