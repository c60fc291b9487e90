-- Matching's read of enrollment (programs and pools, built from events) and its own runs and groups.
CREATE TABLE programs (
    program_id   TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    form         TEXT NOT NULL,
    cadence_days INT NOT NULL,
    policy       JSONB NOT NULL,
    status       TEXT NOT NULL DEFAULT 'open'
);

CREATE TABLE pool (
    program_id     TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    role           TEXT NOT NULL,
    profile        JSONB NOT NULL,
    active         BOOLEAN NOT NULL DEFAULT true,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id, participant_id)
);
CREATE INDEX pool_mentors ON pool (participant_id) WHERE role = 'mentor';

CREATE TABLE runs (
    run_id        TEXT PRIMARY KEY,
    program_id    TEXT NOT NULL,
    dry_run       BOOLEAN NOT NULL,
    seed          BIGINT NOT NULL,
    input_digest  TEXT,
    policy        JSONB NOT NULL,
    status        TEXT NOT NULL,
    progress      TEXT,
    requested_by  TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at  TIMESTAMPTZ,
    summary       JSONB,
    result        JSONB,
    error         TEXT
);
CREATE INDEX runs_by_program ON runs (program_id, started_at DESC);

CREATE TABLE groups (
    group_id     TEXT PRIMARY KEY,
    program_id   TEXT NOT NULL,
    run_id       TEXT NOT NULL REFERENCES runs (run_id),
    member_ids   TEXT[] NOT NULL,
    mentor_ids   TEXT[] NOT NULL,
    members      JSONB NOT NULL,
    fit          DOUBLE PRECISION NOT NULL,
    explanation  JSONB NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX groups_active_by_program ON groups (program_id) WHERE status = 'active';
CREATE INDEX groups_active_mentors ON groups USING gin (mentor_ids) WHERE status = 'active';

CREATE TABLE overrides (
    override_id    BIGSERIAL PRIMARY KEY,
    program_id     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    participant_ids TEXT[] NOT NULL,
    reason         TEXT NOT NULL,
    created_by     TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    active         BOOLEAN NOT NULL DEFAULT true
);

-- the exact input of each run, so an auditor can replay it and a dry run can compare against it
ALTER TABLE runs ADD COLUMN input JSONB;
