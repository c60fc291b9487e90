"""Enrollment's use cases: load, decide (domain), save state and its events in one transaction.

Locks, always taken in this order so that no two transactions wait on each other in a cycle:
1. the org chart: SHARE for whoever builds profiles from it (enrol, bulk, update), SHARE ROW
   EXCLUSIVE for an import that changes it;
2. program rows, in program id order: FOR UPDATE to change a program or upload in bulk, FOR SHARE
   for a single enrolment or its update (enrolments of one program run side by side; a change of
   the program waits for them). Events of one program commit in the order of their outbox ids
   because ``add_to_outbox`` serialises the writers of one key;
3. the enrolment rows read to be changed or republished, FOR UPDATE.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import asyncpg

from contracts.base import utcnow
from contracts.envelope import Envelope
from contracts.events import (
    ParticipantEnrolled,
    ParticipantProfile,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgramOpened,
    ProgramUpdated,
)
from contracts.policy import Role
from runtime.outbox import add_to_outbox
from services.enrollment.adapters import loads
from services.enrollment.adapters import repository as repo
from services.enrollment.domain.model import (
    MAX_CHAIN,
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
    resolve_policy,
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


T = TypeVar("T")
DEADLOCK_ATTEMPTS = 3


async def _transaction(
    pool: asyncpg.Pool, work: Callable[[asyncpg.Connection], Awaitable[T]], *, first: str | None = None
) -> T:
    """``work`` in one transaction, tried again if Postgres broke a deadlock by aborting it.

    Locks are ordered (see above), but a person's set of mentor programs can grow between reading it
    and locking it; the rare cycle that follows is resolved by running the whole command again.
    ``first``, a statement without parameters (a lock), is sent with the BEGIN in one round trip.
    """
    for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
        try:
            async with pool.acquire() as conn:
                if first is None:
                    async with conn.transaction():
                        return await work(conn)
                async with _begun_with(conn, first):
                    return await work(conn)
        except asyncpg.DeadlockDetectedError:
            if attempt == DEADLOCK_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


@contextlib.asynccontextmanager
async def _begun_with(conn: asyncpg.Connection, statement: str) -> AsyncIterator[None]:
    """A transaction whose BEGIN and first statement go in one round trip (asyncpg's ``transaction()``
    sends BEGIN alone): a single enrolment is a handful of round trips, and each costs the service
    more CPU than the work it carries. Committed when the block ends, rolled back on any error."""
    try:
        await conn.execute(f"BEGIN; {statement}")
        yield
    except BaseException:
        if not conn.is_closed() and conn.is_in_transaction():
            with contextlib.suppress(Exception):  # a broken connection: the pool discards it anyway
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


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
        raise NotFound(f"no program {program_id}", "program_id", "path")
    return program


async def _lock_programs(
    conn: asyncpg.Connection, program_id: str, mentors: Sequence[str] = (), *, share: bool = False
) -> Program:
    """Locks ``program_id`` and every open program where one of ``mentors`` is an active mentor (their
    capacity is one number across programs, so a change republishes them all), in id order.

    The set is read, locked, and read again until no new program appears.
    """
    locked: dict[str, Program] = {}
    while True:
        wanted = {program_id} | await repo.mentor_programs(conn, mentors)
        missing = wanted - locked.keys()
        if not missing:
            break
        locked.update(await repo.lock_programs(conn, sorted(missing), share=share))
        if program_id not in locked:
            raise NotFound(f"no program {program_id}", "program_id", "path")
    return locked[program_id]


async def _share_capacity(
    conn: asyncpg.Connection, program_id: str, capacities: dict[str, int | None]
) -> list[Envelope]:
    """Sets each mentor's capacity on their other active mentor enrolments (their programs are locked by
    ``_lock_programs``) and returns a participant.updated for each profile that changed.

    A mentor's capacity counts mentees or groups across every program, so the latest declaration wins
    everywhere and matching never sees two numbers for one person.
    """
    if not capacities:
        return []
    changed = []
    events = []
    now = utcnow()
    for row in await repo.other_mentor_enrolments(conn, program_id, list(capacities)):
        capacity = capacities[row.participant_id]
        if capacity is None or row.request.capacity == capacity:
            continue
        request = row.request.model_copy(update={"capacity": capacity})
        profile = row.profile.model_copy(update={"capacity": capacity})
        changed.append((row.program_id, request, profile))
        events.append(Envelope(data=ParticipantUpdated(program_id=row.program_id, profile=profile, updated_at=now)))
    await repo.set_enrolments(conn, changed)
    return events


async def get_program(pool: asyncpg.Pool, program_id: str) -> Program:
    async with pool.acquire() as conn:
        return await _program_or_404(conn, program_id)


async def update_program(pool: asyncpg.Pool, program_id: str, patch: ProgramPatch) -> Program:
    async with pool.acquire() as conn, conn.transaction():
        program = await _program_or_404(conn, program_id, for_update=True)
        if not program.is_open:
            raise Conflict(f"program {program_id} is closed", "program_id", "path")
        changes = patch.model_dump(exclude_unset=True)
        if "policy" in changes:
            # a partial change over the program's current policy: what is not named stays as it is
            changes["policy"] = resolve_policy(program.form, program.policy, patch.policy or {})
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


def _stale_profiles(index: OrgIndex, enrolments: list[repo.EnrolmentRow]) -> list[tuple[str, str, ParticipantProfile]]:
    stale = []
    for enrolment in enrolments:
        fresh = index.profile(enrolment.request)
        if fresh != enrolment.profile:
            stale.append((enrolment.program_id, enrolment.participant_id, fresh))
    return stale


async def import_org_chart(
    pool: asyncpg.Pool,
    people: list[OrgPerson],
    *,
    rows: Sequence[int] | None = None,
    errors: Sequence[RowError] = (),
    unreadable: Collection[str] = (),
) -> ImportResult:
    """All or nothing; enrolled people whose org data changed get a participant.updated event.

    ``errors`` are the upload's parse errors: they are reported together with the chart's own
    (``rows`` numbers the valid ``people`` as in the file; ``unreadable`` are ids of rows that failed).
    """

    async def work(conn: asyncpg.Connection) -> ImportResult:
        await conn.execute("LOCK TABLE org_people IN SHARE ROW EXCLUSIVE MODE")
        found = [*errors, *validate_org_chart(people, await repo.org_managers(conn), rows, unreadable)]
        if found:
            raise RowErrors(sorted(found, key=lambda e: e.row))
        await repo.upsert_people(conn, people)
        index = OrgIndex.of(await repo.org_people(conn))
        # which programs are affected, unlocked; then lock those programs in order and read their
        # enrolments again, locked: a withdrawal or a closing meanwhile must not be republished over
        affected = sorted({program for program, _, _ in _stale_profiles(index, await repo.active_enrolments(conn))})
        changed: list[tuple[str, str, ParticipantProfile]] = []
        if affected:
            await repo.lock_programs(conn, affected)
            changed = _stale_profiles(index, await repo.active_enrolments(conn, affected, for_update=True))
        await repo.set_profiles(conn, changed)
        now = utcnow()
        await add_to_outbox(
            conn,
            *(
                Envelope(data=ParticipantUpdated(program_id=prog, profile=prof, updated_at=now))
                for prog, _, prof in changed
            ),
        )
        return ImportResult(imported=len(people), profiles_updated=len(changed))

    return await _transaction(pool, work)


def _mentors(requests: Sequence[EnrolmentRequest]) -> dict[str, int | None]:
    return {r.participant_id: r.capacity for r in requests if r.role is Role.MENTOR}


async def _with_known_capacity(
    conn: asyncpg.Connection, program_id: str, requests: list[EnrolmentRequest]
) -> list[EnrolmentRequest]:
    """A mentor who leaves capacity out keeps the one declared in their other programs (it is one
    number across programs); without one anywhere, check_enrolment refuses the enrolment."""
    missing = [r.participant_id for r in requests if r.role is Role.MENTOR and r.capacity is None]
    known = await repo.mentor_capacities(conn, program_id, missing)
    if not known:
        return requests
    return [
        r.model_copy(update={"capacity": known[r.participant_id]})
        if r.role is Role.MENTOR and r.capacity is None and r.participant_id in known
        else r
        for r in requests
    ]


async def _person_index(conn: asyncpg.Connection, participant_id: str) -> OrgIndex:
    """What one person's profile needs: their org row and their manager chain, never the whole chart."""
    person, managers = await repo.person_and_chain(conn, participant_id, MAX_CHAIN)
    if person is None:
        raise NotFound(f"{participant_id} is not in the org chart: import it first", "participant_id")
    return OrgIndex({participant_id: person}, managers)


async def enrol(pool: asyncpg.Pool, program_id: str, asked: EnrolmentRequest) -> repo.EnrolmentRow:
    """One enrolment, in few round trips and short locks: the person and their manager chain in one
    query, the program held FOR SHARE (enrolments of a program run in parallel; a change of it waits),
    the row written by one upsert that also tells an active enrolment (409) from a withdrawn one
    (replaced), racing enrolments of one person included. Only the outbox write is serialised per
    program (its events' order)."""

    async def work(conn: asyncpg.Connection) -> repo.EnrolmentRow:
        program = await _lock_programs(conn, program_id, list(_mentors([asked])), share=True)
        [request] = await _with_known_capacity(conn, program_id, [asked])
        capacities = _mentors([request])
        check_enrolment(program, request)
        profile = (await _person_index(conn, request.participant_id)).profile(request)
        await repo.lock_mentor_enrolments(conn, list(capacities))
        row = await repo.enrol_one(conn, program_id, request, profile)
        if row is None:
            raise Conflict(f"{request.participant_id} is already enrolled in {program_id}", "participant_id")
        await add_to_outbox(
            conn,
            Envelope(data=ParticipantEnrolled(program_id=program_id, profile=profile, enrolled_at=row.enrolled_at)),
            *await _share_capacity(conn, program_id, capacities),
        )
        return row

    return await _transaction(pool, work, first=repo.HOLD_ORG_CHART)


async def bulk_enrol(
    pool: asyncpg.Pool,
    program_id: str,
    requests: list[EnrolmentRequest],
    *,
    rows: Sequence[int] | None = None,
    errors: Sequence[RowError] = (),
) -> int:
    """Thousands in one transaction: validated together, stored by COPY, nothing stored on any error.

    ``errors`` are the upload's parse errors, reported together with every row's domain errors;
    ``rows`` numbers the valid ``requests`` as in the file (default 1, 2, ...).
    """
    numbers = list(rows) if rows is not None else list(range(1, len(requests) + 1))

    async def work(conn: asyncpg.Connection) -> int:
        program = await _lock_programs(conn, program_id, list(_mentors(requests)))
        declared = await _with_known_capacity(conn, program_id, requests)
        capacities = _mentors(declared)
        people = await repo.org_people(conn, [r.participant_id for r in requests])
        index = OrgIndex(people, await repo.org_managers(conn))
        already = await repo.existing_participants(conn, program_id, [r.participant_id for r in requests])
        found: list[RowError] = list(errors)
        seen: dict[str, int] = {}
        items = []
        for i, request in zip(numbers, declared, strict=True):
            try:
                check_enrolment(program, request)
                if request.participant_id in seen:
                    raise Conflict(
                        f"{request.participant_id} appears twice (row {seen[request.participant_id]})",
                        "participant_id",
                    )
                seen[request.participant_id] = i
                if request.participant_id in already:
                    raise Conflict(f"{request.participant_id} is already enrolled", "participant_id")
                items.append((request, index.profile(request)))
            except DomainError as exc:
                found.append(RowError(i, exc.field, exc.message, exc.kind))
        if found:
            raise RowErrors(sorted(found, key=lambda e: e.row))
        await repo.save_enrolments(conn, program_id, items)
        now = utcnow()
        await add_to_outbox(
            conn,
            *(
                Envelope(data=ParticipantEnrolled.model_construct(program_id=program_id, profile=p, enrolled_at=now))
                for _, p in items
            ),
            *await _share_capacity(conn, program_id, capacities),
        )
        return len(items)

    return await _transaction(pool, work, first=repo.HOLD_ORG_CHART)


async def get_enrolment(pool: asyncpg.Pool, program_id: str, participant_id: str) -> repo.EnrolmentRow:
    async with pool.acquire() as conn:
        await _program_or_404(conn, program_id)
        row = await repo.get_enrolment(conn, program_id, participant_id)
        if row is None:
            raise NotFound(f"{participant_id} is not enrolled in {program_id}", "participant_id", "path")
        return row


async def my_enrolments(pool: asyncpg.Pool, participant_id: str) -> list[repo.EnrolmentRow]:
    async with pool.acquire() as conn:
        return await repo.enrolments_of(conn, participant_id)


async def _refuse_cut_below_load(conn: asyncpg.Connection, participant_id: str, capacity: int | None) -> None:
    """A mentor's capacity cut below the groups they lead now would leave those groups over capacity
    without anyone deciding so: refused, naming the groups, unless the caller keeps them knowingly."""
    groups = await loads.active_groups_of(conn, participant_id)
    if capacity is not None and len(groups) > capacity:
        shown = ", ".join(groups[:10]) + (f" and {len(groups) - 10} more" if len(groups) > 10 else "")
        raise Conflict(
            f"{participant_id} leads {len(groups)} active group(s) now ({shown}), more than a capacity of "
            f"{capacity}: close some of them first, or pass on_over_capacity=keep_groups to keep them running "
            "(no new group is then given until the load is under the capacity)",
            "capacity",
        )


async def update_enrolment(
    pool: asyncpg.Pool, program_id: str, participant_id: str, patch: EnrolmentPatch, *, keep_groups: bool = False
) -> repo.EnrolmentRow:
    async def work(conn: asyncpg.Connection) -> repo.EnrolmentRow:
        current = await repo.get_enrolment(conn, program_id, participant_id)
        shares = current is not None and current.request.role is Role.MENTOR and "capacity" in patch.model_fields_set
        program = await _lock_programs(conn, program_id, [participant_id] if shares else [], share=True)
        if shares:
            await repo.lock_mentor_enrolments(conn, [participant_id])
        row = await repo.get_enrolment(conn, program_id, participant_id, for_update=True)
        if row is None or row.status != "active":
            raise NotFound(f"{participant_id} is not enrolled in {program_id}", "participant_id", "path")
        request = apply_patch(row.request, patch)
        check_enrolment(program, request)
        if shares and not keep_groups and request.capacity != row.request.capacity:
            await _refuse_cut_below_load(conn, participant_id, request.capacity)
        profile = (await _person_index(conn, participant_id)).profile(request)
        await repo.update_enrolment(conn, program_id, request, profile)
        events = []
        if profile != row.profile:
            events.append(
                Envelope(data=ParticipantUpdated(program_id=program_id, profile=profile, updated_at=utcnow()))
            )
        if shares:
            events += await _share_capacity(conn, program_id, {participant_id: request.capacity})
        await add_to_outbox(conn, *events)
        fresh = await repo.get_enrolment(conn, program_id, participant_id)
        assert fresh is not None
        return fresh

    return await _transaction(pool, work, first=repo.HOLD_ORG_CHART)


async def withdraw(pool: asyncpg.Pool, program_id: str, participant_id: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await _program_or_404(conn, program_id, for_update=True)
        row = await repo.get_enrolment(conn, program_id, participant_id, for_update=True)
        if row is None or row.status != "active":
            raise NotFound(f"{participant_id} is not enrolled in {program_id}", "participant_id", "path")
        await repo.withdraw(conn, program_id, participant_id)
        await add_to_outbox(
            conn,
            Envelope(
                data=ParticipantWithdrawn(program_id=program_id, participant_id=participant_id, withdrawn_at=utcnow())
            ),
        )
