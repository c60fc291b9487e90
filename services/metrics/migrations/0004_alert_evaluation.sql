-- The safety nets' last evaluation, one row, written in the transaction that raises and clears: a reader
-- who sees evaluation n sees its alerts. Lets a client (the demo, an integration test, an operator) wait
-- for an evaluation that started after something it did, instead of guessing from a quiet alert list.
CREATE TABLE alert_evaluation (
    only_row    BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    evaluations BIGINT NOT NULL,
    as_of       TIMESTAMPTZ NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    raised      INT NOT NULL,
    cleared     INT NOT NULL
);
