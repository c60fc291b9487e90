"""Matching's projection of enrollment events into programs and pools (applied idempotently by the
runtime's tracking record), plus the frees that a closed relationship brings."""

from __future__ import annotations

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
from runtime.consumer import Handler


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


async def on_participant(conn: asyncpg.Connection, env: Envelope) -> None:
    event = env.data
    assert isinstance(event, ParticipantEnrolled | ParticipantUpdated)
    p = event.profile
    await conn.execute(
        "INSERT INTO pool (program_id, participant_id, role, profile, active) VALUES ($1,$2,$3,$4::jsonb,true)"
        " ON CONFLICT (program_id, participant_id) DO UPDATE SET role=EXCLUDED.role, profile=EXCLUDED.profile,"
        " active=true, updated_at=now()",
        event.program_id, p.participant_id, p.role.value, p.model_dump_json(),
    )  # fmt: skip


async def on_withdrawn(conn: asyncpg.Connection, env: Envelope) -> None:
    event = env.data
    assert isinstance(event, ParticipantWithdrawn)
    await conn.execute(
        "UPDATE pool SET active=false, updated_at=now() WHERE program_id=$1 AND participant_id=$2",
        event.program_id, event.participant_id,
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


HANDLERS: dict[type[Event], Handler] = {
    ProgramOpened: on_program,
    ProgramUpdated: on_program,
    ParticipantEnrolled: on_participant,
    ParticipantUpdated: on_participant,
    ParticipantWithdrawn: on_withdrawn,
    RelationshipClosed: on_relationship_closed,
}
