CREATE TABLE programs (
    program_id   TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    form         TEXT NOT NULL,
    cadence_days INT NOT NULL,
    starts_on    DATE NOT NULL,
    ends_on      DATE,
    policy       JSONB NOT NULL,
    status       TEXT NOT NULL DEFAULT 'open',
    opened_at    TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE org_people (
    employee_id        TEXT PRIMARY KEY,
    manager_id         TEXT,
    department         TEXT NOT NULL,
    level              INT NOT NULL,
    location           TEXT,
    utc_offset_minutes INT NOT NULL DEFAULT 0,
    languages          TEXT[] NOT NULL DEFAULT '{}',
    imported_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- request: what the person declared; profile: the last profile published in an event, so an org
-- import can tell whose published profile went stale.
CREATE TABLE enrolments (
    program_id     TEXT NOT NULL REFERENCES programs (program_id),
    participant_id TEXT NOT NULL REFERENCES org_people (employee_id),
    role           TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'active',
    request        JSONB NOT NULL,
    profile        JSONB NOT NULL,
    enrolled_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id, participant_id)
);
CREATE INDEX enrolments_by_person ON enrolments (participant_id);
