"""Matching's projection of enrollment events into programs and pools (applied idempotently by the
runtime's tracking record), plus the frees that a closed relationship brings.

Enrolments and withdrawals arrive by the ten thousand after a bulk upload, so they are batch handlers
(:func:`runtime.consumer.batched`): one statement per run of consecutive events instead of one each.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from contracts.envelope import Envelope
from contracts.events import (
    ClosureReason,
    Event,
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgramOpened,
    ProgramUpdated,
    RelationshipClosed,
)
from runtime.consumer import Batched, Handler, batched


async def on_program(conn: asyncpg.Connection, env: Envelope) -> None:
    event = env.data
    assert isinstance(event, ProgramOpened)  # ProgramUpdated is a ProgramOpened with a status
    status = event.status if isinstance(event, ProgramUpdated) else "open"
    await conn.execute(
        "INSERT INTO programs (program_id, name, form, cadence_days, policy, status) VALUES ($1,$2,$3,$4,$5::jsonb,$6)"
        " ON CONFLICT (program_id) DO UPDATE SET name=EXCLUDED.name, cadence_days=EXCLUDED.cadence_days,"
        " policy=EXCLUDED.policy, status=EXCLUDED.status",
        event.program_id, event.name, event.form.value, event.cadence_days, event.policy.model_dump_json(), status,
    )  # fmt: skip


async def on_participants(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
    """Enrolled or updated: the latest profile of each person is in the pool, active. One statement;
    a person twice in the run keeps the later event (one row may not be upserted twice in a statement)."""
    latest: dict[tuple[str, str], ParticipantEnrolled | ParticipantUpdated] = {}
    for env in envelopes:
        event = env.data
        assert isinstance(event, ParticipantEnrolled | ParticipantUpdated)
        latest[(event.program_id, event.profile.participant_id)] = event
    events = list(latest.values())
    await conn.execute(
        "INSERT INTO pool (program_id, participant_id, role, profile, active)"
        " SELECT p, q, r, f::json, true FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(p, q, r, f)"
        " ON CONFLICT (program_id, participant_id) DO UPDATE SET role=EXCLUDED.role, profile=EXCLUDED.profile,"
        " active=true, updated_at=now()",
        [e.program_id for e in events],
        [e.profile.participant_id for e in events],
        [e.profile.role.value for e in events],
        [e.profile.model_dump_json() for e in events],
    )


async def on_withdrawals(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
    pairs = []
    for env in envelopes:
        event = env.data
        assert isinstance(event, ParticipantWithdrawn)
        pairs.append((event.program_id, event.participant_id))
    await conn.execute(
        "UPDATE pool SET active=false, updated_at=now() FROM unnest($1::text[], $2::text[]) AS w(p, q)"
        " WHERE pool.program_id = w.p AND pool.participant_id = w.q",
        [p for p, _ in pairs], [q for _, q in pairs],
    )  # fmt: skip


async def on_relationship_closed(conn: asyncpg.Connection, env: Envelope) -> None:
    """A closed group frees its mentors' capacity and returns its members to the pool. A renewal
    (reason ``renewed``) ends only a term: the group goes on with the same members, so the mentor still
    carries it and nothing is freed."""
    event = env.data
    assert isinstance(event, RelationshipClosed)
    if event.reason is ClosureReason.RENEWED:
        return
    await conn.execute("UPDATE groups SET status='closed' WHERE group_id=$1", event.group_id)


_PARTICIPANTS = batched(on_participants)  # one object for both types: an upload's runs mix them

HANDLERS: dict[type[Event], Handler | Batched] = {
    ProgramOpened: on_program,
    ProgramUpdated: on_program,
    ParticipantEnrolled: _PARTICIPANTS,
    ParticipantUpdated: _PARTICIPANTS,
    ParticipantWithdrawn: batched(on_withdrawals),
    RelationshipClosed: on_relationship_closed,
}
