-- Survey definitions: one row per version; answers name the version they answered.
CREATE TABLE surveys (
    survey_id  TEXT NOT NULL,
    version    INT NOT NULL,
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    questions  JSONB NOT NULL,
    every_days INT,
    active     BOOLEAN NOT NULL DEFAULT true,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by TEXT NOT NULL,
    PRIMARY KEY (survey_id, version)
);

-- What feedback learns from events (no foreign keys: matching and sessions events travel on two
-- topics and may arrive in either order; a row waits for the others to make a survey due).
CREATE TABLE groups (
    group_id   TEXT PRIMARY KEY,
    program_id TEXT NOT NULL,
    form       TEXT NOT NULL,
    matched_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE group_members (
    group_id       TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    role           TEXT NOT NULL,
    PRIMARY KEY (group_id, participant_id)
);
CREATE INDEX group_members_by_person ON group_members (participant_id);

-- A relationship that ended for good (a renewal goes on and is not recorded here).
CREATE TABLE closures (
    group_id  TEXT PRIMARY KEY,
    reason    TEXT NOT NULL,
    term      INT,
    closed_at TIMESTAMPTZ NOT NULL
);

-- A participant who left a program (participant.withdrawn): their part in the program's groups matched
-- before then ends, as if their relationship had closed (no more check-ins; the program survey is due).
CREATE TABLE withdrawals (
    program_id     TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    withdrawn_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (program_id, participant_id)
);

CREATE TABLE sessions_held (
    session_id TEXT PRIMARY KEY,
    group_id   TEXT NOT NULL,
    program_id TEXT NOT NULL,
    held_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE session_attendees (
    session_id     TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    PRIMARY KEY (session_id, participant_id)
);
CREATE INDEX session_attendees_by_person ON session_attendees (participant_id);

-- One row per (survey instance, respondent): a new answer replaces the row and bumps the revision,
-- keeping feedback_id. The comment is AES-GCM ciphertext bound to feedback_id, with the key's id.
CREATE TABLE answers (
    feedback_id     UUID PRIMARY KEY,
    survey_id       TEXT NOT NULL,
    instance_key    TEXT NOT NULL,
    respondent_id   TEXT NOT NULL,
    survey_version  INT NOT NULL,
    kind            TEXT NOT NULL,
    program_id      TEXT NOT NULL,
    group_id        TEXT NOT NULL,
    session_id      TEXT,
    period          INT,
    respondent_role TEXT NOT NULL,
    scores          JSONB NOT NULL,
    comment_key_id  TEXT,
    comment_blob    BYTEA,
    revision        INT NOT NULL,
    given_at        TIMESTAMPTZ NOT NULL,
    UNIQUE (survey_id, instance_key, respondent_id),
    CHECK ((comment_key_id IS NULL) = (comment_blob IS NULL))
);
CREATE INDEX answers_by_respondent ON answers (respondent_id, given_at);
CREATE INDEX answers_by_program ON answers (program_id, given_at);
CREATE INDEX answers_to_reseal ON answers (comment_key_id) WHERE comment_key_id IS NOT NULL;
