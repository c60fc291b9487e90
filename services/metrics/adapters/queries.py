"""Reads of the metrics read models into domain facts, thresholds and alerts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.metrics.adapters.sql import snapshot
from services.metrics.domain.facts import (
    ClosureFact,
    Facts,
    FeedbackFact,
    GoalFact,
    GroupFact,
    MemberFact,
    OverrideFact,
    ParticipantFact,
    ProgramFact,
    RunFact,
    SessionFact,
    SlipFact,
    UnmatchedFact,
)
from services.metrics.domain.thresholds import Thresholds


def _in_scope(column: str = "program_id") -> str:
    """A scope is a handful of programs: a short array, so ``= ANY`` is cheap here (unlike a list of people)."""
    return f"($1::text[] IS NULL OR {column} = ANY($1::text[]))"


async def _groups(conn: asyncpg.Connection, where: str, *args: object) -> list[GroupFact]:
    """Groups with their members, closures and agreed cadence; ``where`` filters ``groups g``."""
    rows = await conn.fetch(f"SELECT * FROM groups g WHERE {where}", *args)
    ids = [r["group_id"] for r in rows]
    members: dict[str, list[MemberFact]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT group_id, participant_id, role FROM members WHERE group_id = ANY($1::text[]) ORDER BY group_id, role",
        ids,
    ):
        members[r["group_id"]].append(MemberFact(**dict(r)))
    closures: dict[str, list[ClosureFact]] = defaultdict(list)
    for r in await conn.fetch("SELECT group_id, reason, closed_at FROM closures WHERE group_id = ANY($1::text[])", ids):
        closures[r["group_id"]].append(ClosureFact(**dict(r)))
    agreed = {
        r["group_id"]: r["cadence_days"]
        for r in await conn.fetch(
            "SELECT group_id, cadence_days FROM expectations WHERE group_id = ANY($1::text[])", ids
        )
    }
    return [
        GroupFact(
            group_id=r["group_id"],
            program_id=r["program_id"],
            form=r["form"],
            fit=r["fit"],
            cadence_days=r["cadence_days"],
            matched_at=r["matched_at"],
            members=tuple(members[r["group_id"]]),
            agreed_cadence_days=agreed.get(r["group_id"]),
            closures=tuple(closures[r["group_id"]]),
        )
        for r in rows
    ]


async def load_facts(conn: asyncpg.Connection, program_ids: list[str] | None = None) -> Facts:
    """The facts of some programs (all with None), in one repeatable-read snapshot.

    Cross-program figures (mentor loads, people in several programs or relationships, mentees who became
    mentors) need every enrolment and group of the scope's people, whatever their program: those come in
    ``org_participants`` and ``org_groups``."""
    scope = program_ids
    async with snapshot(conn):
        programs = [
            ProgramFact(**dict(r)) for r in await conn.fetch(f"SELECT * FROM programs WHERE {_in_scope()}", scope)
        ]
        participants = [
            ParticipantFact(**dict(r))
            for r in await conn.fetch(f"SELECT * FROM participants WHERE {_in_scope()}", scope)
        ]
        groups = await _groups(conn, _in_scope("g.program_id"), scope)
        if scope is None:
            org_participants, org_groups = participants, groups
        else:
            people = list({p.participant_id for p in participants})
            org_participants = [
                ParticipantFact(**dict(r))
                for r in await conn.fetch(
                    "SELECT p.* FROM participants p JOIN unnest($1::text[]) AS u(id) ON p.participant_id = u.id", people
                )
            ]
            org_groups = await _groups(
                conn,
                "g.group_id IN (SELECT m.group_id FROM members m JOIN unnest($1::text[]) AS u(id)"
                " ON m.participant_id = u.id)",
                people,
            )

        async def rows(sql: str) -> list[asyncpg.Record]:
            return list(await conn.fetch(f"{sql} WHERE {_in_scope()}", scope))

        unmatched = [
            UnmatchedFact(**dict(r))
            for r in await rows("SELECT program_id, participant_id, reason_code, at FROM unmatched")
        ]
        runs = [RunFact(**dict(r)) for r in await rows("SELECT * FROM runs")]
        sessions = [
            SessionFact(**dict(r))
            for r in await rows("SELECT session_id, group_id, program_id, held_at, attendees FROM sessions_held")
        ]
        slips = [SlipFact(**dict(r)) for r in await rows("SELECT * FROM slips")]
        goals = [GoalFact(**dict(r)) for r in await rows("SELECT * FROM goals")]
        overrides = [
            OverrideFact(r["override_id"], r["program_id"], r["kind"], tuple(r["participant_ids"]), r["at"])
            for r in await rows("SELECT * FROM overrides")
        ]
        feedback = [
            FeedbackFact(**dict(r))
            for r in await rows(
                "SELECT feedback_id, group_id, program_id, respondent_role, given_at, session_rating, mentor_helps,"
                " mentee_engaged, pairing_fit, would_recommend FROM feedback"
            )
        ]
    return Facts(
        programs=programs,
        participants=participants,
        groups=groups,
        unmatched=unmatched,
        runs=runs,
        sessions=sessions,
        slips=slips,
        goals=goals,
        feedback=feedback,
        overrides=overrides,
        org_participants=org_participants,
        org_groups=org_groups,
    )


async def program_exists(conn: asyncpg.Connection, program_id: str) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM programs WHERE program_id = $1)", program_id))


async def open_alert_count(conn: asyncpg.Connection, program_ids: list[str] | None) -> int:
    return int(
        await conn.fetchval(f"SELECT count(*) FROM alerts WHERE cleared_at IS NULL AND {_in_scope()}", program_ids)
    )


async def program_ids(conn: asyncpg.Connection, form: str) -> list[str]:
    return [r["program_id"] for r in await conn.fetch("SELECT program_id FROM programs WHERE form = $1", form)]


async def thresholds(conn: asyncpg.Connection) -> dict[str, Thresholds]:
    return {
        r["program_id"]: Thresholds.model_validate_json(r["settings"])
        for r in await conn.fetch("SELECT * FROM thresholds")
    }


async def set_thresholds(conn: asyncpg.Connection, program_id: str, t: Thresholds) -> None:
    await conn.execute(
        "INSERT INTO thresholds (program_id, settings) VALUES ($1, $2::jsonb)"
        " ON CONFLICT (program_id) DO UPDATE SET settings=EXCLUDED.settings, updated_at=now()",
        program_id,
        t.model_dump_json(),
    )


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    kind: str
    subject: str
    program_id: str
    group_id: str | None
    mentor_id: str | None
    severity: str
    detail: str
    risk_score: float | None
    raised_at: datetime
    cleared_at: datetime | None


@dataclass(frozen=True)
class EvaluationRow:
    evaluations: int
    as_of: datetime
    started_at: datetime
    finished_at: datetime
    raised: int
    cleared: int


async def last_evaluation(conn: asyncpg.Connection) -> EvaluationRow | None:
    """The safety nets' last evaluation, None before the first one."""
    row = await conn.fetchrow(
        "SELECT evaluations, as_of, started_at, finished_at, raised, cleared FROM alert_evaluation"
    )
    return EvaluationRow(**dict(row)) if row else None


async def alerts(
    conn: asyncpg.Connection, *, open_only: bool, program_id: str | None = None, limit: int = 1000
) -> list[AlertRow]:
    rows = await conn.fetch(
        "SELECT * FROM alerts WHERE ($1::bool IS FALSE OR cleared_at IS NULL)"
        " AND ($2::text IS NULL OR program_id = $2) ORDER BY raised_at DESC, alert_id LIMIT $3",
        open_only,
        program_id,
        limit,
    )
    return [AlertRow(**dict(r)) for r in rows]
