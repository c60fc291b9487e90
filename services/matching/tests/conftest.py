"""Fixtures for the matching core's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from conftest import StackEndpoints, unique
from runtime.db import create_pool, migrate
from services.matching.domain import levels

MIGRATIONS = Path(__file__).parents[1] / "migrations"


@pytest.fixture(autouse=True)
def deterministic_budgets_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock never stops these runs: the tests check what the deterministic budgets decide,
    which a busy test machine must not change. Tests of the clock's own fallback set the deadline
    themselves (``levels.WALL_DEADLINE_SHARE``)."""
    monkeypatch.setattr(levels, "WALL_DEADLINE_SHARE", 1_000.0)


@pytest.fixture
async def db(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[asyncpg.Pool]:
    """A fresh matching schema, migrated, for the tests of handlers and runs on the real database."""
    schema = unique("matching_t")
    scratch_schemas.append(schema)
    pool = await create_pool(stack.admin_dsn, schema, max_size=4)
    await migrate(pool, schema, {"matching": MIGRATIONS})
    try:
        yield pool
    finally:
        await pool.close()
