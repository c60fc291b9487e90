"""Progress in a relationship: each member's goals, broken into steps and ticked off, and the notes and
action items members keep on sessions. All of it is the members' own words, sealed before it is stored;
goal.set and goal.progressed carry the category and step counts only, and notes publish nothing.

Load, decide (domain), save, as in :mod:`services.sessions.handlers`, under the same lock order: the
group's row first, then the goal's or the note's.
"""

from __future__ import annotations

import asyncpg

from contracts.base import utcnow
from contracts.envelope import Envelope
from contracts.events import GoalProgressed, GoalSet
from runtime.crypto import KeyRing
from runtime.errors import ForbiddenError, NotFoundError
from runtime.outbox import add_to_outbox
from services.sessions import handlers
from services.sessions.adapters import repository as repo
from services.sessions.adapters import sealed
from services.sessions.domain import model
from services.sessions.domain.commands import GoalIn, NoteIn, NotePatch
from services.sessions.domain.model import Caller
from services.sessions.views import GoalOut, NoteOut, StepOut

# --- goals -----------------------------------------------------------------------------------------


def goal_view(ring: KeyRing, g: repo.GoalRow, *, texts: bool) -> GoalOut:
    steps = [
        StepOut(
            position=i + 1,
            done=done_at is not None,
            wording=sealed.unseal(ring, sealed.STEP, *wording, g.goal_id, i + 1) if texts else None,
        )
        for i, (wording, done_at) in enumerate(g.steps)
    ]
    return GoalOut(
        goal_id=g.goal_id,
        group_id=g.group_id,
        participant_id=g.participant_id,
        category=g.category,
        wording=sealed.unseal(ring, sealed.GOAL, *g.wording, g.goal_id) if texts else None,
        steps=steps,
        steps_done=len(g.done_positions),
        steps_total=len(g.steps),
        set_at=g.set_at,
    )


async def set_goal(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, group_id: str, body: GoalIn) -> GoalOut:
    """A member sets their own goal; goal.set carries the category and the number of steps only."""
    goal_id, now = handlers.new_id("gol"), utcnow()
    async with pool.acquire() as conn, conn.transaction():
        rel = await handlers.relationship_or_404(conn, group_id, for_update=True)
        model.member_or_404(rel, caller.subject)
        model.writable(rel)
        row = repo.GoalRow(
            goal_id=goal_id,
            group_id=group_id,
            participant_id=caller.subject,
            category=body.category,
            wording=sealed.seal(ring, sealed.GOAL, body.wording, goal_id),
            steps=tuple(
                (sealed.seal(ring, sealed.STEP, text, goal_id, i + 1), None) for i, text in enumerate(body.steps)
            ),
            set_at=now,
        )
        await repo.insert_goal(conn, row)
        event = GoalSet(
            program_id=rel.program_id,
            group_id=group_id,
            goal_id=goal_id,
            participant_id=caller.subject,
            category=body.category,
            steps_total=len(body.steps),
            set_at=now,
        )
        await add_to_outbox(conn, Envelope(data=event))
    return goal_view(ring, row, texts=True)


async def list_goals(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, group_id: str) -> list[GoalOut]:
    async with pool.acquire() as conn:
        rel = await handlers.relationship_or_404(conn, group_id)
        member = model.reader_of(rel, caller) is not None
        rows = await repo.goals_of(conn, group_id)
    return [goal_view(ring, g, texts=member) for g in rows]


async def tick_step(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, goal_id: str, step: int) -> GoalOut:
    """Only the goal's owner ticks its steps (another member: 403; anyone else: 404)."""
    now = utcnow()
    async with pool.acquire() as conn, conn.transaction():
        found = await repo.get_goal(conn, goal_id)
        if found is None:
            raise NotFoundError(f"no goal {goal_id}", "goal_id", where="path")
        rel = await handlers.relationship_or_404(conn, found.group_id, for_update=True)
        try:
            model.member_or_404(rel, caller.subject)
        except NotFoundError:
            raise NotFoundError(f"no goal {goal_id}", "goal_id", where="path") from None
        if found.participant_id != caller.subject:
            raise ForbiddenError("only the goal's owner ticks its steps", "goal_id", where="path")
        model.writable(rel)
        goal = await repo.get_goal(conn, goal_id, for_update=True)
        assert goal is not None
        progress = model.tick(goal.done_positions, len(goal.steps), step, goal_id)
        await repo.tick_step(conn, goal_id, step, now)
        event = GoalProgressed(
            program_id=rel.program_id,
            group_id=rel.group_id,
            goal_id=goal_id,
            participant_id=caller.subject,
            steps_done=progress.steps_done,
            steps_total=progress.steps_total,
            progressed_at=now,
        )
        await add_to_outbox(conn, Envelope(data=event))
        after = await repo.get_goal(conn, goal_id)
    assert after is not None
    return goal_view(ring, after, texts=True)


# --- notes -----------------------------------------------------------------------------------------


def note_view(ring: KeyRing, n: repo.NoteRow) -> NoteOut:
    text = sealed.unseal(ring, sealed.NOTE, *n.text, n.note_id)
    assert text is not None
    return NoteOut(
        note_id=n.note_id,
        session_id=n.session_id,
        author_id=n.author_id,
        kind=n.kind,
        text=text,
        shared=n.shared,
        done=n.done,
        created_at=n.created_at,
    )


async def add_note(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, session_id: str, body: NoteIn) -> NoteOut:
    """A private note or action item; no event at all (a note is nobody else's business)."""
    note_id = handlers.new_id("not")
    async with pool.acquire() as conn, conn.transaction():
        _, rel = await handlers.session_and_group(conn, session_id)
        if caller.subject not in rel.active_ids:
            raise NotFoundError(f"no session {session_id}", "session_id", where="path")
        row = repo.NoteRow(
            note_id=note_id,
            session_id=session_id,
            group_id=rel.group_id,
            author_id=caller.subject,
            kind=body.kind,
            text=sealed.seal(ring, sealed.NOTE, body.text, note_id),
            shared=body.shared,
            done=False,
            created_at=utcnow(),
        )
        await repo.insert_note(conn, row)
    return note_view(ring, row)


async def list_notes(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, session_id: str) -> list[NoteOut]:
    """The caller's own notes and those shared with the group; a past member still reads their own."""
    async with pool.acquire() as conn:
        _, rel = await handlers.session_and_group(conn, session_id)
        if rel.member(caller.subject) is None:
            raise NotFoundError(f"no session {session_id}", "session_id", where="path")
        rows = await repo.notes_for(conn, session_id, caller.subject)
    active = caller.subject in rel.active_ids
    return [note_view(ring, n) for n in rows if active or n.author_id == caller.subject]


async def update_note(pool: asyncpg.Pool, ring: KeyRing, caller: Caller, note_id: str, body: NotePatch) -> NoteOut:
    """Only the author shares, unshares or ticks off a note (a member who sees a shared note: 403)."""
    async with pool.acquire() as conn, conn.transaction():
        n = await repo.get_note(conn, note_id, for_update=True)
        rel = await repo.get_relationship(conn, n.group_id) if n else None
        visible = (
            n is not None
            and rel is not None
            and (n.author_id == caller.subject or (n.shared and caller.subject in rel.active_ids))
        )
        if not visible or n is None:
            raise NotFoundError(f"no note {note_id}", "note_id", where="path")
        if n.author_id != caller.subject:
            raise ForbiddenError("only the author changes a note", "note_id", where="path")
        shared = n.shared if body.shared is None else body.shared
        done = n.done if body.done is None else body.done
        await repo.update_note(conn, note_id, shared=shared, done=done)
        after = await repo.get_note(conn, note_id)
    assert after is not None
    return note_view(ring, after)
