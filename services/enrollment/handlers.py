"""Enrollment's use cases: load, decide (domain), save state and its events in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import asyncpg

from contracts.base import utcnow
from contracts.envelope import Envelope
from contracts.events import (
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgramOpened,
    ProgramUpdated,
)
from runtime.outbox import add_to_outbox
from services.enrollment.adapters import repository as repo
from services.enrollment.domain.model import (
    Conflict,
    EnrolmentPatch,
    EnrolmentRequest,
    NotFound,
    OrgIndex,
    OrgPerson,
    Program,
    ProgramPatch,
    ProgramSpec,
    RowError,
    RowErrors,
    apply_patch,
    check_enrolment,
    validate_org_chart,
)
from services.enrollment.domain.model import DomainError as DomainError


def _program_event(program: Program, *, opened: bool) -> Envelope:
    fields = {
        "program_id": program.program_id,
        "name": program.name,
        "form": program.form,
        "cadence_days": program.cadence_days,
        "starts_on": program.starts_on,
        "ends_on": program.ends_on,
        "policy": program.policy,
        "opened_at": program.opened_at,
    }
    return Envelope(data=ProgramOpened(**fields) if opened else ProgramUpdated(**fields, status=program.status))


async def open_program(pool: asyncpg.Pool, spec: ProgramSpec) -> Program:
    program = Program(
        program_id=f"prg-{uuid.uuid4().hex[:12]}",
        name=spec.name,
        form=spec.form,
        cadence_days=spec.cadence_days,
        starts_on=spec.starts_on,
        ends_on=spec.ends_on,
        policy=spec.effective_policy(),
        status="open",
        opened_at=utcnow(),
    )
    async with pool.acquire() as conn, conn.transaction():
        await repo.insert_program(conn, program)
        await add_to_outbox(conn, _program_event(program, opened=True))
    return program


async def _program_or_404(conn: asyncpg.Connection, program_id: str, *, for_update: bool = False) -> Program:
    program = await repo.get_program(conn, program_id, for_update=for_update)
    if program is None:
        raise NotFound(f"no program {program_id}", "program_id")
    return program


async def get_program(pool: asyncpg.Pool, program_id: str) -> Program:
    async with pool.acquire() as conn:
        return await _program_or_404(conn, program_id)


async def update_program(pool: asyncpg.Pool, program_id: str, patch: ProgramPatch) -> Program:
    async with pool.acquire() as conn, conn.transaction():
        program = await _program_or_404(conn, program_id, for_update=True)
        if not program.is_open:
            raise Conflict(f"program {program_id} is closed", "program_id")
        changes = patch.model_dump(exclude_unset=True)
        if "policy" in changes:
            changes["policy"] = patch.policy
        updated = replace(program, **changes)
        if updated.ends_on is not None and updated.ends_on < updated.starts_on:
            raise DomainError("ends_on must not be before starts_on", "ends_on")
        await repo.update_program(conn, updated)
        await add_to_outbox(conn, _program_event(updated, opened=False))
    return updated


async def close_program(pool: asyncpg.Pool, program_id: str) -> Program:
    async with pool.acquire() as conn, conn.transaction():
        program = await _program_or_404(conn, program_id, for_update=True)
        if not program.is_open:
            return program
        closed = replace(program, status="closed")
        await repo.update_program(conn, closed)
        await add_to_outbox(conn, _program_event(closed, opened=False))
    return closed


@dataclass(frozen=True)
class ImportResult:
    imported: int
    profiles_updated: int


async def import_org_chart(pool: asyncpg.Pool, people: list[OrgPerson]) -> ImportResult:
    """All or nothing; enrolled people whose org data changed get a participant.updated event."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE org_people IN SHARE ROW EXCLUSIVE MODE")
        errors = validate_org_chart(people, await repo.org_managers(conn))
        if errors:
            raise RowErrors(errors)
        await repo.upsert_people(conn, people)
        index = OrgIndex.of(await repo.org_people(conn))
        changed = []
        events = []
        now = utcnow()
        for enrolment in await repo.active_enrolments(conn):
            fresh = index.profile(enrolment.request)
            if fresh != enrolment.profile:
                changed.append((enrolment.program_id, enrolment.participant_id, fresh))
                events.append(
                    Envelope(data=ParticipantUpdated(program_id=enrolment.program_id, profile=fresh, updated_at=now))
                )
        await repo.set_profiles(conn, changed)
        await add_to_outbox(conn, *events)
    return ImportResult(imported=len(people), profiles_updated=len(changed))


async def enrol(pool: asyncpg.Pool, program_id: str, request: EnrolmentRequest) -> repo.EnrolmentRow:
    async with pool.acquire() as conn, conn.transaction():
        program = await _program_or_404(conn, program_id, for_update=True)
        check_enrolment(program, request)
        existing = await repo.get_enrolment(conn, program_id, request.participant_id, for_update=True)
        if existing is not None and existing.status == "active":
            raise Conflict(f"{request.participant_id} is already enrolled in {program_id}", "participant_id")
        person = await repo.get_person(conn, request.participant_id)
        if person is None:
            raise NotFound(f"{request.participant_id} is not in the org chart: import it first", "participant_id")
        profile = OrgIndex({person.employee_id: person}, await repo.org_managers(conn)).profile(request)
        await repo.save_enrolments(conn, program_id, [(request, profile)])
        await add_to_outbox(
            conn, Envelope(data=ParticipantEnrolled(program_id=program_id, profile=profile, enrolled_at=utcnow()))
        )
        row = await repo.get_enrolment(conn, program_id, request.participant_id)
        assert row is not None
        return row


async def bulk_enrol(
    pool: asyncpg.Pool, program_id: str, requests: list[EnrolmentRequest], *, row_offset: int = 0
) -> int:
    """Thousands in one transaction: validated together, stored by COPY, nothing stored on any error."""
    async with pool.acquire() as conn, conn.transaction():
        program = await _program_or_404(conn, program_id, for_update=True)
        people = await repo.org_people(conn, [r.participant_id for r in requests])
        index = OrgIndex(people, await repo.org_managers(conn))
        already = await repo.existing_participants(conn, program_id, [r.participant_id for r in requests])
        errors: list[RowError] = []
        seen: dict[str, int] = {}
        items = []
        for i, request in enumerate(requests, start=row_offset + 1):
            try:
                check_enrolment(program, request)
                if request.participant_id in seen:
                    raise Conflict(f"{request.participant_id} appears twice (row {seen[request.participant_id]})")
                seen[request.participant_id] = i
                if request.participant_id in already:
                    raise Conflict(f"{request.participant_id} is already enrolled", "participant_id")
                items.append((request, index.profile(request)))
            except DomainError as exc:
                errors.append(RowError(i, exc.field, exc.message))
        if errors:
            raise RowErrors(errors)
        await repo.save_enrolments(conn, program_id, items)
        now = utcnow()
        await add_to_outbox(
            conn,
            *(
                Envelope(data=ParticipantEnrolled.model_construct(program_id=program_id, profile=p, enrolled_at=now))
                for _, p in items
            ),
        )
    return len(items)


async def get_enrolment(pool: asyncpg.Pool, program_id: str, participant_id: str) -> repo.EnrolmentRow:
    async with pool.acquire() as conn:
        await _program_or_404(conn, program_id)
        row = await repo.get_enrolment(conn, program_id, participant_id)
        if row is None:
            raise NotFound(f"{participant_id} is not enrolled in {program_id}", "participant_id")
        return row


async def update_enrolment(
    pool: asyncpg.Pool, program_id: str, participant_id: str, patch: EnrolmentPatch
) -> repo.EnrolmentRow:
    async with pool.acquire() as conn, conn.transaction():
        program = await _program_or_404(conn, program_id)
        row = await repo.get_enrolment(conn, program_id, participant_id, for_update=True)
        if row is None or row.status != "active":
            raise NotFound(f"{participant_id} is not enrolled in {program_id}", "participant_id")
        request = apply_patch(row.request, patch)
        check_enrolment(program, request)
        person = await repo.get_person(conn, participant_id)
        assert person is not None  # enrolments reference org_people
        profile = OrgIndex({person.employee_id: person}, await repo.org_managers(conn)).profile(request)
        await repo.update_enrolment(conn, program_id, request, profile)
        if profile != row.profile:
            await add_to_outbox(
                conn, Envelope(data=ParticipantUpdated(program_id=program_id, profile=profile, updated_at=utcnow()))
            )
        fresh = await repo.get_enrolment(conn, program_id, participant_id)
        assert fresh is not None
        return fresh


async def withdraw(pool: asyncpg.Pool, program_id: str, participant_id: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _program_or_404(conn, program_id)
        row = await repo.get_enrolment(conn, program_id, participant_id, for_update=True)
        if row is None or row.status != "active":
            raise NotFound(f"{participant_id} is not enrolled in {program_id}", "participant_id")
        await repo.withdraw(conn, program_id, participant_id)
        await add_to_outbox(
            conn,
            Envelope(
                data=ParticipantWithdrawn(program_id=program_id, participant_id=participant_id, withdrawn_at=utcnow())
            ),
        )
