"""Postgres access for feedback: plain SQL, one function per question, inside the caller's transaction."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from contracts.events import (
    GroupMatched,
    ParticipantWithdrawn,
    QuestionScore,
    RelationshipClosed,
    SessionHeld,
    SurveyKind,
)
from contracts.policy import Role
from runtime.crypto import Sealed
from services.feedback.domain.rules import HeldSession, Membership
from services.feedback.domain.surveys import Question, Survey

# --- surveys -----------------------------------------------------------------------------------


def _survey(row: asyncpg.Record) -> Survey:
    return Survey(
        survey_id=row["survey_id"],
        version=row["version"],
        kind=SurveyKind(row["kind"]),
        name=row["name"],
        questions=[Question.model_validate(q) for q in json.loads(row["questions"])],
        every_days=row["every_days"],
        active=row["active"],
        created_at=row["created_at"],
        created_by=row["created_by"],
    )


async def insert_survey(conn: asyncpg.Connection, s: Survey) -> None:
    await conn.execute(
        "INSERT INTO surveys (survey_id, version, kind, name, questions, every_days, active, created_at, created_by)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9)",
        s.survey_id, s.version, s.kind.value, s.name, json.dumps([q.model_dump(mode="json") for q in s.questions]),
        s.every_days, s.active, s.created_at, s.created_by,
    )  # fmt: skip


async def lock_survey(conn: asyncpg.Connection, survey_id: str) -> None:
    """Serialises edits of one survey, so two at once make versions n+1 and n+2, never two n+1."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"survey:{survey_id}")


async def get_survey(conn: asyncpg.Connection, survey_id: str, version: int | None = None) -> Survey | None:
    """One version, or the latest when ``version`` is None."""
    row = await conn.fetchrow(
        "SELECT * FROM surveys WHERE survey_id = $1 AND ($2::int IS NULL OR version = $2)"
        " ORDER BY version DESC LIMIT 1",
        survey_id, version,
    )  # fmt: skip
    return _survey(row) if row else None


async def survey_versions(conn: asyncpg.Connection, survey_id: str) -> list[Survey]:
    rows = await conn.fetch("SELECT * FROM surveys WHERE survey_id = $1 ORDER BY version", survey_id)
    return [_survey(r) for r in rows]


async def current_surveys(conn: asyncpg.Connection, *, active_only: bool = False) -> list[Survey]:
    """The latest version of every survey (of the active ones only, when asked)."""
    rows = await conn.fetch("SELECT DISTINCT ON (survey_id) * FROM surveys ORDER BY survey_id, version DESC")
    return [s for s in map(_survey, rows) if s.active or not active_only]


# --- what events taught ------------------------------------------------------------------------


async def save_group(conn: asyncpg.Connection, e: GroupMatched) -> None:
    """A group and its members as matched; a repeated group.matched for the group sets them anew."""
    await conn.execute(
        "INSERT INTO groups (group_id, program_id, form, matched_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (group_id) DO UPDATE SET program_id = EXCLUDED.program_id, form = EXCLUDED.form,"
        " matched_at = EXCLUDED.matched_at",
        e.group_id, e.program_id, e.form.value, e.matched_at,
    )  # fmt: skip
    await conn.execute("DELETE FROM group_members WHERE group_id = $1", e.group_id)
    await conn.executemany(
        "INSERT INTO group_members (group_id, participant_id, role) VALUES ($1, $2, $3)",
        [(e.group_id, m.participant_id, m.role.value) for m in e.members],
    )


async def save_session(conn: asyncpg.Connection, e: SessionHeld) -> None:
    await conn.execute(
        "INSERT INTO sessions_held (session_id, group_id, program_id, held_at) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (session_id) DO UPDATE SET group_id = EXCLUDED.group_id, held_at = EXCLUDED.held_at",
        e.session_id, e.group_id, e.program_id, e.held_at,
    )  # fmt: skip
    await conn.execute("DELETE FROM session_attendees WHERE session_id = $1", e.session_id)
    await conn.executemany(
        "INSERT INTO session_attendees (session_id, participant_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        [(e.session_id, a) for a in e.attendees],
    )


async def save_closure(conn: asyncpg.Connection, e: RelationshipClosed) -> None:
    """The first final closure of a group is the one its program survey dates from."""
    await conn.execute(
        "INSERT INTO closures (group_id, reason, term, closed_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        e.group_id, e.reason.value, e.term, e.closed_at,
    )  # fmt: skip


async def save_withdrawal(conn: asyncpg.Connection, e: ParticipantWithdrawn) -> None:
    await conn.execute(
        "INSERT INTO withdrawals (program_id, participant_id, withdrawn_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (program_id, participant_id) DO UPDATE SET withdrawn_at = EXCLUDED.withdrawn_at",
        e.program_id, e.participant_id, e.withdrawn_at,
    )  # fmt: skip


# A member's part ends when the group closes or when they left the program after being matched into it.
_MEMBERSHIP = (
    "SELECT g.group_id, g.program_id, m.role, g.matched_at, LEAST(c.closed_at, w.withdrawn_at) AS closed_at"
    " FROM group_members m JOIN groups g USING (group_id) LEFT JOIN closures c USING (group_id)"
    " LEFT JOIN withdrawals w ON w.program_id = g.program_id AND w.participant_id = m.participant_id"
    " AND w.withdrawn_at >= g.matched_at"
)


def _membership(row: asyncpg.Record) -> Membership:
    return Membership(row["group_id"], row["program_id"], Role(row["role"]), row["matched_at"], row["closed_at"])


async def memberships(conn: asyncpg.Connection, participant_id: str) -> list[Membership]:
    rows = await conn.fetch(_MEMBERSHIP + " WHERE m.participant_id = $1 ORDER BY g.group_id", participant_id)
    return [_membership(r) for r in rows]


async def membership(conn: asyncpg.Connection, group_id: str, participant_id: str) -> Membership | None:
    row = await conn.fetchrow(
        _MEMBERSHIP + " WHERE m.group_id = $1 AND m.participant_id = $2", group_id, participant_id
    )
    return _membership(row) if row else None


async def held_session(conn: asyncpg.Connection, session_id: str) -> HeldSession | None:
    row = await conn.fetchrow("SELECT * FROM sessions_held WHERE session_id = $1", session_id)
    if row is None:
        return None
    attendees = await conn.fetch("SELECT participant_id FROM session_attendees WHERE session_id = $1", session_id)
    return HeldSession(row["session_id"], row["group_id"], row["held_at"], frozenset(a[0] for a in attendees))


async def attended_since(conn: asyncpg.Connection, participant_id: str, since: datetime) -> list[HeldSession]:
    """Sessions the participant attended, held since ``since`` (their other attendees are not loaded)."""
    rows = await conn.fetch(
        "SELECT s.session_id, s.group_id, s.held_at FROM session_attendees a JOIN sessions_held s USING (session_id)"
        " WHERE a.participant_id = $1 AND s.held_at >= $2 ORDER BY s.held_at",
        participant_id, since,
    )  # fmt: skip
    return [HeldSession(r["session_id"], r["group_id"], r["held_at"], frozenset({participant_id})) for r in rows]


# --- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerRow:
    feedback_id: uuid.UUID
    survey_id: str
    instance_key: str
    respondent_id: str
    survey_version: int
    kind: SurveyKind
    program_id: str
    group_id: str
    session_id: str | None
    period: int | None
    respondent_role: Role
    scores: list[QuestionScore]
    comment: Sealed | None
    revision: int
    given_at: datetime


def _answer(row: asyncpg.Record) -> AnswerRow:
    sealed = Sealed(row["comment_key_id"], bytes(row["comment_blob"])) if row["comment_key_id"] else None
    return AnswerRow(
        feedback_id=row["feedback_id"],
        survey_id=row["survey_id"],
        instance_key=row["instance_key"],
        respondent_id=row["respondent_id"],
        survey_version=row["survey_version"],
        kind=SurveyKind(row["kind"]),
        program_id=row["program_id"],
        group_id=row["group_id"],
        session_id=row["session_id"],
        period=row["period"],
        respondent_role=Role(row["respondent_role"]),
        scores=[QuestionScore.model_validate(s) for s in json.loads(row["scores"])],
        comment=sealed,
        revision=row["revision"],
        given_at=row["given_at"],
    )


async def lock_instance(conn: asyncpg.Connection, survey_id: str, instance_key: str, respondent_id: str) -> None:
    """Serialises two answers of one respondent to one instance: the second sees the first and replaces it."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"answer:{survey_id}:{instance_key}:{respondent_id}"
    )


async def find_answer(
    conn: asyncpg.Connection, survey_id: str, instance_key: str, respondent_id: str
) -> AnswerRow | None:
    row = await conn.fetchrow(
        "SELECT * FROM answers WHERE survey_id = $1 AND instance_key = $2 AND respondent_id = $3",
        survey_id, instance_key, respondent_id,
    )  # fmt: skip
    return _answer(row) if row else None


async def save_answer(conn: asyncpg.Connection, a: AnswerRow) -> None:
    """Insert, or replace the earlier answer of the same instance and respondent (same feedback id)."""
    await conn.execute(
        "INSERT INTO answers (feedback_id, survey_id, instance_key, respondent_id, survey_version, kind, program_id,"
        " group_id, session_id, period, respondent_role, scores, comment_key_id, comment_blob, revision, given_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15, $16)"
        " ON CONFLICT (feedback_id) DO UPDATE SET survey_version = EXCLUDED.survey_version,"
        " scores = EXCLUDED.scores, comment_key_id = EXCLUDED.comment_key_id, comment_blob = EXCLUDED.comment_blob,"
        " revision = EXCLUDED.revision, given_at = EXCLUDED.given_at",
        a.feedback_id, a.survey_id, a.instance_key, a.respondent_id, a.survey_version, a.kind.value, a.program_id,
        a.group_id, a.session_id, a.period, a.respondent_role.value,
        json.dumps([s.model_dump(mode="json") for s in a.scores]),
        a.comment.key_id if a.comment else None, a.comment.blob if a.comment else None, a.revision, a.given_at,
    )  # fmt: skip


async def answered_keys(conn: asyncpg.Connection, respondent_id: str) -> set[tuple[str, str]]:
    rows = await conn.fetch("SELECT survey_id, instance_key FROM answers WHERE respondent_id = $1", respondent_id)
    return {(r["survey_id"], r["instance_key"]) for r in rows}


async def answers_of(conn: asyncpg.Connection, respondent_id: str) -> list[AnswerRow]:
    rows = await conn.fetch("SELECT * FROM answers WHERE respondent_id = $1 ORDER BY given_at DESC", respondent_id)
    return [_answer(r) for r in rows]


async def comments_of_program(conn: asyncpg.Connection, program_id: str, *, limit: int) -> list[AnswerRow]:
    """The latest answers of a program that carry a comment, newest first."""
    rows = await conn.fetch(
        "SELECT * FROM answers WHERE program_id = $1 AND comment_blob IS NOT NULL"
        " ORDER BY given_at DESC, feedback_id LIMIT $2",
        program_id, limit,
    )  # fmt: skip
    return [_answer(r) for r in rows]


async def comments_to_reseal(conn: asyncpg.Connection, current_key_id: str, limit: int) -> list[AnswerRow]:
    """A batch of answers whose comment is sealed with an older key, locked; others' batches are skipped."""
    rows = await conn.fetch(
        "SELECT * FROM answers WHERE comment_key_id IS NOT NULL AND comment_key_id <> $1"
        " ORDER BY feedback_id LIMIT $2 FOR UPDATE SKIP LOCKED",
        current_key_id, limit,
    )  # fmt: skip
    return [_answer(r) for r in rows]


async def set_comment(conn: asyncpg.Connection, feedback_id: uuid.UUID, sealed: Sealed) -> None:
    await conn.execute(
        "UPDATE answers SET comment_key_id = $2, comment_blob = $3 WHERE feedback_id = $1",
        feedback_id, sealed.key_id, sealed.blob,
    )  # fmt: skip
