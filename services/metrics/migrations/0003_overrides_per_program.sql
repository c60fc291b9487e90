-- An override's id is matching's sequence number: unique within one matching database, not across
-- programs whose events share the topic (a second matching instance, a restored or test database). Keyed
-- by program too, so two programs' override 1 are two rows whatever order a replay applies them in.
ALTER TABLE overrides DROP CONSTRAINT overrides_pkey, ADD PRIMARY KEY (program_id, override_id);
