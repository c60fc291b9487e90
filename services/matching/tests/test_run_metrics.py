"""Matching runs as operations count them, on the real database: every run ends in exactly one outcome
(completed, failed, cancelled) with its duration, and a run found orphaned is counted by the replica
that marks it failed."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from conftest import eventually
from contracts.policy import Form, default_policy
from runtime.metrics import RuntimeMetrics
from services.matching import app as matching_app
from services.matching import domain, handlers
from services.matching.adapters import runs as repo
from services.matching.domain import MatchingInput
from services.matching.tests.factories import mentor, person

pytestmark = pytest.mark.stack


async def _program(pool: asyncpg.Pool, program_id: str) -> None:
    await pool.execute(
        "INSERT INTO programs (program_id, name, form, cadence_days, policy) VALUES ($1, $1, 'one_to_one', 30, $2)",
        program_id,
        default_policy(Form.ONE_TO_ONE).model_dump_json(),
    )
    for p in (mentor(f"{program_id}-m", capacity=1), person(f"{program_id}-a")):
        await pool.execute(
            "INSERT INTO pool (program_id, participant_id, role, capacity, profile) VALUES ($1, $2, $3, $4, $5)",
            program_id, p.participant_id, p.role.value, p.capacity, p.model_dump_json(),
        )  # fmt: skip


def _value(metrics: RuntimeMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


async def _run(db: asyncpg.Pool, metrics: RuntimeMetrics, program_id: str, *, dry_run: bool = False) -> str:
    run_id, task = await handlers.start_run(db, program_id, handlers.RunRequest(dry_run=dry_run), "admin", metrics)
    await task
    status: str = await db.fetchval("SELECT status FROM runs WHERE run_id = $1", run_id)
    return status


async def test_each_run_is_counted_once_by_its_outcome_with_its_duration(
    db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = RuntimeMetrics("matching")
    await _program(db, "prg-ok")
    assert await _run(db, metrics, "prg-ok", dry_run=True) == "completed"
    assert await _run(db, metrics, "prg-ok") == "completed"

    await _program(db, "prg-bad")
    monkeypatch.setattr(handlers, "validate", lambda *_: ["a rule the solver broke"])
    assert await _run(db, metrics, "prg-bad") == "failed"

    runs = "matching_runs_total"
    assert _value(metrics, runs, outcome="completed", dry_run="true") == 1
    assert _value(metrics, runs, outcome="completed", dry_run="false") == 1
    assert _value(metrics, runs, outcome="failed", dry_run="false") == 1
    assert _value(metrics, runs, outcome="cancelled", dry_run="false") == 0
    durations = "matching_run_duration_seconds_count"
    assert _value(metrics, durations, outcome="completed", dry_run="false") == 1
    assert _value(metrics, durations, outcome="failed", dry_run="false") == 1
    assert _value(metrics, "matching_run_duration_seconds_sum", outcome="completed", dry_run="false") > 0
    assert _value(metrics, "matching_runs_in_progress") == 0


async def test_a_run_stopped_with_its_service_is_counted_as_cancelled(
    db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = RuntimeMetrics("matching")
    await _program(db, "prg-stop")
    stopped = threading.Event()

    def slow_solve(inp: Any, seed: int, progress: Any, stop: threading.Event) -> Any:
        """Stands for a solver still at work: it ends when the run stops it (or the test gives up)."""
        if stop.wait(30):
            stopped.set()
        return domain.match(inp, seed)

    monkeypatch.setattr(handlers, "solve_within_limit", slow_solve)
    run_id, task = await handlers.start_run(db, "prg-stop", handlers.RunRequest(), "admin", metrics)

    async def solving() -> bool:
        return metrics.registry.get_sample_value("matching_runs_in_progress") == 1

    await eventually(solving, 10, "the run to be solving")
    await handlers.cancel_runs({task})
    assert await db.fetchval("SELECT status FROM runs WHERE run_id = $1", run_id) == "failed"
    assert await asyncio.to_thread(stopped.wait, 10), "the solve was told to stop with its run"
    assert _value(metrics, "matching_runs_total", outcome="cancelled", dry_run="false") == 1
    assert _value(metrics, "matching_runs_in_progress") == 0


@dataclass
class _Ctx:
    pool: asyncpg.Pool
    metrics: RuntimeMetrics


async def test_an_orphaned_run_is_counted_by_the_replica_that_marks_it_failed(db: asyncpg.Pool) -> None:
    metrics = RuntimeMetrics("matching")
    policy = default_policy(Form.ONE_TO_ONE)
    inp = MatchingInput(program_id="prg-x", form=Form.ONE_TO_ONE, policy=policy, participants=[])
    async with db.acquire() as conn:
        await repo.insert_run(
            conn, "run-dead", "prg-x", dry_run=False, seed=1, policy=policy, by="test", inp=inp, code_version="test"
        )
        await conn.execute("UPDATE runs SET heartbeat_at = now() - interval '5 minutes'")
    await matching_app.fail_orphaned_runs(_Ctx(db, metrics))  # type: ignore[arg-type]
    assert _value(metrics, "matching_runs_orphaned_total") == 1
