"""Publishing a run against the real database: capacity is per person across programs, so two programs'
runs that read the same mentor's load before either published must not both take the last slot."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from contracts.policy import Form, default_policy
from services.matching import handlers
from services.matching.adapters import runs as repo
from services.matching.domain import MatchingInput
from services.matching.tests.factories import mentor, person

pytestmark = pytest.mark.stack


async def _program(pool: asyncpg.Pool, program_id: str, mentee: str) -> repo.ProgramView:
    policy = default_policy(Form.ONE_TO_ONE)
    await pool.execute(
        "INSERT INTO programs (program_id, name, form, cadence_days, policy) VALUES ($1, $1, 'one_to_one', 30, $2)",
        program_id,
        policy.model_dump_json(),
    )
    for p in (mentor("M", capacity=1), person(mentee)):
        await pool.execute(
            "INSERT INTO pool (program_id, participant_id, role, capacity, profile) VALUES ($1, $2, $3, $4, $5)",
            program_id,
            p.participant_id,
            p.role.value,
            p.capacity,
            p.model_dump_json(),
        )
    async with pool.acquire() as conn:
        view = await repo.get_program(conn, program_id)
    assert view is not None
    return view


async def _race(db: asyncpg.Pool) -> None:
    """Both programs' runs read M's load (0 of 1) before either publishes."""
    programs = [await _program(db, "prg-a", "a"), await _program(db, "prg-b", "b")]
    started = []
    for program in programs:
        async with db.acquire() as conn:
            inp = await handlers.build_input(conn, program, program.policy)
            assert inp.existing_load == {}
            run_id = f"run-{program.program_id}"
            await repo.insert_run(
                conn,
                run_id,
                program.program_id,
                dry_run=False,
                seed=1,
                policy=program.policy,
                by="test",
                inp=inp,
                code_version="test",
            )
        started.append(handlers.execute_run(db, run_id, program, inp, 1, handlers.RunRequest()))
    await asyncio.gather(*started)


async def _groups_of_m(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await db.fetch("SELECT group_id, run_id FROM groups WHERE 'M' = ANY(mentor_ids)"))


async def test_concurrent_runs_of_two_programs_never_overfill_a_shared_mentor(db: asyncpg.Pool) -> None:
    """Exactly one run gets M's last slot; the other sees the conflict at publication, solves again on the
    current loads, and completes with its mentee unplaced for want of capacity."""
    await _race(db)
    rows = await db.fetch("SELECT run_id, status, summary FROM runs ORDER BY run_id")
    assert [r["status"] for r in rows] == ["completed", "completed"]
    (group,) = await _groups_of_m(db)
    loser = next(r for r in rows if r["run_id"] != group["run_id"])
    summary = json.loads(loser["summary"])
    assert summary["placed"] == 0 and summary["unplaced_by_reason"] == {"capacity_exhausted": 1}
    assert any("solved again on current mentor loads" in n for n in summary["notes"])


async def test_a_run_that_keeps_losing_the_race_fails_clearly_and_publishes_nothing(
    db: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handlers, "CAPACITY_ATTEMPTS", 1)
    await _race(db)
    rows = await db.fetch("SELECT status, error FROM runs ORDER BY run_id")
    assert sorted(r["status"] for r in rows) == ["completed", "failed"]
    failed = next(r for r in rows if r["status"] == "failed")
    assert "CapacityConflict" in failed["error"] and "M: 1 active + 1 new > capacity 1" in failed["error"]
    assert len(await _groups_of_m(db)) == 1
    assert len(await db.fetch("SELECT group_id FROM groups")) == 1


async def test_a_run_whose_placed_mentee_withdrew_meanwhile_solves_again_without_them(db: asyncpg.Pool) -> None:
    program = await _program(db, "prg-w", "a")
    async with db.acquire() as conn:
        inp = await handlers.build_input(conn, program, program.policy)
        await repo.insert_run(
            conn,
            "run-w",
            "prg-w",
            dry_run=False,
            seed=1,
            policy=program.policy,
            by="test",
            inp=inp,
            code_version="test",
        )
    # "a" withdraws after the run read the pool, before it publishes
    await db.execute("UPDATE pool SET active = false WHERE program_id = 'prg-w' AND participant_id = 'a'")
    await handlers.execute_run(db, "run-w", program, inp, 1, handlers.RunRequest())
    row = await db.fetchrow("SELECT status, summary FROM runs WHERE run_id = 'run-w'")
    assert row["status"] == "completed"
    summary = json.loads(row["summary"])
    assert summary["placed"] == 0 and any("solved again" in n for n in summary["notes"])
    assert await db.fetchval("SELECT count(*) FROM groups") == 0


async def test_only_runs_whose_heartbeat_stopped_are_marked_failed(db: asyncpg.Pool) -> None:
    policy = default_policy(Form.ONE_TO_ONE)
    inp = MatchingInput(program_id="prg-x", form=Form.ONE_TO_ONE, policy=policy, participants=[])
    async with db.acquire() as conn:
        for run_id in ("run-dead", "run-alive"):
            await repo.insert_run(
                conn, run_id, "prg-x", dry_run=False, seed=1, policy=policy, by="test", inp=inp, code_version="test"
            )
        await conn.execute("UPDATE runs SET heartbeat_at = now() - interval '5 minutes' WHERE run_id = 'run-dead'")
        assert await repo.fail_orphaned_runs(conn, silent_for_seconds=60) == ["run-dead"]
        # a late finish of the dead run changes nothing: failed stays failed
        await repo.finish_run(conn, "run-dead", status="completed", digest=None, summary=None, result=None)
    rows = {r["run_id"]: r["status"] for r in await db.fetch("SELECT run_id, status FROM runs")}
    assert rows == {"run-dead": "failed", "run-alive": "running"}
