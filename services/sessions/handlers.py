"""Sessions' use cases for relationships, expectations and sessions (goals and notes: :mod:`.progress`):
load, decide (domain), save the state and its events in one transaction.

Texts are sealed here, before the repository sees them, and opened here only for a reader the domain
entitles to them. Every command on a group holds the group's row lock (``for_update``), so the group's
events commit in the order of their outbox ids and two commands on one group never interleave.
"""

from __future__ import annotations

import uuid

import asyncpg

from contracts.base import utcnow
from contracts.envelope import Envelope
from contracts.events import (
    CancellationKind,
    ClosureReason,
    ExpectationsAgreed,
    SessionCancelled,
    SessionHeld,
    SessionScheduled,
)
from runtime.crypto import KeyRing
from runtime.errors import NotFoundError
from runtime.outbox import add_to_outbox
from services.sessions import lifecycle
from services.sessions.adapters import repository as repo
from services.sessions.adapters import sealed
from services.sessions.domain import model
from services.sessions.domain.commands import (
    CancelIn,
    ExpectationsIn,
    HeldIn,
    RescheduleIn,
    ScheduleIn,
)
from services.sessions.domain.model import Caller, Relationship, SessionStatus
from services.sessions.views import (
    ExpectationsOut,
    MemberOut,
    RelationshipOut,
    RelationshipPage,
    SessionOut,
)


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


async def relationship_or_404(conn: asyncpg.Connection, group_id: str, *, for_update: bool = False) -> Relationship:
    rel = await repo.get_relationship(conn, group_id, for_update=for_update)
    if rel is None:
        raise NotFoundError(f"no relationship {group_id}", "group_id", where="path")
    return rel


# --- relationships ---------------------------------------------------------------------------------


def relationship_view(rel: Relationship, reader: str | None) -> RelationshipOut:
    """For a member: their role and the *other* members; for staff: every member."""
    me = rel.member(reader) if reader else None
    return RelationshipOut(
        group_id=rel.group_id,
        program_id=rel.program_id,
        form=rel.form,
        term=rel.term,
        status=rel.status,
        outcome=rel.outcome,
        started_on=rel.started_on,
        cadence_days=rel.cadence_days,
        my_role=me.role if me else None,
        members=[
            MemberOut(participant_id=m.participant_id, role=m.role, active=m.active)
            for m in rel.members
            if me is None or m.participant_id != me.participant_id
        ],
    )


async def my_relationships(pool: asyncpg.Pool, participant_id: str) -> list[RelationshipOut]:
    async with pool.acquire() as conn:
        return [relationship_view(r, participant_id) for r in await repo.relationships_of_member(conn, participant_id)]


async def program_relationships(
    pool: asyncpg.Pool, program_id: str, *, after: str | None, limit: int
) -> RelationshipPage:
    async with pool.acquire() as conn:
        if await repo.get_program(conn, program_id) is None:
            raise NotFoundError(f"no program {program_id}", "program_id", where="path")
        rows = await repo.relationships_of_program(conn, program_id, after=after, limit=limit)
    items = [relationship_view(r, None) for r in rows]
    return RelationshipPage(items=items, next_after=items[-1].group_id if len(items) == limit else None)


async def get_relationship(pool: asyncpg.Pool, caller: Caller, group_id: str) -> RelationshipOut:
    async with pool.acquire() as conn:
        rel = await relationship_or_404(conn, group_id)
    me = model.reader_of(rel, caller)
    return relationship_view(rel, me.participant_id if me else None)


async def close_relationship(
    pool: asyncpg.Pool, caller: Caller, group_id: str, outcome: ClosureReason
) -> RelationshipOut:
    """A member or an admin ends the relationship with an outcome, or renews it for another term."""
    async with pool.acquire() as conn, conn.transaction():
        rel = await relationship_or_404(conn, group_id, for_update=True)
        if not caller.admin:
            model.member_or_404(rel, caller.subject)
        model.writable(rel)
        await add_to_outbox(conn, *await lifecycle.close(conn, rel, outcome))
        after = await relationship_or_404(conn, group_id)
    return relationship_view(after, None if caller.admin else caller.subject)


# --- expectations ----------------------------------------------------------------------------------


async def get_expectations(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, group_id: str) -> ExpectationsOut:
    async with pool.acquire() as conn:
        rel = await relationship_or_404(conn, group_id)
        model.member_or_404(rel, caller.subject)
        row = await repo.get_expectations(conn, group_id)
    if row is None:
        return ExpectationsOut(
            group_id=group_id,
            agreed=False,
            cadence_days=rel.cadence_days,
            format=None,
            agenda_template=None,
            boundaries=None,
            updated_by=None,
            updated_at=None,
        )
    return ExpectationsOut(
        group_id=group_id,
        agreed=True,
        cadence_days=row.cadence_days,
        format=row.format,
        agenda_template=sealed.unseal(ring, sealed.AGENDA, *row.agenda, group_id),
        boundaries=sealed.unseal(ring, sealed.BOUNDARIES, *row.boundaries, group_id),
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


async def set_expectations(
    pool: asyncpg.Pool, ring: KeyRing, caller: Caller, group_id: str, body: ExpectationsIn
) -> ExpectationsOut:
    """Publishes expectations.agreed when first set, or when the cadence or the format changes; the
    agenda and boundaries are the group's words and never leave the service."""
    now = utcnow()
    async with pool.acquire() as conn, conn.transaction():
        rel = await relationship_or_404(conn, group_id, for_update=True)
        model.may_set_expectations(rel, caller.subject)
        model.writable(rel)
        before = await repo.get_expectations(conn, group_id)
        program = await repo.get_program(conn, rel.program_id)
        cadence = body.cadence_days or (program.cadence_days if program else rel.cadence_days)
        row = repo.ExpectationsRow(
            cadence_days=cadence,
            format=body.format,
            agenda=sealed.seal(ring, sealed.AGENDA, body.agenda_template, group_id),
            boundaries=sealed.seal(ring, sealed.BOUNDARIES, body.boundaries, group_id),
            updated_by=caller.subject,
            updated_at=now,
        )
        await repo.put_expectations(conn, group_id, row)
        await repo.set_cadence(conn, group_id, cadence)
        if before is None or (before.cadence_days, before.format) != (cadence, body.format):
            agreed = ExpectationsAgreed(
                program_id=rel.program_id, group_id=group_id, cadence_days=cadence, format=body.format, agreed_at=now
            )
            await add_to_outbox(conn, Envelope(data=agreed))
    return await get_expectations(pool, ring, caller, group_id)


# --- sessions --------------------------------------------------------------------------------------


def session_view(ring: KeyRing, s: repo.SessionRow, *, topic: bool, reason: bool) -> SessionOut:
    return SessionOut(
        session_id=s.session_id,
        group_id=s.group_id,
        term=s.term,
        status=s.status,
        scheduled_for=s.scheduled_for,
        duration_minutes=s.duration_minutes,
        topic=sealed.unseal(ring, sealed.TOPIC, *s.topic, s.session_id) if topic else None,
        guest_id=s.guest_id,
        held_at=s.held_at,
        attendees=list(s.attendees),
        reschedules=s.reschedules,
        reason=sealed.unseal(ring, sealed.REASON, *s.reason, s.session_id) if reason else None,
    )


async def schedule(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, group_id: str, body: ScheduleIn) -> SessionOut:
    model.check_when(body.scheduled_for, utcnow(), "scheduled_for", held=False)
    session_id = new_id("ses")
    async with pool.acquire() as conn, conn.transaction():
        rel = await relationship_or_404(conn, group_id, for_update=True)
        model.member_or_404(rel, caller.subject)
        model.writable(rel)
        model.check_guest(rel, body.guest_id)
        row = repo.SessionRow(
            session_id=session_id,
            group_id=group_id,
            term=rel.term,
            status=SessionStatus.SCHEDULED,
            scheduled_for=body.scheduled_for,
            duration_minutes=body.duration_minutes,
            topic=sealed.seal(ring, sealed.TOPIC, body.topic, session_id),
            guest_id=body.guest_id,
            held_at=None,
            attendees=(),
            reschedules=0,
            reason=(None, None),
            created_by=caller.subject,
        )
        await repo.insert_session(conn, row)
        event = SessionScheduled(
            program_id=rel.program_id,
            group_id=group_id,
            session_id=session_id,
            scheduled_for=body.scheduled_for,
            duration_minutes=body.duration_minutes,
        )
        await add_to_outbox(conn, Envelope(data=event))
    return session_view(ring, row, topic=True, reason=True)


async def list_sessions(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, group_id: str) -> list[SessionOut]:
    async with pool.acquire() as conn:
        rel = await relationship_or_404(conn, group_id)
        member = model.reader_of(rel, caller) is not None
        rows = await repo.sessions_of(conn, group_id)
    return [session_view(ring, s, topic=member, reason=member) for s in rows]


async def session_and_group(
    conn: asyncpg.Connection, session_id: str, *, for_update: bool = False
) -> tuple[repo.SessionRow, Relationship]:
    """The session and its group; the group's row is locked first when writing (the lock order)."""
    found = await repo.get_session(conn, session_id)
    if found is None:
        raise NotFoundError(f"no session {session_id}", "session_id", where="path")
    rel = await relationship_or_404(conn, found.group_id, for_update=for_update)
    s = await repo.get_session(conn, session_id, for_update=for_update) if for_update else found
    assert s is not None
    return s, rel


async def get_session(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, session_id: str) -> SessionOut:
    """Members read everything; the session's guest reads it (with its topic) and nothing else; staff
    read its metadata; anyone else gets a 404."""
    async with pool.acquire() as conn:
        s, rel = await session_and_group(conn, session_id)
    if caller.participant and s.guest_id == caller.subject:
        return session_view(ring, s, topic=True, reason=False)
    try:
        member = model.reader_of(rel, caller) is not None
    except NotFoundError:
        raise NotFoundError(f"no session {session_id}", "session_id", where="path") from None
    return session_view(ring, s, topic=member, reason=member)


async def _member_session(
    conn: asyncpg.Connection, caller: Caller, session_id: str
) -> tuple[repo.SessionRow, Relationship]:
    s, rel = await session_and_group(conn, session_id, for_update=True)
    if rel.member(caller.subject) is None or caller.subject not in rel.active_ids:
        raise NotFoundError(f"no session {session_id}", "session_id", where="path")
    model.writable(rel)
    return s, rel


async def log_held(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, session_id: str, body: HeldIn) -> SessionOut:
    async with pool.acquire() as conn, conn.transaction():
        s, rel = await _member_session(conn, caller, session_id)
        model.may_change_session(s.status, session_id)
        held_at = body.held_at or s.scheduled_for
        model.check_when(held_at, utcnow(), "held_at", held=True)  # held_at defaults to the scheduled time
        model.check_attendance(rel, body.attendees, s.guest_id)
        await repo.mark_held(conn, session_id, held_at, body.duration_minutes, body.attendees)
        event = SessionHeld(
            program_id=rel.program_id,
            group_id=rel.group_id,
            session_id=session_id,
            held_at=held_at,
            duration_minutes=body.duration_minutes,
            attendees=list(body.attendees),
        )
        await add_to_outbox(conn, Envelope(data=event))
        after = await repo.get_session(conn, session_id)
    assert after is not None
    return session_view(ring, after, topic=True, reason=True)


async def cancel(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, session_id: str, body: CancelIn) -> SessionOut:
    async with pool.acquire() as conn, conn.transaction():
        s, rel = await _member_session(conn, caller, session_id)
        model.may_change_session(s.status, session_id)
        await repo.mark_cancelled(conn, session_id, sealed.seal(ring, sealed.REASON, body.reason, session_id))
        event = SessionCancelled(
            program_id=rel.program_id,
            group_id=rel.group_id,
            session_id=session_id,
            kind=CancellationKind.CANCELLED,
            cancelled_at=utcnow(),
        )
        await add_to_outbox(conn, Envelope(data=event))
        after = await repo.get_session(conn, session_id)
    assert after is not None
    return session_view(ring, after, topic=True, reason=True)


async def reschedule(
    pool: asyncpg.Pool, ring: KeyRing, caller: Caller, session_id: str, body: RescheduleIn
) -> SessionOut:
    model.check_when(body.scheduled_for, utcnow(), "scheduled_for", held=False)
    async with pool.acquire() as conn, conn.transaction():
        s, rel = await _member_session(conn, caller, session_id)
        model.may_change_session(s.status, session_id)
        await repo.move(conn, session_id, body.scheduled_for, sealed.seal(ring, sealed.REASON, body.reason, session_id))
        event = SessionCancelled(
            program_id=rel.program_id,
            group_id=rel.group_id,
            session_id=session_id,
            kind=CancellationKind.RESCHEDULED,
            rescheduled_to=body.scheduled_for,
            cancelled_at=utcnow(),
        )
        await add_to_outbox(conn, Envelope(data=event))
        after = await repo.get_session(conn, session_id)
    assert after is not None
    return session_view(ring, after, topic=True, reason=True)
