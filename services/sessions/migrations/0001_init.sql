-- Every confidential text is a pair of columns: <name>_key (the id of the key that sealed it) and
-- <name>_blob (AES-GCM nonce + ciphertext). No column holds a participant's words in plaintext.

CREATE TABLE programs (
    program_id        TEXT PRIMARY KEY,
    form              TEXT NOT NULL,
    cadence_days      INT NOT NULL,
    mentors_per_group INT NOT NULL,
    members_min       INT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'open'
);

-- withdrawals seen before (or after) the group that holds the person: a group.matched that arrives
-- after its member's participant.withdrawn still ends that member's part
CREATE TABLE withdrawals (
    program_id     TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    PRIMARY KEY (program_id, participant_id)
);

CREATE TABLE relationships (
    group_id     TEXT PRIMARY KEY,
    program_id   TEXT NOT NULL,
    form         TEXT NOT NULL,
    term         INT NOT NULL DEFAULT 1,
    status       TEXT NOT NULL DEFAULT 'open',
    outcome      TEXT,
    started_on   DATE NOT NULL,
    cadence_days INT NOT NULL,
    matched_at   TIMESTAMPTZ NOT NULL,
    closed_at    TIMESTAMPTZ
);
CREATE INDEX relationships_by_program ON relationships (program_id, status);

CREATE TABLE members (
    group_id       TEXT NOT NULL REFERENCES relationships (group_id),
    participant_id TEXT NOT NULL,
    role           TEXT NOT NULL,
    active         BOOLEAN NOT NULL DEFAULT true,
    position       INT NOT NULL,
    PRIMARY KEY (group_id, participant_id)
);
CREATE INDEX members_by_person ON members (participant_id);

CREATE TABLE expectations (
    group_id        TEXT PRIMARY KEY REFERENCES relationships (group_id),
    cadence_days    INT NOT NULL,
    format          TEXT NOT NULL,
    agenda_key      TEXT,
    agenda_blob     BYTEA,
    boundaries_key  TEXT,
    boundaries_blob BYTEA,
    updated_by      TEXT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    session_id       TEXT PRIMARY KEY,
    group_id         TEXT NOT NULL REFERENCES relationships (group_id),
    term             INT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'scheduled',
    scheduled_for    TIMESTAMPTZ NOT NULL,
    duration_minutes INT NOT NULL,
    topic_key        TEXT,
    topic_blob       BYTEA,
    guest_id         TEXT,
    held_at          TIMESTAMPTZ,
    attendees        TEXT[] NOT NULL DEFAULT '{}',
    reschedules      INT NOT NULL DEFAULT 0,
    reason_key       TEXT,
    reason_blob      BYTEA,
    created_by       TEXT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sessions_by_group ON sessions (group_id, scheduled_for);
CREATE INDEX sessions_by_guest ON sessions (guest_id) WHERE guest_id IS NOT NULL;

CREATE TABLE goals (
    goal_id        TEXT PRIMARY KEY,
    group_id       TEXT NOT NULL REFERENCES relationships (group_id),
    participant_id TEXT NOT NULL,
    category       TEXT NOT NULL,
    wording_key    TEXT NOT NULL,
    wording_blob   BYTEA NOT NULL,
    steps_total    INT NOT NULL,
    set_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX goals_by_group ON goals (group_id);

CREATE TABLE goal_steps (
    goal_id      TEXT NOT NULL REFERENCES goals (goal_id),
    position     INT NOT NULL,
    wording_key  TEXT NOT NULL,
    wording_blob BYTEA NOT NULL,
    done_at      TIMESTAMPTZ,
    PRIMARY KEY (goal_id, position)
);

CREATE TABLE notes (
    note_id    TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (session_id),
    group_id   TEXT NOT NULL REFERENCES relationships (group_id),
    author_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    text_key   TEXT NOT NULL,
    text_blob  BYTEA NOT NULL,
    shared     BOOLEAN NOT NULL DEFAULT false,
    done       BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX notes_by_session ON notes (session_id);
