"""The batch form of the projection has exactly the effect of the per-event handlers, on real Postgres."""

from __future__ import annotations

import asyncpg
import pytest

from conftest import StackEndpoints, unique
from runtime.db import create_pool, migrate
from services.metrics.adapters.projection import HANDLERS, apply_batch
from services.metrics.cli import MIGRATIONS
from services.metrics.tests.scenario import DAY, T0, Scenario

pytestmark = pytest.mark.stack

TABLES = ("programs", "participants", "groups", "members", "unmatched", "runs", "sessions_held", "slips", "goals",
          "closures", "expectations", "feedback", "alerts")  # fmt: skip


async def rows(pool: asyncpg.Pool) -> dict[str, list[tuple[object, ...]]]:
    return {t: sorted(tuple(r) for r in await pool.fetch(f"SELECT * FROM {t}")) for t in TABLES}


async def test_batches_equal_one_event_at_a_time(stack: StackEndpoints, scratch_schemas: list[str]) -> None:
    s = Scenario(unique("batch")).build().widen(busy=6, idle=2)
    s.held(9, T0 + 29 * DAY, [s.pid("M6")])
    s.answer(3, 9, revision=2)  # a replaced answer inside the same batch as its first revision
    one, many = unique("metrics_one"), unique("metrics_many")
    scratch_schemas += [one, many]
    pools = [await create_pool(stack.admin_dsn, schema) for schema in (one, many)]
    try:
        for pool, schema in zip(pools, (one, many), strict=True):
            await migrate(pool, schema, {"metrics": MIGRATIONS})
        async with pools[0].acquire() as conn:
            for env in s.events:
                async with conn.transaction():
                    await HANDLERS[type(env.data)](conn, env)
        async with pools[1].acquire() as conn:
            for start in range(0, len(s.events), 17):  # batches that cut through every kind of event
                async with conn.transaction():
                    await apply_batch(conn, s.events[start : start + 17])
        assert await rows(pools[0]) == await rows(pools[1])
        assert (await rows(pools[1]))["feedback"], "the scenario filled the tables"
    finally:
        for pool in pools:
            await pool.close()
