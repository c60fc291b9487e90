"""Postgres access for enrollment: plain SQL, one function per question, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from contracts.events import ParticipantProfile
from contracts.policy import Form, MatchingPolicy
from services.enrollment.domain.model import EnrolmentRequest, OrgPerson, Program


def _program(row: asyncpg.Record) -> Program:
    return Program(
        program_id=row["program_id"],
        name=row["name"],
        form=Form(row["form"]),
        cadence_days=row["cadence_days"],
        starts_on=row["starts_on"],
        ends_on=row["ends_on"],
        policy=MatchingPolicy.model_validate_json(row["policy"]),
        status=row["status"],
        opened_at=row["opened_at"],
    )


async def insert_program(conn: asyncpg.Connection, p: Program) -> None:
    await conn.execute(
        "INSERT INTO programs (program_id, name, form, cadence_days, starts_on, ends_on, policy, status, opened_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
        p.program_id, p.name, p.form.value, p.cadence_days, p.starts_on, p.ends_on,
        p.policy.model_dump_json(), p.status, p.opened_at,
    )  # fmt: skip


async def update_program(conn: asyncpg.Connection, p: Program) -> None:
    await conn.execute(
        "UPDATE programs SET name=$2, cadence_days=$3, ends_on=$4, policy=$5::jsonb, status=$6, updated_at=now()"
        " WHERE program_id=$1",
        p.program_id, p.name, p.cadence_days, p.ends_on, p.policy.model_dump_json(), p.status,
    )  # fmt: skip


async def get_program(conn: asyncpg.Connection, program_id: str, *, for_update: bool = False) -> Program | None:
    sql = "SELECT * FROM programs WHERE program_id = $1" + (" FOR UPDATE" if for_update else "")
    row = await conn.fetchrow(sql, program_id)
    return _program(row) if row else None


async def lock_programs(
    conn: asyncpg.Connection, program_ids: Sequence[str], *, share: bool = False
) -> dict[str, Program]:
    """Row locks on these programs, taken in id order so that two transactions never deadlock on them.

    FOR UPDATE (a change of the program itself, a bulk upload): nobody else writes the program's
    events meanwhile. ``share`` (FOR SHARE, a single enrolment): enrolments of one program run side by
    side, while a change or closing of the program waits for them (and they for it), so none is checked
    against a policy or status that is changing under it. Outbox order per program holds either way:
    :func:`runtime.outbox.add_to_outbox` serialises the writers of one key.
    """
    rows = await conn.fetch(
        "SELECT * FROM programs WHERE program_id = ANY($1::text[]) ORDER BY program_id"
        + (" FOR SHARE" if share else " FOR UPDATE"),
        sorted(set(program_ids)),
    )
    return {r["program_id"]: _program(r) for r in rows}


async def list_programs(conn: asyncpg.Connection) -> list[Program]:
    return [_program(r) for r in await conn.fetch("SELECT * FROM programs ORDER BY opened_at, program_id")]


def _person(row: asyncpg.Record) -> OrgPerson:
    # rows were validated on import: construct without validating again (bulk enrolment loads many)
    return OrgPerson.model_construct(
        employee_id=row["employee_id"],
        manager_id=row["manager_id"],
        department=row["department"],
        level=row["level"],
        location=row["location"],
        utc_offset_minutes=row["utc_offset_minutes"],
        languages=list(row["languages"]),
    )


HOLD_ORG_CHART = "LOCK TABLE org_people IN SHARE MODE"
"""Until commit, no org import changes the chart this transaction builds profiles from.

SHARE conflicts with the import's SHARE ROW EXCLUSIVE but not with itself: enrolments run side by
side, and an import waits for them (or they for it). Taken first, before any program lock: the
handlers send it with their BEGIN (one round trip)."""


async def org_managers(conn: asyncpg.Connection) -> dict[str, str | None]:
    return {
        r["employee_id"]: r["manager_id"] for r in await conn.fetch("SELECT employee_id, manager_id FROM org_people")
    }


async def person_and_chain(
    conn: asyncpg.Connection, employee_id: str, depth: int
) -> tuple[OrgPerson | None, dict[str, str | None]]:
    """The person, and them and their managers upwards (at most ``depth``) as employee -> manager: what
    one profile needs, in one query through the primary key instead of loading the whole chart."""
    rows = await conn.fetch(
        "WITH RECURSIVE up AS ("
        " SELECT o.*, 0 AS depth FROM org_people o WHERE employee_id = $1"
        " UNION ALL SELECT o.*, up.depth + 1 FROM org_people o"
        " JOIN up ON o.employee_id = up.manager_id WHERE up.depth < $2)"
        " SELECT * FROM up ORDER BY depth",
        employee_id,
        depth,
    )
    if not rows:
        return None, {}
    return _person(rows[0]), {r["employee_id"]: r["manager_id"] for r in rows}


async def org_people(conn: asyncpg.Connection, ids: Sequence[str] | None = None) -> dict[str, OrgPerson]:
    """The whole chart, or only the people named."""
    if ids is None:
        rows = await conn.fetch("SELECT * FROM org_people")
    else:
        rows = await conn.fetch("SELECT * FROM org_people WHERE employee_id = ANY($1::text[])", list(ids))
    return {r["employee_id"]: _person(r) for r in rows}


async def get_person(conn: asyncpg.Connection, employee_id: str) -> OrgPerson | None:
    row = await conn.fetchrow("SELECT * FROM org_people WHERE employee_id = $1", employee_id)
    return _person(row) if row else None


async def upsert_people(conn: asyncpg.Connection, people: Sequence[OrgPerson]) -> None:
    """Bulk upsert through a temporary table: one COPY instead of one statement per person."""
    await conn.execute("CREATE TEMP TABLE org_upload (LIKE org_people INCLUDING DEFAULTS) ON COMMIT DROP")
    await conn.copy_records_to_table(
        "org_upload",
        records=[
            (p.employee_id, p.manager_id, p.department, p.level, p.location, p.utc_offset_minutes, p.languages)
            for p in people
        ],
        columns=["employee_id", "manager_id", "department", "level", "location", "utc_offset_minutes", "languages"],
    )
    await conn.execute(
        "INSERT INTO org_people SELECT * FROM org_upload ON CONFLICT (employee_id) DO UPDATE SET"
        " manager_id=EXCLUDED.manager_id, department=EXCLUDED.department, level=EXCLUDED.level,"
        " location=EXCLUDED.location, utc_offset_minutes=EXCLUDED.utc_offset_minutes,"
        " languages=EXCLUDED.languages, imported_at=now()"
    )


class EnrolmentRow:
    """An enrolment as stored: the declared request and the last published profile."""

    __slots__ = ("enrolled_at", "participant_id", "profile", "program_id", "request", "status")

    def __init__(self, row: asyncpg.Record) -> None:
        self.program_id: str = row["program_id"]
        self.participant_id: str = row["participant_id"]
        self.status: str = row["status"]
        self.request = EnrolmentRequest.model_validate_json(row["request"])
        self.profile = ParticipantProfile.model_validate_json(row["profile"])
        self.enrolled_at: datetime = row["enrolled_at"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "program_id": self.program_id,
            "status": self.status,
            "enrolled_at": self.enrolled_at,
            **self.profile.model_dump(mode="json"),
        }


async def get_enrolment(
    conn: asyncpg.Connection, program_id: str, participant_id: str, *, for_update: bool = False
) -> EnrolmentRow | None:
    sql = "SELECT * FROM enrolments WHERE program_id = $1 AND participant_id = $2" + (
        " FOR UPDATE" if for_update else ""
    )
    row = await conn.fetchrow(sql, program_id, participant_id)
    return EnrolmentRow(row) if row else None


async def list_enrolments(
    conn: asyncpg.Connection, program_id: str, *, limit: int, after: str | None, status: str | None
) -> list[EnrolmentRow]:
    rows = await conn.fetch(
        "SELECT * FROM enrolments WHERE program_id = $1 AND ($2::text IS NULL OR participant_id > $2)"
        " AND ($3::text IS NULL OR status = $3) ORDER BY participant_id LIMIT $4",
        program_id, after, status, limit,
    )  # fmt: skip
    return [EnrolmentRow(r) for r in rows]


async def existing_participants(conn: asyncpg.Connection, program_id: str, ids: list[str]) -> set[str]:
    rows = await conn.fetch(
        "SELECT participant_id FROM enrolments WHERE program_id = $1 AND participant_id = ANY($2::text[])"
        " AND status = 'active'",
        program_id, ids,
    )  # fmt: skip
    return {r["participant_id"] for r in rows}


async def enrol_one(
    conn: asyncpg.Connection, program_id: str, request: EnrolmentRequest, profile: ParticipantProfile
) -> EnrolmentRow | None:
    """Insert, or re-enrol someone who had withdrawn (their row is replaced), in one statement; None
    when they are actively enrolled already (also when a racing enrolment of them committed first)."""
    row = await conn.fetchrow(
        "INSERT INTO enrolments (program_id, participant_id, role, status, request, profile)"
        " VALUES ($1, $2, $3, 'active', $4::jsonb, $5::jsonb)"
        " ON CONFLICT (program_id, participant_id) DO UPDATE SET role = EXCLUDED.role, status = 'active',"
        " request = EXCLUDED.request, profile = EXCLUDED.profile, enrolled_at = now(), updated_at = now()"
        " WHERE enrolments.status = 'withdrawn' RETURNING *",
        program_id, request.participant_id, request.role.value, request.model_dump_json(), profile.model_dump_json(),
    )  # fmt: skip
    return EnrolmentRow(row) if row else None


async def save_enrolments(
    conn: asyncpg.Connection, program_id: str, items: Sequence[tuple[EnrolmentRequest, ParticipantProfile]]
) -> None:
    """Insert, or re-enrol someone who had withdrawn (their old row is replaced): one COPY for all.

    The caller has made sure none of them is actively enrolled already.
    """
    await conn.execute(
        "DELETE FROM enrolments WHERE program_id = $1 AND participant_id = ANY($2::text[]) AND status = 'withdrawn'",
        program_id,
        [req.participant_id for req, _ in items],
    )
    await conn.copy_records_to_table(
        "enrolments",
        records=[
            (program_id, req.participant_id, req.role.value, "active", req.model_dump_json(), prof.model_dump_json())
            for req, prof in items
        ],
        columns=["program_id", "participant_id", "role", "status", "request", "profile"],
    )


async def update_enrolment(
    conn: asyncpg.Connection, program_id: str, request: EnrolmentRequest, profile: ParticipantProfile
) -> None:
    await conn.execute(
        "UPDATE enrolments SET request=$3::jsonb, profile=$4::jsonb, updated_at=now()"
        " WHERE program_id=$1 AND participant_id=$2",
        program_id, request.participant_id, request.model_dump_json(), profile.model_dump_json(),
    )  # fmt: skip


async def set_profiles(conn: asyncpg.Connection, changed: Sequence[tuple[str, str, ParticipantProfile]]) -> None:
    await conn.executemany(
        "UPDATE enrolments SET profile=$3::jsonb, updated_at=now() WHERE program_id=$1 AND participant_id=$2",
        [(prog, pid, prof.model_dump_json()) for prog, pid, prof in changed],
    )


async def withdraw(conn: asyncpg.Connection, program_id: str, participant_id: str) -> None:
    await conn.execute(
        "UPDATE enrolments SET status='withdrawn', updated_at=now() WHERE program_id=$1 AND participant_id=$2",
        program_id, participant_id,
    )  # fmt: skip


async def active_enrolments(
    conn: asyncpg.Connection, program_ids: Sequence[str] | None = None, *, for_update: bool = False
) -> list[EnrolmentRow]:
    """Active enrolments of open programs (all, or of these programs): an org import re-checks their
    published profiles. ``for_update`` when they are about to be republished."""
    rows = await conn.fetch(
        "SELECT e.* FROM enrolments e JOIN programs p USING (program_id)"
        " WHERE e.status = 'active' AND p.status = 'open' AND ($1::text[] IS NULL OR e.program_id = ANY($1::text[]))"
        " ORDER BY e.program_id, e.participant_id" + (" FOR UPDATE OF e" if for_update else ""),
        None if program_ids is None else list(program_ids),
    )
    return [EnrolmentRow(r) for r in rows]


async def mentor_programs(conn: asyncpg.Connection, participant_ids: Sequence[str]) -> set[str]:
    """Open programs where any of these people is an active mentor (their capacity is shared)."""
    if not participant_ids:
        return set()
    rows = await conn.fetch(
        "SELECT DISTINCT e.program_id FROM enrolments e JOIN programs p USING (program_id)"
        " WHERE e.participant_id = ANY($1::text[]) AND e.role = 'mentor' AND e.status = 'active'"
        " AND p.status = 'open'",
        list(participant_ids),
    )
    return {r["program_id"] for r in rows}


async def lock_mentor_enrolments(conn: asyncpg.Connection, participant_ids: Sequence[str]) -> None:
    """Row locks on these people's active mentor enrolments in every program, in (program, person)
    order: two changes of one mentor's capacity in two programs then lock the same rows in the same
    order and never deadlock, while their programs are held only FOR SHARE."""
    if participant_ids:
        await conn.execute(
            "SELECT 1 FROM enrolments WHERE participant_id = ANY($1::text[]) AND role = 'mentor'"
            " AND status = 'active' ORDER BY program_id, participant_id FOR UPDATE",
            list(participant_ids),
        )


async def other_mentor_enrolments(
    conn: asyncpg.Connection, program_id: str, participant_ids: Sequence[str]
) -> list[EnrolmentRow]:
    """These people's active mentor enrolments in open programs other than ``program_id``, locked."""
    rows = await conn.fetch(
        "SELECT e.* FROM enrolments e JOIN programs p USING (program_id)"
        " WHERE e.participant_id = ANY($2::text[]) AND e.program_id <> $1 AND e.role = 'mentor'"
        " AND e.status = 'active' AND p.status = 'open'"
        " ORDER BY e.program_id, e.participant_id FOR UPDATE OF e",
        program_id, list(participant_ids),
    )  # fmt: skip
    return [EnrolmentRow(r) for r in rows]


async def mentor_capacities(
    conn: asyncpg.Connection, program_id: str, participant_ids: Sequence[str]
) -> dict[str, int]:
    """The capacity these people declared as active mentors of other open programs (the latest one)."""
    if not participant_ids:
        return {}
    rows = await conn.fetch(
        "SELECT DISTINCT ON (e.participant_id) e.participant_id, (e.request->>'capacity')::int AS capacity"
        " FROM enrolments e JOIN programs p USING (program_id)"
        " WHERE e.participant_id = ANY($2::text[]) AND e.program_id <> $1 AND e.role = 'mentor'"
        " AND e.status = 'active' AND p.status = 'open' AND e.request->>'capacity' IS NOT NULL"
        " ORDER BY e.participant_id, e.updated_at DESC",
        program_id, list(participant_ids),
    )  # fmt: skip
    return {r["participant_id"]: r["capacity"] for r in rows}


async def set_enrolments(
    conn: asyncpg.Connection, changed: Sequence[tuple[str, EnrolmentRequest, ParticipantProfile]]
) -> None:
    await conn.executemany(
        "UPDATE enrolments SET request=$3::jsonb, profile=$4::jsonb, updated_at=now()"
        " WHERE program_id=$1 AND participant_id=$2",
        [(prog, req.participant_id, req.model_dump_json(), prof.model_dump_json()) for prog, req, prof in changed],
    )


async def enrolments_of(conn: asyncpg.Connection, participant_id: str) -> list[EnrolmentRow]:
    """One person's enrolments in every program, active and withdrawn."""
    rows = await conn.fetch(
        "SELECT * FROM enrolments WHERE participant_id = $1 ORDER BY enrolled_at, program_id", participant_id
    )
    return [EnrolmentRow(r) for r in rows]
