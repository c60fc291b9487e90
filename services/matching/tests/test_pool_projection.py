"""Matching's pool projection on the real database, through the runtime's batched consumer: profiles are
stored as their events carried them and read back validated, whatever a valid body looks like."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka.structs import ConsumerRecord

from contracts.envelope import Envelope, to_kafka
from contracts.events import ParticipantEnrolled, ParticipantUpdated, ParticipantWithdrawn
from contracts.topics import ENROLLMENT
from runtime.consumer import EventConsumer, Record
from services.matching.adapters import runs as repo
from services.matching.adapters.pool import HANDLERS, on_participants
from services.matching.tests.factories import mentor, person

pytestmark = pytest.mark.stack

PROGRAM = "prg-pool"


class _NoDeadLetters:
    async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("no event of these tests is dead-lettered")


def _record(env: Envelope, offset: int, body: dict[str, Any] | bytes | None = None) -> Record:
    """The Kafka record of ``env``; ``body`` replaces its JSON (the same headers)."""
    r = to_kafka(env)
    value = r.value if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    return ConsumerRecord(ENROLLMENT.name, 0, offset, 0, 0, r.key, value, None, len(r.key), len(value), r.headers)


def _enrolled(profile: Any) -> Envelope:
    return Envelope(data=ParticipantEnrolled(program_id=PROGRAM, profile=profile, enrolled_at=datetime.now(UTC)))


async def _project(db: asyncpg.Pool, records: list[Record]) -> None:
    consumer = EventConsumer(
        name="pool-test", pool=db, producer=_NoDeadLetters(), topics=(ENROLLMENT,), handlers=HANDLERS
    )
    await consumer.process_batch(records)


async def test_a_profile_is_stored_as_sent_and_read_back_validated(db: asyncpg.Pool) -> None:
    """A valid body that is not as this release would write it (tags not normalised, a capacity of 3.0,
    a field a newer producer added): the solver's input and the capacity read it as the contract says."""
    env = _enrolled(mentor("M1", skills_offered=["python"], capacity=3))
    body = json.loads(to_kafka(env).value)
    body["profile"].update(skills_offered=["  Python "], capacity=3.0, pronouns="they")
    await _project(db, [_record(env, 0, body)])
    async with db.acquire() as conn:
        (profile,) = await repo.unmatched_pool(conn, PROGRAM)
        assert profile.skills_offered == ["python"] and profile.capacity == 3
        assert await repo.mentor_capacities(conn, ["M1"]) == {"M1": 3}


async def test_a_body_postgresql_json_refuses_is_applied_from_its_model(db: asyncpg.Pool) -> None:
    """NaN in a field this release ignores: valid for the contract (pydantic reads it), not for
    PostgreSQL's json. The event is applied all the same, with the rest of its batch."""
    nan = _enrolled(person("P1"))
    raw = to_kafka(nan).value.replace(b'"participant_id":"P1"', b'"participant_id":"P1","score":NaN')
    assert b"NaN" in raw
    await _project(db, [_record(_enrolled(person("P0")), 0), _record(nan, 1, raw), _record(_enrolled(person("P2")), 2)])
    async with db.acquire() as conn:
        assert [p.participant_id for p in await repo.unmatched_pool(conn, PROGRAM)] == ["P0", "P1", "P2"]


async def test_the_latest_event_of_a_person_wins_and_a_withdrawal_deactivates(db: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    events = [
        _enrolled(mentor("M1", capacity=1)),
        Envelope(data=ParticipantUpdated(program_id=PROGRAM, profile=mentor("M1", capacity=4), updated_at=now)),
        _enrolled(person("P1")),
        Envelope(data=ParticipantWithdrawn(program_id=PROGRAM, participant_id="P1", withdrawn_at=now)),
    ]
    await _project(db, [_record(env, i) for i, env in enumerate(events)])
    async with db.acquire() as conn:
        assert [p.participant_id for p in await repo.unmatched_pool(conn, PROGRAM)] == ["M1"]
        assert await repo.mentor_capacities(conn, ["M1"]) == {"M1": 4}


async def test_an_enrolment_of_someone_in_the_pool_already_updates_the_row(db: asyncpg.Pool) -> None:
    """A run of enrolments is first inserted as if everyone were new; a person in the pool already (back
    after a withdrawal, in a run with new people) makes the key refuse the insert, and the run is upserted."""
    now = datetime.now(UTC)
    withdrawn = Envelope(data=ParticipantWithdrawn(program_id=PROGRAM, participant_id="M1", withdrawn_at=now))
    await _project(db, [_record(_enrolled(mentor("M1", capacity=1)), 0), _record(withdrawn, 1)])
    await _project(db, [_record(_enrolled(person("P1")), 2), _record(_enrolled(mentor("M1", capacity=5)), 3)])
    async with db.acquire() as conn:
        assert sorted(p.participant_id for p in await repo.unmatched_pool(conn, PROGRAM)) == ["M1", "P1"]
        assert await repo.mentor_capacities(conn, ["M1"]) == {"M1": 5}


async def test_two_runs_of_one_batch_each_write_only_their_own_people(db: asyncpg.Pool) -> None:
    """A batch whose enrolments are cut into two runs by a withdrawal: each run writes its own people
    (the first one's withdrawal stands), none of them twice."""
    now = datetime.now(UTC)
    withdrawn = Envelope(data=ParticipantWithdrawn(program_id=PROGRAM, participant_id="P1", withdrawn_at=now))
    events = [_enrolled(person("P1")), withdrawn, _enrolled(person("P2")), _enrolled(person("P3"))]
    await _project(db, [_record(env, i) for i, env in enumerate(events)])
    async with db.acquire() as conn:
        assert [p.participant_id for p in await repo.unmatched_pool(conn, PROGRAM)] == ["P2", "P3"]
        assert await conn.fetchval("SELECT count(*) FROM pool") == 3


async def test_ids_holding_the_separator_of_joined_texts_are_stored_as_sent(db: asyncpg.Pool) -> None:
    """The columns travel as joined texts (runtime.db.text_array_sql); an event id (a header, not a
    contract string, which holds no control character) may hold the separator, and then that run travels
    as arrays: nothing split or merged."""
    odd = Envelope(data=_enrolled(person("P1")).data, id="event\x1fid")
    await _project(db, [_record(_enrolled(person("P0")), 0), _record(odd, 1)])
    await _project(db, [_record(odd, 2)])  # redelivered: the tracking record knows its id
    async with db.acquire() as conn:
        assert {p.participant_id for p in await repo.unmatched_pool(conn, PROGRAM)} == {"P0", "P1"}
        assert (
            await conn.fetchval("SELECT count(*) FROM processed_events WHERE event_id = 'event' || chr(31) || 'id'")
            == 1
        )


async def test_events_built_in_process_have_no_body_and_are_serialised(db: asyncpg.Pool) -> None:
    """The handler called directly (tools, tests) with envelopes that never went through Kafka."""
    async with db.acquire() as conn, conn.transaction():
        await on_participants(conn, [_enrolled(mentor("M2", capacity=2))])
        assert await repo.mentor_capacities(conn, ["M2"]) == {"M2": 2}


class _DeadLetters:
    def __init__(self) -> None:
        self.sent: list[dict[str, bytes]] = []

    async def send_and_wait(self, topic: str, **kwargs: Any) -> None:
        self.sent.append(dict(kwargs["headers"]))


async def test_a_nul_character_in_a_profile_is_a_dead_letter_at_parse_time(db: asyncpg.Pool) -> None:
    """``\\u0000`` in a profile's text: the contract refuses it (no PostgreSQL text can hold it), so the
    event is a dead letter naming the field, the rest of the batch is applied, nothing is half-stored."""
    env = _enrolled(person("P1"))
    body = json.loads(to_kafka(env).value)
    body["profile"]["department"] = "eng\x00ineering"
    dead = _DeadLetters()
    consumer = EventConsumer(name="pool-test", pool=db, producer=dead, topics=(ENROLLMENT,), handlers=HANDLERS)
    await consumer.process_batch([_record(env, 0, body), _record(_enrolled(person("P2")), 1)])
    assert len(dead.sent) == 1 and b"profile.department" in dead.sent[0]["dlt_reason"]
    async with db.acquire() as conn:
        assert [p.participant_id for p in await repo.unmatched_pool(conn, PROGRAM)] == ["P2"]


async def test_a_mentor_written_without_the_capacity_column_keeps_the_profiles(db: asyncpg.Pool) -> None:
    """A row a release before migration 0006 wrote during a rolling upgrade: no capacity column."""
    async with db.acquire() as conn:
        await conn.execute(
            "INSERT INTO pool (program_id, participant_id, role, profile, active)"
            " VALUES ($1, 'M3', 'mentor', $2, true)",
            PROGRAM,
            mentor("M3", capacity=2).model_dump_json(),
        )
        assert await repo.mentor_capacities(conn, ["M3"]) == {"M3": 2}
