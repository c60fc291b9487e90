"""Reads of the metrics read models into domain facts, thresholds and alerts."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.metrics.domain.facts import (
    ClosureFact,
    Facts,
    FeedbackFact,
    GoalFact,
    GroupFact,
    MemberFact,
    ParticipantFact,
    ProgramFact,
    RunFact,
    SessionFact,
    SlipFact,
    UnmatchedFact,
)
from services.metrics.domain.thresholds import Thresholds


async def load_facts(conn: asyncpg.Connection) -> Facts:
    """Everything, in one repeatable-read snapshot; :meth:`Facts.only` narrows it to a scope.

    Loading the whole organisation keeps one code path for every scope and lets cross-program figures
    (loads, people in several programs) be right; it is bounded by the organisation's size."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        programs = [ProgramFact(**dict(r)) for r in await conn.fetch("SELECT * FROM programs")]
        participants = [ParticipantFact(**dict(r)) for r in await conn.fetch("SELECT * FROM participants")]
        members: dict[str, list[MemberFact]] = defaultdict(list)
        for r in await conn.fetch("SELECT group_id, participant_id, role FROM members ORDER BY group_id, role"):
            members[r["group_id"]].append(MemberFact(**dict(r)))
        closures: dict[str, list[ClosureFact]] = defaultdict(list)
        for r in await conn.fetch("SELECT group_id, reason, closed_at FROM closures"):
            closures[r["group_id"]].append(ClosureFact(**dict(r)))
        agreed = {r["group_id"]: r["cadence_days"] for r in await conn.fetch("SELECT * FROM expectations")}
        groups = [
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
            for r in await conn.fetch("SELECT * FROM groups")
        ]
        unmatched = [
            UnmatchedFact(**dict(r))
            for r in await conn.fetch("SELECT program_id, participant_id, reason_code, at FROM unmatched")
        ]
        runs = [RunFact(**dict(r)) for r in await conn.fetch("SELECT * FROM runs")]
        sessions = [
            SessionFact(**dict(r))
            for r in await conn.fetch("SELECT session_id, group_id, program_id, held_at, attendees FROM sessions_held")
        ]
        slips = [SlipFact(**dict(r)) for r in await conn.fetch("SELECT * FROM slips")]
        goals = [GoalFact(**dict(r)) for r in await conn.fetch("SELECT * FROM goals")]
        feedback = [
            FeedbackFact(**dict(r))
            for r in await conn.fetch(
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
        org_participants=participants,
        org_groups=groups,
    )


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
