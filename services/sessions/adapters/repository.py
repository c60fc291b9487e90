"""Postgres access for sessions: plain SQL, one function per question, inside the caller's transaction.

Texts arrive here already sealed (``(key id, blob)`` pairs) and leave sealed; this module never sees a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from contracts.events import ClosureReason, GoalCategory, MeetingFormat
from contracts.policy import Form, Role
from services.sessions.domain.model import (
    Member,
    NoteKind,
    ProgramInfo,
    Relationship,
    RelationshipStatus,
    SessionStatus,
)

SealedPair = tuple[str | None, bytes | None]

# --- programs and withdrawals ---------------------------------------------------------------------


async def upsert_program(conn: asyncpg.Connection, p: ProgramInfo) -> None:
    await conn.execute(
        "INSERT INTO programs (program_id, form, cadence_days, mentors_per_group, members_min, status)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (program_id) DO UPDATE SET form = EXCLUDED.form,"
        " cadence_days = EXCLUDED.cadence_days, mentors_per_group = EXCLUDED.mentors_per_group,"
        " members_min = EXCLUDED.members_min, status = EXCLUDED.status",
        p.program_id,
        p.form.value,
        p.cadence_days,
        p.mentors_per_group,
        p.members_min,
        p.status,
    )


async def get_program(conn: asyncpg.Connection, program_id: str) -> ProgramInfo | None:
    row = await conn.fetchrow("SELECT * FROM programs WHERE program_id = $1", program_id)
    if row is None:
        return None
    return ProgramInfo(
        row["program_id"],
        Form(row["form"]),
        row["cadence_days"],
        row["mentors_per_group"],
        row["members_min"],
        row["status"],
    )


async def follow_program_cadence(conn: asyncpg.Connection, program_id: str, cadence_days: int) -> None:
    """Open relationships without expectations of their own take the program's (new) cadence."""
    await conn.execute(
        "UPDATE relationships r SET cadence_days = $2 WHERE program_id = $1 AND status = 'open'"
        " AND cadence_days <> $2 AND NOT EXISTS (SELECT 1 FROM expectations e WHERE e.group_id = r.group_id)",
        program_id,
        cadence_days,
    )


async def record_withdrawal(conn: asyncpg.Connection, program_id: str, participant_id: str) -> None:
    await conn.execute(
        "INSERT INTO withdrawals (program_id, participant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        program_id,
        participant_id,
    )


async def forget_withdrawal(conn: asyncpg.Connection, program_id: str, participant_id: str) -> None:
    await conn.execute(
        "DELETE FROM withdrawals WHERE program_id = $1 AND participant_id = $2", program_id, participant_id
    )


async def withdrawn_among(conn: asyncpg.Connection, program_id: str, ids: Sequence[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT participant_id FROM withdrawals WHERE program_id = $1 AND participant_id = ANY($2::text[])",
        program_id,
        list(ids),
    )
    return {r["participant_id"] for r in rows}


# --- relationships --------------------------------------------------------------------------------


async def insert_relationship(conn: asyncpg.Connection, rel: Relationship, matched_at: datetime) -> bool:
    """False when the group is already known (a group.matched seen before under another event id)."""
    inserted = await conn.fetchval(
        "INSERT INTO relationships (group_id, program_id, form, term, status, started_on, cadence_days, matched_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (group_id) DO NOTHING RETURNING 1",
        rel.group_id,
        rel.program_id,
        rel.form.value,
        rel.term,
        rel.status.value,
        rel.started_on,
        rel.cadence_days,
        matched_at,
    )
    if not inserted:
        return False
    await conn.executemany(
        "INSERT INTO members (group_id, participant_id, role, active, position) VALUES ($1, $2, $3, $4, $5)",
        [(rel.group_id, m.participant_id, m.role.value, m.active, i) for i, m in enumerate(rel.members)],
    )
    return True


def _relationship(row: asyncpg.Record, members: list[asyncpg.Record]) -> Relationship:
    return Relationship(
        group_id=row["group_id"],
        program_id=row["program_id"],
        form=Form(row["form"]),
        term=row["term"],
        status=RelationshipStatus(row["status"]),
        started_on=row["started_on"],
        cadence_days=row["cadence_days"],
        members=tuple(Member(m["participant_id"], Role(m["role"]), m["active"]) for m in members),
        outcome=ClosureReason(row["outcome"]) if row["outcome"] else None,
    )


async def _with_members(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[Relationship]:
    if not rows:
        return []
    members = await conn.fetch(
        "SELECT * FROM members WHERE group_id = ANY($1::text[]) ORDER BY group_id, position",
        [r["group_id"] for r in rows],
    )
    by_group: dict[str, list[asyncpg.Record]] = {}
    for m in members:
        by_group.setdefault(m["group_id"], []).append(m)
    return [_relationship(r, by_group.get(r["group_id"], [])) for r in rows]


async def get_relationship(conn: asyncpg.Connection, group_id: str, *, for_update: bool = False) -> Relationship | None:
    """``for_update`` locks the relationship row: every change to a group (and its events) holds it, so
    a group's events commit in the order of their outbox ids."""
    sql = "SELECT * FROM relationships WHERE group_id = $1" + (" FOR UPDATE" if for_update else "")
    row = await conn.fetchrow(sql, group_id)
    return (await _with_members(conn, [row]))[0] if row else None


async def relationships_of_member(conn: asyncpg.Connection, participant_id: str) -> list[Relationship]:
    rows = await conn.fetch(
        "SELECT r.* FROM relationships r JOIN members m USING (group_id)"
        " WHERE m.participant_id = $1 ORDER BY r.matched_at, r.group_id",
        participant_id,
    )
    return await _with_members(conn, rows)


async def relationships_of_program(
    conn: asyncpg.Connection,
    program_id: str,
    *,
    status: RelationshipStatus | None = None,
    for_update: bool = False,
    after: str | None = None,
    limit: int | None = None,
) -> list[Relationship]:
    """In group id order; ``after`` and ``limit`` page through a large program."""
    sql = (
        "SELECT * FROM relationships WHERE program_id = $1 AND ($2::text IS NULL OR status = $2)"
        " AND ($3::text IS NULL OR group_id > $3) ORDER BY group_id LIMIT $4"
    )
    rows = await conn.fetch(
        sql + (" FOR UPDATE" if for_update else ""), program_id, status.value if status else None, after, limit
    )
    return await _with_members(conn, rows)


async def open_relationships_of(conn: asyncpg.Connection, program_id: str, participant_id: str) -> list[Relationship]:
    """The open groups of a program in which this person is an active member, locked, in id order."""
    rows = await conn.fetch(
        "SELECT r.* FROM relationships r JOIN members m USING (group_id) WHERE r.program_id = $1"
        " AND m.participant_id = $2 AND m.active AND r.status = 'open' ORDER BY r.group_id FOR UPDATE OF r",
        program_id,
        participant_id,
    )
    return await _with_members(conn, rows)


async def set_cadence(conn: asyncpg.Connection, group_id: str, cadence_days: int) -> None:
    await conn.execute("UPDATE relationships SET cadence_days = $2 WHERE group_id = $1", group_id, cadence_days)


async def end_membership(conn: asyncpg.Connection, group_id: str, participant_id: str) -> None:
    await conn.execute(
        "UPDATE members SET active = false WHERE group_id = $1 AND participant_id = $2", group_id, participant_id
    )


async def close_relationship(conn: asyncpg.Connection, group_id: str, outcome: ClosureReason, at: datetime) -> None:
    await conn.execute(
        "UPDATE relationships SET status = 'closed', outcome = $2, closed_at = $3 WHERE group_id = $1",
        group_id,
        outcome.value,
        at,
    )


async def next_term(conn: asyncpg.Connection, group_id: str) -> int:
    term: int = await conn.fetchval(
        "UPDATE relationships SET term = term + 1 WHERE group_id = $1 RETURNING term", group_id
    )
    return term


# --- expectations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationsRow:
    cadence_days: int
    format: MeetingFormat
    agenda: SealedPair
    boundaries: SealedPair
    updated_by: str
    updated_at: datetime


async def get_expectations(conn: asyncpg.Connection, group_id: str) -> ExpectationsRow | None:
    row = await conn.fetchrow("SELECT * FROM expectations WHERE group_id = $1", group_id)
    if row is None:
        return None
    return ExpectationsRow(
        row["cadence_days"],
        MeetingFormat(row["format"]),
        (row["agenda_key"], row["agenda_blob"]),
        (row["boundaries_key"], row["boundaries_blob"]),
        row["updated_by"],
        row["updated_at"],
    )


async def put_expectations(conn: asyncpg.Connection, group_id: str, e: ExpectationsRow) -> None:
    await conn.execute(
        "INSERT INTO expectations (group_id, cadence_days, format, agenda_key, agenda_blob, boundaries_key,"
        " boundaries_blob, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (group_id) DO UPDATE SET cadence_days = EXCLUDED.cadence_days, format = EXCLUDED.format,"
        " agenda_key = EXCLUDED.agenda_key, agenda_blob = EXCLUDED.agenda_blob,"
        " boundaries_key = EXCLUDED.boundaries_key, boundaries_blob = EXCLUDED.boundaries_blob,"
        " updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at",
        group_id,
        e.cadence_days,
        e.format.value,
        *e.agenda,
        *e.boundaries,
        e.updated_by,
        e.updated_at,
    )


# --- sessions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    session_id: str
    group_id: str
    term: int
    status: SessionStatus
    scheduled_for: datetime
    duration_minutes: int
    topic: SealedPair
    guest_id: str | None
    held_at: datetime | None
    attendees: tuple[str, ...]
    reschedules: int
    reason: SealedPair
    created_by: str


def _session(r: asyncpg.Record) -> SessionRow:
    return SessionRow(
        r["session_id"],
        r["group_id"],
        r["term"],
        SessionStatus(r["status"]),
        r["scheduled_for"],
        r["duration_minutes"],
        (r["topic_key"], r["topic_blob"]),
        r["guest_id"],
        r["held_at"],
        tuple(r["attendees"]),
        r["reschedules"],
        (r["reason_key"], r["reason_blob"]),
        r["created_by"],
    )


async def insert_session(conn: asyncpg.Connection, s: SessionRow) -> None:
    await conn.execute(
        "INSERT INTO sessions (session_id, group_id, term, status, scheduled_for, duration_minutes, topic_key,"
        " topic_blob, guest_id, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        s.session_id,
        s.group_id,
        s.term,
        s.status.value,
        s.scheduled_for,
        s.duration_minutes,
        *s.topic,
        s.guest_id,
        s.created_by,
    )


async def get_session(conn: asyncpg.Connection, session_id: str, *, for_update: bool = False) -> SessionRow | None:
    sql = "SELECT * FROM sessions WHERE session_id = $1" + (" FOR UPDATE" if for_update else "")
    row = await conn.fetchrow(sql, session_id)
    return _session(row) if row else None


async def sessions_of(conn: asyncpg.Connection, group_id: str) -> list[SessionRow]:
    rows = await conn.fetch("SELECT * FROM sessions WHERE group_id = $1 ORDER BY scheduled_for, session_id", group_id)
    return [_session(r) for r in rows]


async def mark_held(
    conn: asyncpg.Connection, session_id: str, held_at: datetime, duration: int, attendees: Sequence[str]
) -> None:
    await conn.execute(
        "UPDATE sessions SET status = 'held', held_at = $2, duration_minutes = $3, attendees = $4::text[],"
        " updated_at = now() WHERE session_id = $1",
        session_id,
        held_at,
        duration,
        list(attendees),
    )


async def mark_cancelled(conn: asyncpg.Connection, session_id: str, reason: SealedPair) -> None:
    await conn.execute(
        "UPDATE sessions SET status = 'cancelled', reason_key = $2, reason_blob = $3, updated_at = now()"
        " WHERE session_id = $1",
        session_id,
        *reason,
    )


async def cancel_scheduled(conn: asyncpg.Connection, group_id: str) -> list[str]:
    """Cancel every still-scheduled session of a group (it ends); their ids, in time order."""
    rows = await conn.fetch(
        "UPDATE sessions SET status = 'cancelled', updated_at = now() WHERE group_id = $1 AND status = 'scheduled'"
        " RETURNING session_id, scheduled_for",
        group_id,
    )
    return [r["session_id"] for r in sorted(rows, key=lambda r: (r["scheduled_for"], r["session_id"]))]


async def move(conn: asyncpg.Connection, session_id: str, to: datetime, reason: SealedPair) -> None:
    """The last reason is kept (sealed); the count of moves is what reveals a fading relationship."""
    await conn.execute(
        "UPDATE sessions SET scheduled_for = $2, reason_key = $3, reason_blob = $4, reschedules = reschedules + 1,"
        " updated_at = now() WHERE session_id = $1",
        session_id,
        to,
        *reason,
    )


# --- goals ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoalRow:
    goal_id: str
    group_id: str
    participant_id: str
    category: GoalCategory
    wording: SealedPair
    steps: tuple[tuple[SealedPair, datetime | None], ...]
    set_at: datetime

    @property
    def done_positions(self) -> frozenset[int]:
        return frozenset(i + 1 for i, (_, done_at) in enumerate(self.steps) if done_at is not None)


async def insert_goal(conn: asyncpg.Connection, g: GoalRow) -> None:
    await conn.execute(
        "INSERT INTO goals (goal_id, group_id, participant_id, category, wording_key, wording_blob, steps_total,"
        " set_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        g.goal_id,
        g.group_id,
        g.participant_id,
        g.category.value,
        *g.wording,
        len(g.steps),
        g.set_at,
    )
    await conn.executemany(
        "INSERT INTO goal_steps (goal_id, position, wording_key, wording_blob) VALUES ($1, $2, $3, $4)",
        [(g.goal_id, i + 1, *wording) for i, (wording, _) in enumerate(g.steps)],
    )


async def _goals(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[GoalRow]:
    steps = await conn.fetch(
        "SELECT * FROM goal_steps WHERE goal_id = ANY($1::text[]) ORDER BY goal_id, position",
        [r["goal_id"] for r in rows],
    )
    by_goal: dict[str, list[tuple[SealedPair, datetime | None]]] = {}
    for s in steps:
        by_goal.setdefault(s["goal_id"], []).append(((s["wording_key"], s["wording_blob"]), s["done_at"]))
    return [
        GoalRow(
            r["goal_id"],
            r["group_id"],
            r["participant_id"],
            GoalCategory(r["category"]),
            (r["wording_key"], r["wording_blob"]),
            tuple(by_goal.get(r["goal_id"], [])),
            r["set_at"],
        )
        for r in rows
    ]


async def goals_of(conn: asyncpg.Connection, group_id: str) -> list[GoalRow]:
    rows = await conn.fetch("SELECT * FROM goals WHERE group_id = $1 ORDER BY set_at, goal_id", group_id)
    return await _goals(conn, rows)


async def get_goal(conn: asyncpg.Connection, goal_id: str, *, for_update: bool = False) -> GoalRow | None:
    row = await conn.fetchrow("SELECT * FROM goals WHERE goal_id = $1" + (" FOR UPDATE" if for_update else ""), goal_id)
    return (await _goals(conn, [row]))[0] if row else None


async def tick_step(conn: asyncpg.Connection, goal_id: str, position: int, at: datetime) -> None:
    await conn.execute("UPDATE goal_steps SET done_at = $3 WHERE goal_id = $1 AND position = $2", goal_id, position, at)


# --- notes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteRow:
    note_id: str
    session_id: str
    group_id: str
    author_id: str
    kind: NoteKind
    text: SealedPair
    shared: bool
    done: bool
    created_at: datetime


def _note(r: asyncpg.Record) -> NoteRow:
    return NoteRow(
        r["note_id"],
        r["session_id"],
        r["group_id"],
        r["author_id"],
        NoteKind(r["kind"]),
        (r["text_key"], r["text_blob"]),
        r["shared"],
        r["done"],
        r["created_at"],
    )


async def insert_note(conn: asyncpg.Connection, n: NoteRow) -> None:
    await conn.execute(
        "INSERT INTO notes (note_id, session_id, group_id, author_id, kind, text_key, text_blob, shared, created_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        n.note_id,
        n.session_id,
        n.group_id,
        n.author_id,
        n.kind.value,
        *n.text,
        n.shared,
        n.created_at,
    )


async def notes_for(conn: asyncpg.Connection, session_id: str, reader: str) -> list[NoteRow]:
    """The notes of a session this reader may see: their own, and the ones shared with the group."""
    rows = await conn.fetch(
        "SELECT * FROM notes WHERE session_id = $1 AND (author_id = $2 OR shared) ORDER BY created_at, note_id",
        session_id,
        reader,
    )
    return [_note(r) for r in rows]


async def get_note(conn: asyncpg.Connection, note_id: str, *, for_update: bool = False) -> NoteRow | None:
    row = await conn.fetchrow("SELECT * FROM notes WHERE note_id = $1" + (" FOR UPDATE" if for_update else ""), note_id)
    return _note(row) if row else None


async def update_note(conn: asyncpg.Connection, note_id: str, *, shared: bool, done: bool) -> None:
    await conn.execute(
        "UPDATE notes SET shared = $2, done = $3, updated_at = now() WHERE note_id = $1", note_id, shared, done
    )
