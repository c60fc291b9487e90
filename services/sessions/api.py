"""Sessions' HTTP API: thin routes over the handlers.

Who reads what (one rule per case):
- A **participant** reaches the relationships they are an active member of, their sessions, goals and
  notes. Any other group, session, goal or note is a **404**, exactly as if it did not exist, so nobody
  can probe who is in which group. Inside their own group, an act their role does not allow (a mentee
  changing expectations, ticking another member's goal, changing another's shared note) is a **403**.
- A session's **guest facilitator** reads that session (its topic too) and nothing else.
- **Admins** list a program's relationships and read metadata (members, roles, session times,
  attendance, goal categories and step counts) and close relationships; **integrations** read the same
  metadata. Neither ever reads a text: topics, reasons, goal wording, agenda, boundaries come back as
  ``null``, and the text-only routes (expectations, notes) are a 403 for their roles.

Errors: 401, 403, 404, 409 and 422 all have FastAPI's shape ``{"detail": [{"loc", "msg", "type"}]}`` naming
the field (``runtime/errors.py``), and never repeat a submitted text.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from runtime.auth import ApiRole, Principal, require
from runtime.crypto import KeyRing
from runtime.errors import error_responses
from runtime.service import ServiceContext, context
from services.sessions import handlers, progress
from services.sessions.domain.commands import (
    CancelIn,
    CloseIn,
    ExpectationsIn,
    GoalIn,
    HeldIn,
    NoteIn,
    NotePatch,
    RescheduleIn,
    ScheduleIn,
)
from services.sessions.domain.model import Caller
from services.sessions.views import ExpectationsOut, GoalOut, NoteOut, RelationshipOut, RelationshipPage, SessionOut

router = APIRouter()
Ctx = Annotated[ServiceContext, Depends(context)]


def key_ring(request: Request) -> KeyRing:
    ring: KeyRing = request.app.state.key_ring
    return ring


Ring = Annotated[KeyRing, Depends(key_ring)]


def _caller(who: Principal) -> Caller:
    return Caller(
        subject=who.subject,
        participant=who.has(ApiRole.PARTICIPANT),
        admin=who.has(ApiRole.ADMIN),
        integration=who.has(ApiRole.INTEGRATION),
    )


async def _anyone(who: Annotated[Principal, Depends(require(*ApiRole))]) -> Caller:
    return _caller(who)


async def _participant(who: Annotated[Principal, Depends(require(ApiRole.PARTICIPANT))]) -> Caller:
    return _caller(who)


async def _member_or_admin(who: Annotated[Principal, Depends(require(ApiRole.PARTICIPANT, ApiRole.ADMIN))]) -> Caller:
    return _caller(who)


Anyone = Annotated[Caller, Depends(_anyone)]
Participant = Annotated[Caller, Depends(_participant)]
MemberOrAdmin = Annotated[Caller, Depends(_member_or_admin)]
Staff = Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.INTEGRATION))]
Step = Annotated[int, Path(ge=1, le=100, description="1-based position of the step")]


@router.get("/me/relationships", response_model=list[RelationshipOut], tags=["relationships"])
async def my_relationships(ctx: Ctx, who: Participant) -> list[RelationshipOut]:
    """The caller's relationships, open and closed, with their role and the other members' ids and roles."""
    return await handlers.my_relationships(ctx.pool, who.subject)


@router.get(
    "/programs/{program_id}/relationships",
    response_model=RelationshipPage,
    tags=["relationships"],
    responses=error_responses(404, 422),
)
async def program_relationships(
    program_id: str,
    ctx: Ctx,
    _: Staff,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    after: Annotated[str | None, Query(description="the last group id of the previous page")] = None,
) -> RelationshipPage:
    """A page of a program's relationships, in group id order, with every member and role (admins and
    integrations); 404 for a program sessions has not heard of."""
    return await handlers.program_relationships(ctx.pool, program_id, after=after, limit=limit)


@router.get(
    "/relationships/{group_id}", response_model=RelationshipOut, tags=["relationships"], responses=error_responses(404)
)
async def get_relationship(group_id: str, ctx: Ctx, who: Anyone) -> RelationshipOut:
    return await handlers.get_relationship(ctx.pool, who, group_id)


@router.post(
    "/relationships/{group_id}/close",
    response_model=RelationshipOut,
    tags=["relationships"],
    responses=error_responses(404, 409, 422),
)
async def close_relationship(group_id: str, body: CloseIn, ctx: Ctx, who: MemberOrAdmin) -> RelationshipOut:
    """End the relationship with an outcome (publishes relationship.closed, which frees the mentor's slot
    in matching). ``renewed`` ends only the term: the group goes on with the same id and members as
    term + 1, and matching keeps the slot taken."""
    return await handlers.close_relationship(ctx.pool, who, group_id, body.outcome)


@router.get(
    "/relationships/{group_id}/expectations",
    response_model=ExpectationsOut,
    tags=["expectations"],
    responses=error_responses(404),
)
async def get_expectations(group_id: str, ctx: Ctx, ring: Ring, who: Participant) -> ExpectationsOut:
    """Members only: the agreed cadence, format, agenda template and boundaries."""
    return await handlers.get_expectations(ctx.pool, ring, who, group_id)


@router.put(
    "/relationships/{group_id}/expectations",
    response_model=ExpectationsOut,
    tags=["expectations"],
    responses=error_responses(403, 404, 409, 422),
)
async def set_expectations(
    group_id: str, body: ExpectationsIn, ctx: Ctx, ring: Ring, who: Participant
) -> ExpectationsOut:
    """The mentor sets them (any member in a group without one), whole: a text left out is cleared, a
    cadence left out is the program's. Publishes expectations.agreed when first set or when cadence or
    format change; agenda and boundaries never leave the service."""
    return await handlers.set_expectations(ctx.pool, ring, who, group_id, body)


@router.post(
    "/relationships/{group_id}/sessions",
    status_code=201,
    response_model=SessionOut,
    tags=["sessions"],
    responses=error_responses(404, 409, 422),
)
async def schedule(group_id: str, body: ScheduleIn, ctx: Ctx, ring: Ring, who: Participant) -> SessionOut:
    """A member schedules a session (within 90 days back and 366 days ahead). Publishes session.scheduled."""
    return await handlers.schedule(ctx.pool, ring, who, group_id, body)


@router.get(
    "/relationships/{group_id}/sessions",
    response_model=list[SessionOut],
    tags=["sessions"],
    responses=error_responses(404),
)
async def list_sessions(group_id: str, ctx: Ctx, ring: Ring, who: Anyone) -> list[SessionOut]:
    return await handlers.list_sessions(ctx.pool, ring, who, group_id)


@router.get("/sessions/{session_id}", response_model=SessionOut, tags=["sessions"], responses=error_responses(404))
async def get_session(session_id: str, ctx: Ctx, ring: Ring, who: Anyone) -> SessionOut:
    return await handlers.get_session(ctx.pool, ring, who, session_id)


@router.post(
    "/sessions/{session_id}/held",
    response_model=SessionOut,
    tags=["sessions"],
    responses=error_responses(404, 409, 422),
)
async def log_held(session_id: str, body: HeldIn, ctx: Ctx, ring: Ring, who: Participant) -> SessionOut:
    """Log the session as held with who attended and for how long. Publishes session.held (never notes)."""
    return await handlers.log_held(ctx.pool, ring, who, session_id, body)


@router.post(
    "/sessions/{session_id}/cancel",
    response_model=SessionOut,
    tags=["sessions"],
    responses=error_responses(404, 409, 422),
)
async def cancel(session_id: str, body: CancelIn, ctx: Ctx, ring: Ring, who: Participant) -> SessionOut:
    """Cancel with a reason (kept encrypted, for the members). Publishes session.cancelled (kind cancelled)."""
    return await handlers.cancel(ctx.pool, ring, who, session_id, body)


@router.post(
    "/sessions/{session_id}/reschedule",
    response_model=SessionOut,
    tags=["sessions"],
    responses=error_responses(404, 409, 422),
)
async def reschedule(session_id: str, body: RescheduleIn, ctx: Ctx, ring: Ring, who: Participant) -> SessionOut:
    """Move to a new time with a reason. Publishes session.cancelled (kind rescheduled, rescheduled_to)."""
    return await handlers.reschedule(ctx.pool, ring, who, session_id, body)


@router.post(
    "/relationships/{group_id}/goals",
    status_code=201,
    response_model=GoalOut,
    tags=["goals"],
    responses=error_responses(404, 409, 422),
)
async def set_goal(group_id: str, body: GoalIn, ctx: Ctx, ring: Ring, who: Participant) -> GoalOut:
    """A member sets their own goal in steps. Publishes goal.set (category and step count only)."""
    return await progress.set_goal(ctx.pool, ring, who, group_id, body)


@router.get(
    "/relationships/{group_id}/goals", response_model=list[GoalOut], tags=["goals"], responses=error_responses(404)
)
async def list_goals(group_id: str, ctx: Ctx, ring: Ring, who: Anyone) -> list[GoalOut]:
    """Every member's goals: wording for the group's members, counts only for staff."""
    return await progress.list_goals(ctx.pool, ring, who, group_id)


@router.post(
    "/goals/{goal_id}/steps/{step}/done",
    response_model=GoalOut,
    tags=["goals"],
    responses=error_responses(403, 404, 409),
)
async def tick_step(goal_id: str, step: Step, ctx: Ctx, ring: Ring, who: Participant) -> GoalOut:
    """The goal's owner ticks a step off. Publishes goal.progressed (counts only)."""
    return await progress.tick_step(ctx.pool, ring, who, goal_id, step)


@router.post(
    "/sessions/{session_id}/notes",
    status_code=201,
    response_model=NoteOut,
    tags=["notes"],
    responses=error_responses(404, 422),
)
async def add_note(session_id: str, body: NoteIn, ctx: Ctx, ring: Ring, who: Participant) -> NoteOut:
    """A private note or action item, encrypted at rest; readable by its author only unless shared."""
    return await progress.add_note(ctx.pool, ring, who, session_id, body)


@router.get(
    "/sessions/{session_id}/notes", response_model=list[NoteOut], tags=["notes"], responses=error_responses(404)
)
async def list_notes(session_id: str, ctx: Ctx, ring: Ring, who: Participant) -> list[NoteOut]:
    """The caller's own notes on the session and those shared with the group."""
    return await progress.list_notes(ctx.pool, ring, who, session_id)


@router.patch("/notes/{note_id}", response_model=NoteOut, tags=["notes"], responses=error_responses(403, 404, 422))
async def update_note(note_id: str, body: NotePatch, ctx: Ctx, ring: Ring, who: Participant) -> NoteOut:
    """The author shares or unshares a note, or ticks an action item off."""
    return await progress.update_note(ctx.pool, ring, who, note_id, body)
