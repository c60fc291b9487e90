-- Admin overrides recorded by matching (match.override.recorded): ids and kind only, never the reason's text.
CREATE TABLE overrides (
    override_id     TEXT PRIMARY KEY,
    program_id      TEXT NOT NULL,
    kind            TEXT NOT NULL,
    participant_ids TEXT[] NOT NULL,
    at              TIMESTAMPTZ NOT NULL
);
