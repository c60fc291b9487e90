"""Matching's use cases: run a matching (or a dry run), record it for audit, publish its outcome.

The solve runs in a worker thread (CP-SAT and the flow solvers release the GIL), never inside the
Kafka poll loop, and reports progress into the run's row so a long run can be watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from contracts.base import utcnow
from contracts.envelope import Envelope
from contracts.events import GroupMatched, MatchingCompleted, ParticipantUnmatched, SolverStats
from contracts.policy import MatchingPolicy, SeedPolicy, resolve_policy
from runtime.logging import SafeMessage, describe_exception
from runtime.metrics import RuntimeMetrics
from runtime.outbox import add_to_outbox
from services.matching.adapters import runs as repo
from services.matching.adapters.run_metrics import RunMetrics, run_metrics
from services.matching.adapters.solver_process import solve_within_limit
from services.matching.domain import MatchingInput, MatchingResult, Override, validate
from services.matching.domain.audit import code_version, diff_results
from services.matching.domain.common import Progress, with_run_group_ids

log = logging.getLogger(__name__)


class NotFound(Exception):
    pass


class Busy(Exception):
    pass


class ProgramClosed(Exception):
    """A closed program forms no more groups: a run (or a what-if) of it is refused."""


class NotPublishable(SafeMessage):
    """A dry run that cannot be published as it is (not a completed dry run, or the program moved on)."""


class StaleInput(SafeMessage):
    """What the run read at its start changed before it could publish: it solves again on fresh input."""


class CapacityConflict(StaleInput):
    """Another run took a mentor's capacity between this run's read of the loads and its publication."""


class PoolChanged(StaleInput):
    """Someone placed by this run withdrew, or was placed by another run of the program, meanwhile."""


class RunAbandoned(SafeMessage):
    """The run's row is no longer 'running' (recovery judged it orphaned): it must not publish."""


class InvalidSolution(SafeMessage):
    """The solver's result broke a hard rule; the message names rules and participant ids only."""


CAPACITY_ATTEMPTS = 3
"""A run that loses a mentor's last slot to another program's run solves again on the current loads, up to
this many solves in all, before it fails with :class:`CapacityConflict`."""

MENTOR_LOADS_LOCK = "matching:mentor-loads"
"""One advisory lock for every program: mentor capacity is per person, across programs, so the check of
current loads and the insert of new groups must be serialised globally, not per program."""


async def check_capacity(conn: asyncpg.Connection, result: MatchingResult) -> None:
    """In the publishing transaction, under the global lock: re-read every mentor's active load (all
    programs) and refuse to publish if the new groups would now exceed a capacity."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", MENTOR_LOADS_LOCK)
    new: Counter[str] = Counter(m.participant_id for g in result.groups for m in g.members if m.role.value == "mentor")
    if not new:
        return
    loads = await repo.mentor_loads(conn, list(new))
    capacities = await repo.mentor_capacities(conn, list(new))
    over = []
    for mentor, n in sorted(new.items()):
        capacity = capacities.get(mentor, 0)  # no active enrolment as a mentor any more: no capacity
        if loads.get(mentor, 0) + n > capacity:
            over.append(f"{mentor}: {loads.get(mentor, 0)} active + {n} new > capacity {capacity}")
    if over:
        raise CapacityConflict(
            f"mentor loads changed since this run read them (another run published first); nothing was "
            f"published: {'; '.join(over[:5])}" + (f" (and {len(over) - 5} more)" if len(over) > 5 else "")
        )


async def check_members(conn: asyncpg.Connection, program_id: str, result: MatchingResult) -> None:
    """In the publishing transaction, under the global lock: everyone placed is still enrolled in the
    program and in no active group of it (another run of the program cannot have placed them first)."""
    placed = sorted({m.participant_id for g in result.groups for m in g.members})
    if not placed:
        return
    gone = sorted(set(placed) - await repo.active_in_pool(conn, program_id, placed))
    if gone:
        raise PoolChanged(f"withdrew while this run solved: {', '.join(gone[:10])}")
    mentees = sorted({m.participant_id for g in result.groups for m in g.members if m.role.value != "mentor"})
    grouped = await repo.already_grouped(conn, program_id, mentees)
    if grouped:
        raise PoolChanged(f"placed by another run of the program meanwhile: {', '.join(grouped[:10])}")


@dataclass(frozen=True)
class RunRequest:
    dry_run: bool = False
    seed: int | None = None
    policy_changes: Mapping[str, Any] | None = None
    """Dry runs only: any subset of the policy's fields, merged over the program's own policy and checked
    against its form exactly as enrollment checks a program's policy (``resolve_policy``)."""
    against_last_run: bool = False
    """Dry runs only: re-match the last published run's exact input under the new policy and compare."""


def digest(inp: MatchingInput) -> str:
    canonical = inp.model_dump(mode="json")
    canonical["participants"] = sorted(canonical["participants"], key=lambda p: p["participant_id"])
    return "sha256:" + hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def choose_seed(policy: MatchingPolicy, requested: int | None) -> int:
    """A fixed-seed program always uses its seed; otherwise the admin's, or a fresh random one.
    Whatever it is, it is recorded and published with the run."""
    if policy.seed_policy is SeedPolicy.FIXED and policy.seed is not None:
        return policy.seed
    return requested if requested is not None else secrets.randbits(62)


async def build_input(conn: asyncpg.Connection, program: repo.ProgramView, policy: MatchingPolicy) -> MatchingInput:
    participants = await repo.unmatched_pool(conn, program.program_id)
    mentor_ids = [p.participant_id for p in participants if p.role.value == "mentor"]
    capacities = await repo.mentor_capacities(conn, mentor_ids)
    participants = [
        p.model_copy(update={"capacity": capacities.get(p.participant_id, p.capacity)})
        if p.participant_id in capacities
        else p
        for p in participants
    ]
    overrides = [
        Override(kind=o["kind"], participant_ids=tuple(o["participant_ids"][:2]), reason=o["reason"])
        for o in await repo.active_overrides(conn, program.program_id)
    ]
    return MatchingInput(
        program_id=program.program_id,
        form=program.form,
        policy=policy,
        participants=participants,
        existing_load=await repo.mentor_loads(conn, mentor_ids),
        overrides=overrides,
    )


async def start_run(
    pool: asyncpg.Pool, program_id: str, request: RunRequest, by: str, metrics: RuntimeMetrics | None = None
) -> tuple[str, asyncio.Task[None]]:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"run:{program_id}")
        program = await repo.get_program(conn, program_id)
        if program is None:
            raise NotFound(f"no program {program_id} (has its program.opened event arrived?)")
        running = await conn.fetchval(
            "SELECT run_id FROM runs WHERE program_id = $1 AND status = 'running' AND NOT dry_run", program_id
        )
        if running and not request.dry_run:
            raise Busy(f"run {running} is still running for {program_id}")
        if program.status == "closed":
            raise ProgramClosed(f"program {program_id} is closed: it forms no more groups")
        policy = resolve_policy(program.form, program.policy, request.policy_changes or {})
        if request.against_last_run:
            last = await repo.last_published_run(conn, program_id)
            if last is None or last["input"] is None:
                raise NotFound("no published run to compare against")
            base = MatchingInput.model_validate_json(last["input"])
            inp = base.model_copy(update={"policy": policy})
            seed = request.seed if request.seed is not None else int(last["seed"])
        else:
            inp = await build_input(conn, program, policy)
            seed = choose_seed(policy, request.seed)
        run_id = f"run-{uuid.uuid4().hex[:12]}"
        await repo.insert_run(
            conn, run_id, program_id, dry_run=request.dry_run, seed=seed, policy=policy, by=by, inp=inp,
            code_version=CODE_VERSION,
        )  # fmt: skip
    observed = run_metrics(metrics.registry) if metrics is not None else None
    run = execute_run(pool, run_id, program, inp, seed, request, observed)
    task = asyncio.create_task(run, name=f"matching-{run_id}")
    return run_id, task


HEARTBEAT_SECONDS = 5.0
CODE_VERSION = code_version()


async def execute_run(
    pool: asyncpg.Pool, run_id: str, program: repo.ProgramView, inp: MatchingInput, seed: int, request: RunRequest,
    metrics: RunMetrics | None = None,
) -> None:  # fmt: skip
    """Solve and publish, with a heartbeat on the run's row so other replicas know it is alive; a run
    cancelled with its service is recorded as failed rather than left running. Its outcome and duration
    go to ``metrics`` (``matching_runs_total``, ``matching_run_duration_seconds``)."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            with contextlib.suppress(Exception):  # a missed beat is harmless; the next one counts
                await repo.heartbeat(pool, run_id)

    heart = asyncio.create_task(beat(), name=f"heartbeat-{run_id}")
    started, outcome = time.monotonic(), "failed"
    if metrics is not None:
        metrics.in_progress.inc()
    try:
        outcome = await _solve_and_publish(pool, run_id, program, inp, seed, request)
    except asyncio.CancelledError:
        outcome = "cancelled"
        with contextlib.suppress(Exception):
            async with pool.acquire() as conn:
                await repo.finish_run(
                    conn, run_id, status="failed", digest=None, summary=None, result=None,
                    error="cancelled: the service stopped during the run",
                )  # fmt: skip
        raise
    finally:
        heart.cancel()
        if metrics is not None:
            metrics.in_progress.dec()
            metrics.finished(outcome, request.dry_run, time.monotonic() - started)


async def _solve_and_publish(
    pool: asyncpg.Pool, run_id: str, program: repo.ProgramView, inp: MatchingInput, seed: int, request: RunRequest
) -> str:
    """The run's outcome: ``completed``, or ``failed`` (recorded on the run with its reason)."""
    loop = asyncio.get_running_loop()
    last_report = [0.0]

    def progress(message: str, fraction: float) -> None:
        now = time.monotonic()
        if now - last_report[0] >= 0.5:  # throttled: a progress row update per half second at most
            last_report[0] = now
            text = f"{message} ({fraction:.0%})" if fraction else message
            asyncio.run_coroutine_threadsafe(repo.set_progress(pool, run_id, text), loop)

    input_digest = digest(inp)
    try:
        for attempt in range(1, CAPACITY_ATTEMPTS + 1):
            result = await _solved(inp, seed, progress)
            result = with_run_group_ids(result, run_id)  # re-matching the same people later gives new ids
            if attempt > 1:
                note = f"solved again on current mentor loads: another run published first ({attempt - 1}x)"
                result = result.model_copy(
                    update={"stats": result.stats.model_copy(update={"notes": [*result.stats.notes, note]})}
                )
            problems = validate(inp, result)
            if problems:  # never publish a solution that breaks a rule
                raise InvalidSolution(f"solution failed validation: {problems[:3]}")
            try:
                async with pool.acquire() as conn, conn.transaction():
                    if not await repo.still_running(conn, run_id):
                        raise RunAbandoned(f"run {run_id} was marked failed meanwhile; nothing was published")
                    if not request.dry_run:
                        await check_capacity(conn, result)
                        await check_members(conn, program.program_id, result)
                    summary = await _summary(conn, inp, result, request)
                    if not request.dry_run:
                        await _publish(conn, program, run_id, inp, result, input_digest)
                    await repo.finish_run(
                        conn, run_id, status="completed", digest=input_digest, summary=summary,
                        result=result.model_dump(mode="json"),
                    )  # fmt: skip
                    await conn.execute(
                        "UPDATE runs SET input = $2::jsonb WHERE run_id = $1", run_id, inp.model_dump_json()
                    )
                break
            except StaleInput:
                if attempt == CAPACITY_ATTEMPTS:
                    raise
                log.info("mentor loads changed while solving; solving again", extra={"run_id": run_id})
                async with pool.acquire() as conn:
                    inp = await build_input(conn, program, inp.policy)
                input_digest = digest(inp)
        log.info("matching run completed", extra={"run_id": run_id, "program_id": program.program_id})
        return "completed"
    except Exception as exc:
        log.exception("matching run failed", extra={"run_id": run_id, "program_id": program.program_id})
        async with pool.acquire() as conn:
            await repo.finish_run(
                conn, run_id, status="failed", digest=input_digest, summary=None, result=None,
                error=describe_exception(exc)[:2000],  # readable through the API: never quote input
            )  # fmt: skip
        return "failed"


async def _solved(inp: MatchingInput, seed: int, progress: Progress) -> MatchingResult:
    """The run's groups from a child process held to the time limit (``solver_process``); the child is
    stopped too if this task is cancelled (the service stopping), so no solve outlives its run."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(solve_within_limit, inp, seed, progress, stop)
    except asyncio.CancelledError:
        stop.set()
        raise


def _load_spread(inp: MatchingInput, result: MatchingResult) -> dict[str, float]:
    capacity = {p.participant_id: p.capacity or 0 for p in inp.participants if p.role.value == "mentor"}
    ratios = sorted(result.stats.load.get(m, 0) / c for m, c in capacity.items() if c > 0)
    if not ratios:
        return {}
    idle = sum(1 for r in ratios if r == 0)
    return {
        "mentors": len(ratios),
        "idle_mentors": idle,
        "min_ratio": round(ratios[0], 3),
        "median_ratio": round(ratios[len(ratios) // 2], 3),
        "max_ratio": round(ratios[-1], 3),
    }


def _stats_summary(inp: MatchingInput, result: MatchingResult) -> dict[str, Any]:
    s = result.stats
    reasons: dict[str, int] = {}
    for u in result.unplaced:
        reasons[u.reason_code.value] = reasons.get(u.reason_code.value, 0) + 1
    return {
        "placed": s.placed_count,
        "placed_bound": s.placed_bound,
        "unplaced": s.unplaced_count,
        "unplaced_by_reason": reasons,
        "groups": len(result.groups),
        "total_fit": s.total_fit,
        "mean_fit": round(s.total_fit / len(result.groups), 3) if result.groups else 0.0,
        "max_load_ratio": s.max_load_ratio,
        "load_spread": _load_spread(inp, result),
        "status": s.status,
        "gap": s.gap,
        "relaxed_gap": s.relaxed_gap,
        "fit_bound": s.fit_bound,
        "method": s.method,
        "wall_time_seconds": s.wall_time_seconds,
        "overrides_applied": s.overrides_applied,
        "seed": result.seed,
        "notes": s.notes,
    }


async def _summary(
    conn: asyncpg.Connection, inp: MatchingInput, result: MatchingResult, request: RunRequest
) -> dict[str, Any]:
    program_id = inp.program_id
    summary = _stats_summary(inp, result)
    if request.dry_run:
        last = await repo.last_published_run(conn, program_id)
        if last is not None and last["result"] is not None and last["input"] is not None:
            summary["compared_to"] = last["run_id"]
            before_input = MatchingInput.model_validate_json(last["input"])
            before = MatchingResult.model_validate_json(last["result"])
            summary["diff"] = diff_results(before_input, before, inp, result)
    return summary


async def _publish(
    conn: asyncpg.Connection, program: repo.ProgramView, run_id: str, inp: MatchingInput, result: MatchingResult,
    input_digest: str,
) -> None:  # fmt: skip
    """Groups, non-placements and the completion in one transaction with the groups' rows: all or none."""
    now = utcnow()
    rows = []
    events: list[Envelope] = []
    for g in result.groups:
        mentors = [m.participant_id for m in g.members if m.role.value == "mentor"]
        members = [m.participant_id for m in g.members]
        rows.append((
            g.group_id, program.program_id, run_id, members, mentors,
            json.dumps([m.model_dump(mode="json") for m in g.members]), g.fit,
            json.dumps([c.model_dump(mode="json") for c in g.explanation]),
        ))  # fmt: skip
        events.append(Envelope(data=GroupMatched(
            program_id=program.program_id, run_id=run_id, group_id=g.group_id, form=inp.form, members=g.members,
            fit=g.fit, explanation=g.explanation, cadence_days=program.cadence_days, matched_at=now,
        )))  # fmt: skip
    for u in result.unplaced:
        events.append(Envelope(data=ParticipantUnmatched(
            program_id=program.program_id, run_id=run_id, participant_id=u.participant_id,
            reason_code=u.reason_code, reason=u.reason,
        )))  # fmt: skip
    s = result.stats
    events.append(Envelope(data=MatchingCompleted(
        program_id=program.program_id, run_id=run_id, seed=result.seed, input_digest=input_digest,
        placed_count=s.placed_count, unplaced_count=s.unplaced_count, group_count=len(result.groups),
        total_fit=s.total_fit, max_load_ratio=s.max_load_ratio,
        solver=SolverStats(status=s.status, objective=s.total_fit, bound=s.fit_bound, gap=s.gap,
                           wall_time_seconds=s.wall_time_seconds),
        completed_at=now,
    )))  # fmt: skip
    await repo.insert_groups(conn, rows)
    await add_to_outbox(conn, *events)


async def publish_dry_run(pool: asyncpg.Pool, dry_run_id: str, by: str) -> str:
    """Publish what an administrator rehearsed: the dry run's very groups, re-validated against the rules,
    the current mentor loads and the current pool. Recorded as a new run that names the dry run."""
    async with pool.acquire() as conn, conn.transaction():
        dry = await repo.get_run(conn, dry_run_id)
        if dry is None:
            raise NotFound(f"no run {dry_run_id}")
        if not dry["dry_run"] or dry["status"] != "completed" or dry["result"] is None or dry["input"] is None:
            raise NotPublishable(f"run {dry_run_id} is not a completed dry run")
        program_id = dry["program_id"]
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"run:{program_id}")
        program = await repo.get_program(conn, program_id)
        if program is None:
            raise NotFound(f"no program {program_id}")
        if program.status == "closed":
            raise ProgramClosed(f"program {program_id} is closed: it forms no more groups")
        running = await conn.fetchval(
            "SELECT run_id FROM runs WHERE program_id = $1 AND status = 'running' AND NOT dry_run", program_id
        )
        if running:
            raise Busy(f"run {running} is still running for {program_id}")
        inp = MatchingInput.model_validate_json(dry["input"])
        run_id = f"run-{uuid.uuid4().hex[:12]}"
        result = with_run_group_ids(MatchingResult.model_validate_json(dry["result"]), run_id)
        problems = validate(inp, result)
        if problems:
            raise NotPublishable(f"the rehearsed groups break a rule: {problems[:3]}")
        await repo.insert_run(
            conn, run_id, program_id, dry_run=False, seed=int(dry["seed"]), policy=inp.policy, by=by, inp=inp,
            code_version=dry["code_version"] or CODE_VERSION, published_from=dry_run_id,
        )  # fmt: skip
        try:
            await check_capacity(conn, result)
            await check_members(conn, program_id, result)
        except StaleInput as exc:
            raise NotPublishable(f"the program moved on since the rehearsal; run a new dry run: {exc}") from exc
        input_digest = digest(inp)
        await _publish(conn, program, run_id, inp, result, input_digest)
        summary = _stats_summary(inp, result)
        summary["published_from"] = dry_run_id
        await repo.finish_run(
            conn, run_id, status="completed", digest=input_digest, summary=summary,
            result=result.model_dump(mode="json"),
        )  # fmt: skip
    log.info("dry run published as is", extra={"run_id": run_id, "program_id": program_id})
    return run_id


async def cancel_runs(tasks: set[asyncio.Task[None]]) -> None:
    """At shutdown, before the database pool closes: each run in progress records that it failed (see
    :func:`execute_run`), and a publication in flight rolls back whole."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
