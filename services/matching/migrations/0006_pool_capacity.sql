-- The pool's profiles are stored as their events carried them (validated against the contract, not
-- serialised again: that cost the projection a fifth of its CPU per event), so a profile's text may hold
-- values pydantic accepts but SQL casts do not (a capacity of 3.0 or "3"). Every reader of a whole profile
-- validates it with ParticipantProfile; the one value SQL reads by itself, a mentor's capacity, gets its
-- own column, written from the validated event.
ALTER TABLE pool ADD COLUMN capacity INT;
UPDATE pool SET capacity = (profile->>'capacity')::int WHERE profile->>'capacity' IS NOT NULL;
