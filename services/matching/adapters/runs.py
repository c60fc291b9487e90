"""Postgres access for matching runs, groups and overrides."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from contracts.envelope import Envelope
from contracts.events import MatchOverrideRecorded, OverrideKind, ParticipantProfile
from contracts.policy import Form, MatchingPolicy
from runtime.outbox import add_to_outbox
from services.matching.domain.model import MatchingInput


class ProgramView:
    __slots__ = ("cadence_days", "form", "name", "policy", "program_id", "status")

    def __init__(self, row: asyncpg.Record) -> None:
        self.program_id: str = row["program_id"]
        self.name: str = row["name"]
        self.form = Form(row["form"])
        self.cadence_days: int = row["cadence_days"]
        self.policy = MatchingPolicy.model_validate_json(row["policy"])
        self.status: str = row["status"]


async def get_program(conn: asyncpg.Connection, program_id: str) -> ProgramView | None:
    row = await conn.fetchrow("SELECT * FROM programs WHERE program_id = $1", program_id)
    return ProgramView(row) if row else None


async def unmatched_pool(conn: asyncpg.Connection, program_id: str) -> list[ParticipantProfile]:
    """Active participants not yet in an active group of this program (mentors always stay in:
    they may take more groups while capacity lasts).

    The program's placed members are listed once (the active groups by the program's index), then
    left out by an anti-join: written as a correlated ``NOT EXISTS``, PostgreSQL planned a sequential
    scan of every program's groups per pool row, 2,000 x 37,000 rows, and a run of a new program on the
    demo's accumulated database waited more than 30 s for this statement (5 ms now)."""
    rows = await conn.fetch(
        "WITH placed AS (SELECT DISTINCT m FROM groups g, unnest(g.member_ids) AS m"
        "  WHERE g.program_id = $1 AND g.status = 'active')"
        " SELECT p.profile FROM pool p LEFT JOIN placed ON placed.m = p.participant_id"
        " WHERE p.program_id = $1 AND p.active AND (p.role = 'mentor' OR placed.m IS NULL)"
        " ORDER BY p.participant_id",
        program_id,
    )
    return [ParticipantProfile.model_validate_json(r["profile"]) for r in rows]


async def mentor_loads(conn: asyncpg.Connection, mentor_ids: Sequence[str]) -> dict[str, int]:
    """Slots each mentor already uses in active groups, across every program."""
    rows = await conn.fetch(
        "SELECT m AS mentor_id, count(*) AS n FROM groups, unnest(mentor_ids) AS m"
        " WHERE status = 'active' AND m = ANY($1::text[]) GROUP BY m",
        list(mentor_ids),
    )
    return {r["mentor_id"]: int(r["n"]) for r in rows}


async def mentor_capacities(conn: asyncpg.Connection, mentor_ids: Sequence[str]) -> dict[str, int]:
    """A person's capacity is theirs across programs: the most recently declared one counts. A row
    without the column (written by a release before migration 0006, during a rolling upgrade) has it in
    its profile, serialised by pydantic, so always an integer there."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (participant_id) participant_id,"
        " COALESCE(capacity, (profile->>'capacity')::int) AS capacity FROM pool"
        " WHERE participant_id = ANY($1::text[]) AND role = 'mentor' AND active"
        " ORDER BY participant_id, updated_at DESC",
        list(mentor_ids),
    )
    return {r["participant_id"]: int(r["capacity"] or 0) for r in rows}


async def active_overrides(conn: asyncpg.Connection, program_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT override_id, kind, participant_ids, reason, created_by FROM overrides"
        " WHERE program_id = $1 AND active ORDER BY override_id",
        program_id,
    )
    return [dict(r) for r in rows]


async def insert_run(
    conn: asyncpg.Connection, run_id: str, program_id: str, *, dry_run: bool, seed: int, policy: MatchingPolicy,
    by: str, inp: MatchingInput, code_version: str, published_from: str | None = None,
) -> None:  # fmt: skip
    """The run's audit record from its first moment: the exact input, policy, seed, code and who asked."""
    await conn.execute(
        "INSERT INTO runs (run_id, program_id, dry_run, seed, policy, status, requested_by, input, code_version,"
        " published_from) VALUES ($1, $2, $3, $4, $5::jsonb, 'running', $6, $7::jsonb, $8, $9)",
        run_id, program_id, dry_run, seed, policy.model_dump_json(), by, inp.model_dump_json(), code_version,
        published_from,
    )  # fmt: skip


async def set_progress(pool: asyncpg.Pool, run_id: str, progress: str) -> None:
    await pool.execute("UPDATE runs SET progress = $2 WHERE run_id = $1 AND status = 'running'", run_id, progress)


async def heartbeat(pool: asyncpg.Pool, run_id: str) -> None:
    await pool.execute("UPDATE runs SET heartbeat_at = now() WHERE run_id = $1", run_id)


async def fail_orphaned_runs(conn: asyncpg.Connection, silent_for_seconds: float) -> list[str]:
    """Mark failed every running run whose heartbeat stopped (its process died); their ids."""
    rows = await conn.fetch(
        "UPDATE runs SET status = 'failed', error = 'interrupted: its process stopped', completed_at = now(),"
        " progress = NULL WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)"
        " RETURNING run_id",
        silent_for_seconds,
    )
    return [r["run_id"] for r in rows]


async def still_running(conn: asyncpg.Connection, run_id: str) -> bool:
    """Lock the run's row for the publishing transaction: a run marked failed meanwhile never publishes."""
    status = await conn.fetchval("SELECT status FROM runs WHERE run_id = $1 FOR UPDATE", run_id)
    return bool(status == "running")


async def already_grouped(conn: asyncpg.Connection, program_id: str, participant_ids: list[str]) -> list[str]:
    """Which of these people are in an active group of the program already."""
    rows = await conn.fetch(
        "SELECT DISTINCT m FROM groups, unnest(member_ids) AS m"
        " WHERE program_id = $1 AND status = 'active' AND member_ids && $2::text[] AND m = ANY($2::text[])",
        program_id,
        participant_ids,
    )
    return sorted(r["m"] for r in rows)


async def active_in_pool(conn: asyncpg.Connection, program_id: str, participant_ids: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT participant_id FROM pool WHERE program_id = $1 AND active AND participant_id = ANY($2::text[])",
        program_id,
        participant_ids,
    )
    return {r["participant_id"] for r in rows}


async def finish_run(
    conn: asyncpg.Connection, run_id: str, *, status: str, digest: str | None, summary: dict[str, Any] | None,
    result: dict[str, Any] | None, error: str | None = None,
) -> None:  # fmt: skip
    await conn.execute(
        "UPDATE runs SET status=$2, input_digest=$3, summary=$4::jsonb, result=$5::jsonb, error=$6,"
        " completed_at=now(), progress=NULL WHERE run_id=$1 AND status='running'",
        run_id, status, digest, json.dumps(summary) if summary is not None else None,
        json.dumps(result) if result is not None else None, error,
    )  # fmt: skip


async def insert_groups(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    await conn.executemany(
        "INSERT INTO groups (group_id, program_id, run_id, member_ids, mentor_ids, members, fit, explanation)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8::jsonb)",
        rows,
    )


async def get_run(conn: asyncpg.Connection, run_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM runs WHERE run_id = $1", run_id)
    return row


async def last_published_run(conn: asyncpg.Connection, program_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM runs WHERE program_id = $1 AND NOT dry_run AND status = 'completed'"
        " ORDER BY completed_at DESC LIMIT 1",
        program_id,
    )
    return row


async def list_runs(conn: asyncpg.Connection, program_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT run_id, program_id, dry_run, seed, status, progress, started_at, completed_at, summary"
            " FROM runs WHERE program_id = $1 ORDER BY started_at DESC",
            program_id,
        )
    )


async def add_override(
    conn: asyncpg.Connection, program_id: str, kind: str, participant_ids: list[str], reason: str, by: str
) -> int:
    """Store the override and its ``match.override.recorded`` event in one transaction (the outbox), so
    the metrics service counts every override and no other; the reason and the admin stay here."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO overrides (program_id, kind, participant_ids, reason, created_by) VALUES ($1,$2,$3,$4,$5)"
            " RETURNING override_id, created_at",
            program_id, kind, participant_ids, reason, by,
        )  # fmt: skip
        value: int = row["override_id"]
        recorded = MatchOverrideRecorded(
            program_id=program_id,
            override_id=str(value),
            kind=OverrideKind(kind),
            participant_ids=list(participant_ids),
            recorded_at=row["created_at"],
        )
        await add_to_outbox(conn, Envelope(data=recorded, time=row["created_at"]))
    return value


_OVERRIDE_COLUMNS = (
    "override_id, kind, participant_ids, reason, created_by, created_at, active, revoked_by, revoked_reason, revoked_at"
)
"""What an override's audit view shows (listing and revoking return the same shape)."""


async def list_overrides(conn: asyncpg.Connection, program_id: str) -> list[dict[str, Any]]:
    """Every override of the program, revoked ones included: the audit trail of interventions."""
    rows = await conn.fetch(
        f"SELECT {_OVERRIDE_COLUMNS} FROM overrides WHERE program_id = $1 ORDER BY override_id", program_id
    )
    return [dict(r) for r in rows]


async def revoke_override(
    conn: asyncpg.Connection, program_id: str, override_id: int, reason: str, by: str
) -> dict[str, Any] | None:
    """Deactivate an active override, recording who and why; None when there is no such active override."""
    row = await conn.fetchrow(
        "UPDATE overrides SET active = false, revoked_by = $4, revoked_reason = $3, revoked_at = now()"
        f" WHERE program_id = $1 AND override_id = $2 AND active RETURNING {_OVERRIDE_COLUMNS}",
        program_id, override_id, reason, by,
    )  # fmt: skip
    return dict(row) if row else None


async def pool_counts(conn: asyncpg.Connection, program_id: str) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT role, count(*) AS n FROM pool WHERE program_id = $1 AND active GROUP BY role", program_id
    )
    grouped = await conn.fetchval(
        "SELECT count(DISTINCT m) FROM groups, unnest(member_ids) AS m WHERE program_id = $1 AND status = 'active'",
        program_id,
    )
    active_groups = await conn.fetchval(
        "SELECT count(*) FROM groups WHERE program_id = $1 AND status = 'active'", program_id
    )
    by_role = {r["role"]: int(r["n"]) for r in rows}
    return {"participants": sum(by_role.values()), "by_role": by_role, "in_active_groups": int(grouped or 0),
            "active_groups": int(active_groups or 0)}  # fmt: skip


async def active_groups_with_all(conn: asyncpg.Connection, program_id: str, participant_ids: list[str]) -> list[str]:
    """Active groups of the program that hold every one of these people."""
    rows = await conn.fetch(
        "SELECT group_id FROM groups WHERE program_id = $1 AND status = 'active' AND member_ids @> $2::text[]"
        " ORDER BY group_id",
        program_id,
        participant_ids,
    )
    return [r["group_id"] for r in rows]


async def mentors_among(conn: asyncpg.Connection, program_id: str, participant_ids: list[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT participant_id FROM pool"
        " WHERE program_id = $1 AND role = 'mentor' AND participant_id = ANY($2::text[])",
        program_id,
        participant_ids,
    )
    return sorted(r["participant_id"] for r in rows)
