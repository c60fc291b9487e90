"""Fixtures for the matching core's tests."""

from __future__ import annotations

import pytest

from services.matching.domain import levels


@pytest.fixture(autouse=True)
def deterministic_budgets_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wall clock never stops these runs: the tests check what the deterministic budgets decide,
    which a busy test machine must not change. Tests of the clock's own fallback set the deadline
    themselves (``levels.WALL_DEADLINE_SHARE``)."""
    monkeypatch.setattr(levels, "WALL_DEADLINE_SHARE", 1_000.0)
