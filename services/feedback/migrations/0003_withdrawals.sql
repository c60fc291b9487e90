-- A participant who left a program (participant.withdrawn): their part in the program's groups matched
-- before then ends, as if their relationship had closed (no more check-ins; the program survey is due).
CREATE TABLE withdrawals (
    program_id     TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    withdrawn_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (program_id, participant_id)
);
