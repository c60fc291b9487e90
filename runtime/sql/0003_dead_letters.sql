-- Dead letters that could not be published to their `.dlt` topic (too large, topic missing, no
-- permission, broker unreachable), and the full body of any dead letter whose copy on the topic was cut.
-- Kept here so that nothing is lost; `python -m runtime.deadletters list|replay` reads and replays them.
CREATE TABLE IF NOT EXISTS dead_letters (
    id                 BIGSERIAL PRIMARY KEY,
    consumer           TEXT NOT NULL,
    topic              TEXT NOT NULL,
    "partition"        INT NOT NULL,
    "offset"           BIGINT NOT NULL,
    key                BYTEA,
    value              BYTEA,
    header_keys        TEXT[] NOT NULL,
    header_values      BYTEA[] NOT NULL,
    reason             TEXT NOT NULL,
    attempts           INT NOT NULL,
    on_topic           BOOLEAN NOT NULL,
    publish_error      TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_at        TIMESTAMPTZ,
    replayed_to        TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_pending ON dead_letters (id) WHERE replayed_at IS NULL;
