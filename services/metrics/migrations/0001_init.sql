-- Metrics read models: one table per fact, each row keyed by the fact's own id, so that applying an
-- event is a single-row upsert whatever order the topics are replayed in; KPIs join them at read time.

CREATE TABLE programs (
    program_id   TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    form         TEXT NOT NULL,
    cadence_days INT NOT NULL,
    status       TEXT NOT NULL,
    starts_on    DATE NOT NULL,
    opened_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE participants (
    program_id     TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    role           TEXT NOT NULL,
    department     TEXT NOT NULL,
    level          INT NOT NULL,
    location       TEXT,
    capacity       INT,
    enrolled_at    TIMESTAMPTZ NOT NULL,
    withdrawn_at   TIMESTAMPTZ,
    PRIMARY KEY (program_id, participant_id)
);
CREATE INDEX participants_person ON participants (participant_id);

CREATE TABLE groups (
    group_id     TEXT PRIMARY KEY,
    program_id   TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    form         TEXT NOT NULL,
    fit          DOUBLE PRECISION NOT NULL,
    cadence_days INT NOT NULL,
    matched_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX groups_program ON groups (program_id);

CREATE TABLE members (
    group_id       TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    program_id     TEXT NOT NULL,
    role           TEXT NOT NULL,
    PRIMARY KEY (group_id, participant_id)
);
CREATE INDEX members_person ON members (participant_id);

CREATE TABLE unmatched (
    program_id     TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    run_id         TEXT NOT NULL,
    reason_code    TEXT NOT NULL,
    at             TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (program_id, participant_id)
);

CREATE TABLE runs (
    run_id         TEXT PRIMARY KEY,
    program_id     TEXT NOT NULL,
    completed_at   TIMESTAMPTZ NOT NULL,
    placed_count   INT NOT NULL,
    unplaced_count INT NOT NULL
);

CREATE TABLE sessions_held (
    session_id       TEXT PRIMARY KEY,
    program_id       TEXT NOT NULL,
    group_id         TEXT NOT NULL,
    held_at          TIMESTAMPTZ NOT NULL,
    duration_minutes INT NOT NULL,
    attendees        INT NOT NULL
);
CREATE INDEX sessions_held_group ON sessions_held (group_id, held_at);
CREATE INDEX sessions_held_program ON sessions_held (program_id);

CREATE TABLE slips (
    session_id TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    kind       TEXT NOT NULL,
    program_id TEXT NOT NULL,
    group_id   TEXT NOT NULL,
    PRIMARY KEY (session_id, at, kind)
);

CREATE TABLE goals (
    goal_id        TEXT PRIMARY KEY,
    program_id     TEXT NOT NULL,
    group_id       TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    category       TEXT,
    steps_total    INT NOT NULL,
    steps_done     INT NOT NULL DEFAULT 0,
    set_at         TIMESTAMPTZ,
    progressed_at  TIMESTAMPTZ
);

CREATE TABLE closures (
    group_id   TEXT NOT NULL,
    closed_at  TIMESTAMPTZ NOT NULL,
    program_id TEXT NOT NULL,
    reason     TEXT NOT NULL,
    term       INT,
    PRIMARY KEY (group_id, closed_at)
);

CREATE TABLE expectations (
    group_id     TEXT PRIMARY KEY,
    program_id   TEXT NOT NULL,
    cadence_days INT NOT NULL,
    agreed_at    TIMESTAMPTZ NOT NULL
);

-- one row per feedback_id: its latest revision (an earlier revision arriving late changes nothing)
CREATE TABLE feedback (
    feedback_id     TEXT PRIMARY KEY,
    revision        INT NOT NULL,
    program_id      TEXT NOT NULL,
    group_id        TEXT NOT NULL,
    respondent_role TEXT NOT NULL,
    survey_kind     TEXT NOT NULL,
    given_at        TIMESTAMPTZ NOT NULL,
    session_rating  DOUBLE PRECISION,
    mentor_helps    DOUBLE PRECISION,
    mentee_engaged  DOUBLE PRECISION,
    pairing_fit     DOUBLE PRECISION,
    would_recommend INT
);
CREATE INDEX feedback_program ON feedback (program_id);

-- alert state: written with the alert event in one transaction, and projected back from the alerts
-- topic, so a rebuild from offset zero restores it too
CREATE TABLE alerts (
    alert_id   TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    program_id TEXT NOT NULL,
    group_id   TEXT,
    mentor_id  TEXT,
    severity   TEXT NOT NULL,
    detail     TEXT NOT NULL,
    risk_score DOUBLE PRECISION,
    raised_at  TIMESTAMPTZ NOT NULL,
    cleared_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (kind, subject) WHERE cleared_at IS NULL;

CREATE TABLE thresholds (
    program_id TEXT PRIMARY KEY,
    settings   JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
