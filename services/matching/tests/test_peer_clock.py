"""Peer groups: the deterministic budgets decide the groups, the wall clock is only a safety net.

The clock is replaced by a virtual one that moves a fixed step at every reading, whatever the machine
does: frozen (step 0), the deadline never comes; fast (each reading shows 10 ms gone, far more than
the work between two readings takes), the run sees its time go many times faster than it does, as on
a loaded machine. Both must give the same groups, with no note that the clock cut anything: the
amount of search is a count fixed by the input and the limit, never by how fast the clock runs. A
clock that strikes early still gives valid groups, and says so. Nothing here depends on the speed of
the machine running the tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from bench.synthetic_pool import instance
from contracts.policy import Form
from services.matching.domain import MatchingInput, MatchingResult, levels, match, validate

LIMIT = 1.0
"""The pools' time limit: the budgets (annealing proposals, restarts, re-splits) scale with it."""


def _pool(peers: int) -> MatchingInput:
    inp = instance(peers * 4 // 5, Form.PEER_GROUP, seed=peers)  # as the benchmark's peer rows
    return inp.model_copy(update={"policy": inp.policy.model_copy(update={"time_limit_seconds": LIMIT})})


def _virtual_clock(step: float) -> Callable[[], float]:
    now = [time.perf_counter()]  # the run's start (``Prepared.started``) is read from the real clock

    def read() -> float:
        now[0] += step
        return now[0]

    return read


def _run(monkeypatch: pytest.MonkeyPatch, inp: MatchingInput, step: float) -> MatchingResult:
    monkeypatch.setattr(levels, "WALL_DEADLINE_SHARE", 0.85)  # the product's deadline, not the tests' default
    with monkeypatch.context() as patched:
        patched.setattr(time, "perf_counter", _virtual_clock(step))
        return match(inp, 2026)


def _groups(result: MatchingResult) -> list[list[str]]:
    return sorted(sorted(m.participant_id for m in g.members) for g in result.groups)


def _clock_notes(result: MatchingResult) -> list[str]:
    return [n for n in result.stats.notes if "clock" in n or "time limit" in n]


@pytest.mark.parametrize("peers", [30, 200])
def test_a_fast_clock_changes_nothing(monkeypatch: pytest.MonkeyPatch, peers: int) -> None:
    """30 peers: CP-SAT's levels, annealing, restarts and exact re-splits; 200: the greedy's groups,
    the descent and the annealing."""
    inp = _pool(peers)
    frozen = _run(monkeypatch, inp, 0.0)
    fast = _run(monkeypatch, inp, 0.01)
    assert _clock_notes(frozen) == [] and _clock_notes(fast) == []
    assert _groups(fast) == _groups(frozen)
    assert fast.stats.total_fit == frozen.stats.total_fit
    assert validate(inp, fast) == []


def test_a_clock_that_strikes_leaves_valid_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reading a fifth of the limit: the deadline passes within the first steps of the search."""
    inp = _pool(30)
    cut = _run(monkeypatch, inp, LIMIT / 5)
    assert _clock_notes(cut) != []
    assert validate(inp, cut) == []
    assert cut.stats.placed_count == _run(monkeypatch, inp, 0.0).stats.placed_count
