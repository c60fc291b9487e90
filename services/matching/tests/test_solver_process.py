"""The solve in a child process held to the time limit (``adapters/solver_process.py``): the same
result as in-process when there is time, the last complete grouping when there is not, clear failures.

No assertion here is on time: a stand-in child that hangs is what runs past the limit."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from bench.synthetic_pool import instance
from contracts.events import UnmatchedReason
from contracts.policy import Form, Role
from runtime.logging import describe_exception
from services.matching.adapters.solver_process import SolverFailed, StoppedEmpty, solve_within_limit
from services.matching.domain import MatchingInput, MatchingResult, match, validate
from services.matching.domain.common import Checkpoint
from services.matching.domain.model import Group
from services.matching.tests import stand_in_solvers


def _pool(form: Form, size: int, limit: float = 2.0, seed: int = 5) -> MatchingInput:
    inp = instance(size, form, seed=seed)
    return inp.model_copy(update={"policy": inp.policy.model_copy(update={"time_limit_seconds": limit})})


def _named(result: MatchingResult) -> list[tuple[list[str], list[str]]]:
    def ids(g: Group, mentors: bool) -> list[str]:
        return sorted(m.participant_id for m in g.members if (m.role is Role.MENTOR) == mentors)

    return sorted((ids(g, True), ids(g, False)) for g in result.groups)


@pytest.mark.parametrize(("form", "size"), [(Form.FACILITATED_GROUP, 30), (Form.PEER_GROUP, 12), (Form.ONE_TO_ONE, 60)])
def test_with_time_to_spare_the_child_gives_the_in_process_result(form: Form, size: int) -> None:
    """Pools that end in well under a second of their 60 s limit: even a very busy machine leaves time."""
    inp = _pool(form, size, limit=60.0)
    messages: list[str] = []
    got = solve_within_limit(inp, 11, lambda message, _fraction: messages.append(message))
    want = match(inp, 11)
    assert got.model_dump(exclude={"stats"}) == want.model_dump(exclude={"stats"})
    assert got.stats.total_fit == want.stats.total_fit and got.stats.status == want.stats.status
    assert validate(inp, got) == []


def test_a_run_past_its_limit_is_stopped_and_its_last_grouping_stands() -> None:
    full = _pool(Form.FACILITATED_GROUP, 120, limit=3.0)
    mentors = [p for p in full.participants if p.role is Role.MENTOR]
    inp = full.model_copy(update={"participants": [p for p in full.participants if p not in mentors[3:]]})
    first: list[Checkpoint] = []
    match(inp, 11, on_stage=lambda c: first.append(c) if not first else None)
    result = solve_within_limit(inp, 11, child_main=stand_in_solvers.hangs_after_first_checkpoint)
    assert validate(inp, result) == []
    assert _named(result) == sorted((sorted(ms), sorted(members)) for ms, members in first[0].groups)
    assert result.stats.status == "GREEDY"
    assert any("time limit of 3 s ran out" in n and first[0].stage in n for n in result.stats.notes)
    assert result.unplaced, "three mentors cannot take everyone"
    assert all(u.reason_code is UnmatchedReason.OTHER for u in result.unplaced)
    assert all("stopped at its time limit of 3 s" in u.reason for u in result.unplaced)
    assert not [c for c in multiprocessing.active_children() if c.is_alive()], "the child was stopped"


def test_a_run_with_no_grouping_by_its_limit_fails_clearly() -> None:
    inp = _pool(Form.FACILITATED_GROUP, 40, limit=0.5)
    with pytest.raises(StoppedEmpty, match=r"time limit of 0\.5 s ran out before the run reached any grouping"):
        solve_within_limit(inp, 1, child_main=stand_in_solvers.hangs_at_once)


def test_a_stopped_service_stops_the_child_and_keeps_nothing() -> None:
    inp = _pool(Form.FACILITATED_GROUP, 40, limit=600.0)
    stop = threading.Event()
    stop.set()
    with pytest.raises(StoppedEmpty, match="service is shutting down"):
        solve_within_limit(inp, 1, stop=stop, child_main=stand_in_solvers.hangs_at_once)
    assert not [c for c in multiprocessing.active_children() if c.is_alive()]


def test_a_child_that_dies_or_raises_fails_the_run_without_quoting_the_input() -> None:
    inp = _pool(Form.FACILITATED_GROUP, 40)
    with pytest.raises(SolverFailed, match="ended without a result"):
        solve_within_limit(inp, 1, child_main=stand_in_solvers.dies)
    twice = inp.model_copy(update={"participants": [*inp.participants, inp.participants[0]]})
    with pytest.raises(SolverFailed, match="ValueError") as failed:
        solve_within_limit(twice, 1)
    assert inp.participants[0].participant_id not in describe_exception(failed.value)
