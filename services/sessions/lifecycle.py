"""A relationship's life as the rest of the platform drives it: born from ``group.matched``, thinned by
``participant.withdrawn``, ended when it can no longer work or its program closes, renewed by its members.

Each consumer handler runs inside the runtime's tracking-record transaction (effect and event id commit
together), and writes its own events to the outbox in that same transaction, so a redelivery changes
nothing and nothing is published that was not stored. Every change to a group holds its row lock.
"""

from __future__ import annotations

import logging

import asyncpg

from contracts.base import utcnow
from contracts.envelope import Envelope
from contracts.events import (
    CancellationKind,
    ClosureReason,
    Event,
    GroupMatched,
    ParticipantEnrolled,
    ParticipantWithdrawn,
    ProgramOpened,
    ProgramUpdated,
    RelationshipClosed,
    SessionCancelled,
)
from runtime.outbox import add_to_outbox
from runtime.tracking import Handler
from services.sessions.adapters import repository as repo
from services.sessions.domain.model import (
    Member,
    ProgramInfo,
    Relationship,
    RelationshipStatus,
    still_viable,
    without,
)

log = logging.getLogger(__name__)


async def close(conn: asyncpg.Connection, rel: Relationship, outcome: ClosureReason) -> list[Envelope]:
    """End a relationship (the caller holds its row lock): it is closed, its still-scheduled sessions are
    cancelled, and ``relationship.closed`` tells matching to free the mentors and the members.

    ``renewed`` is not an end: the same group goes on as its next term (see :func:`renew`)."""
    if outcome is ClosureReason.RENEWED:
        return await renew(conn, rel)
    now = utcnow()
    await repo.close_relationship(conn, rel.group_id, outcome, now)
    events = [
        SessionCancelled(
            program_id=rel.program_id,
            group_id=rel.group_id,
            session_id=session_id,
            kind=CancellationKind.CANCELLED,
            cancelled_at=now,
        )
        for session_id in await repo.cancel_scheduled(conn, rel.group_id)
    ]
    log.info(
        "relationship %s closed as %s (term %d)",
        rel.group_id,
        outcome.value,
        rel.term,
        extra={"program_id": rel.program_id},
    )
    closed = RelationshipClosed(
        program_id=rel.program_id, group_id=rel.group_id, reason=outcome, closed_at=now, term=rel.term
    )
    return [Envelope(data=e) for e in [*events, closed]]


async def renew(conn: asyncpg.Connection, rel: Relationship) -> list[Envelope]:
    """The term ends as ``renewed`` and the group goes on, same id and members, as term + 1: matching
    keeps the mentor's slot taken, and a new term's goals and sessions start from here."""
    await repo.next_term(conn, rel.group_id)
    ended = RelationshipClosed(
        program_id=rel.program_id,
        group_id=rel.group_id,
        reason=ClosureReason.RENEWED,
        closed_at=utcnow(),
        term=rel.term,
    )
    return [Envelope(data=ended)]


async def _program(conn: asyncpg.Connection, rel: Relationship) -> ProgramInfo:
    return await repo.get_program(conn, rel.program_id) or ProgramInfo.assumed(
        rel.program_id, rel.form, rel.cadence_days
    )


async def end_part(conn: asyncpg.Connection, rel: Relationship, participant_id: str) -> list[Envelope]:
    """One member's part ends; a group left without a mentor or below its minimum closes as withdrawn."""
    await repo.end_membership(conn, rel.group_id, participant_id)
    if still_viable(without(rel, participant_id), await _program(conn, rel)):
        return []
    return await close(conn, rel, ClosureReason.WITHDRAWN)


# --- consumers --------------------------------------------------------------------------------------


async def on_program(conn: asyncpg.Connection, env: Envelope) -> None:
    """Keep the program's cadence and group sizes (open groups that agreed no cadence of their own follow
    a change); a program that closes ends its open relationships."""
    event = env.data
    assert isinstance(event, ProgramOpened)  # ProgramUpdated is a ProgramOpened with a status
    status = event.status if isinstance(event, ProgramUpdated) else "open"
    await repo.upsert_program(
        conn, ProgramInfo.of(event.program_id, event.form, event.cadence_days, event.policy, status)
    )
    await repo.follow_program_cadence(conn, event.program_id, event.cadence_days)
    if status != "closed":
        return
    events: list[Envelope] = []
    for rel in await repo.relationships_of_program(
        conn, event.program_id, status=RelationshipStatus.OPEN, for_update=True
    ):
        events += await close(conn, rel, ClosureReason.COMPLETED)
    await add_to_outbox(conn, *events)


async def on_group_matched(conn: asyncpg.Connection, env: Envelope) -> None:
    """A new relationship, term 1. A member who withdrew before the group reached us has no part in it,
    and a group of a program already closed, or left unviable, closes at once: matching learns either way."""
    event = env.data
    assert isinstance(event, GroupMatched)
    program = await repo.get_program(conn, event.program_id)
    rel = Relationship(
        group_id=event.group_id,
        program_id=event.program_id,
        form=event.form,
        term=1,
        status=RelationshipStatus.OPEN,
        started_on=event.matched_at.date(),
        cadence_days=program.cadence_days if program else event.cadence_days,
        members=tuple(Member(m.participant_id, m.role) for m in event.members),
    )
    if not await repo.insert_relationship(conn, rel, event.matched_at):
        return
    locked = await repo.get_relationship(conn, rel.group_id, for_update=True)
    assert locked is not None
    events: list[Envelope] = []
    if program is not None and program.status == "closed":
        events = await close(conn, locked, ClosureReason.COMPLETED)
    else:
        gone = await repo.withdrawn_among(conn, rel.program_id, [m.participant_id for m in rel.members])
        for participant_id in sorted(gone):
            await repo.end_membership(conn, rel.group_id, participant_id)
            locked = without(locked, participant_id)
        if gone and not still_viable(
            locked, program or ProgramInfo.assumed(rel.program_id, rel.form, rel.cadence_days)
        ):
            events = await close(conn, locked, ClosureReason.WITHDRAWN)
    await add_to_outbox(conn, *events)


async def on_withdrawn(conn: asyncpg.Connection, env: Envelope) -> None:
    event = env.data
    assert isinstance(event, ParticipantWithdrawn)
    await repo.record_withdrawal(conn, event.program_id, event.participant_id)
    events: list[Envelope] = []
    for rel in await repo.open_relationships_of(conn, event.program_id, event.participant_id):
        events += await end_part(conn, rel, event.participant_id)
    await add_to_outbox(conn, *events)


async def on_enrolled(conn: asyncpg.Connection, env: Envelope) -> None:
    """Enrolling again after a withdrawal: a later group may hold the person again."""
    event = env.data
    assert isinstance(event, ParticipantEnrolled)
    await repo.forget_withdrawal(conn, event.program_id, event.profile.participant_id)


HANDLERS: dict[type[Event], Handler] = {
    ProgramOpened: on_program,
    ProgramUpdated: on_program,
    GroupMatched: on_group_matched,
    ParticipantWithdrawn: on_withdrawn,
    ParticipantEnrolled: on_enrolled,
}
