"""The same input and seed give the same facilitated groups on an idle or a loaded machine (issue 13).

The 1,000-mentee benchmark pools used to run into their 3 s wall-clock deadline, so the groups depended
on where the clock struck. Now every stop of those runs is a count (the solver's deterministic budgets,
the reassignment's rounds) and the clock is only a safety net. The loaded machine is simulated, not
timed: a clock that runs twice as fast as the CPU time of the thread that runs the match (a machine
twice as slow for the same work; a thread's CPU time, unlike wall time or the process's CPU time,
does not move with what else runs on the machine or in the test process), at the real deadline
shares. Nothing here asserts on time.
"""

from __future__ import annotations

import time

import pytest

from bench.matching_pools import facilitated
from services.matching.domain import levels, match
from services.matching.domain.model import MatchingResult

SLOWDOWN = 2.0
PRODUCT_DEADLINE_SHARE = 0.85
"""``levels.WALL_DEADLINE_SHARE`` as the product has it (the suite's conftest switches the clock off)."""
CPU_HEADROOM = 0.8
"""Twice the unhurried run's CPU must stay under this share of the deadline: the loaded run's CPU time
varies by some tens of percent from run to run on a shared machine."""


def _groups(result: MatchingResult) -> list[list[str]]:
    return sorted(sorted(m.participant_id for m in g.members) for g in result.groups)


def _needs_room_for_twice_slower(cpu: float, limit: float) -> None:
    """The claim is about a machine twice as slow as one on which the run ends in under half of its
    deadline (85 % of the limit). A test machine that is itself slower than that (measured 2026-12-01:
    the tight row took 1.3-1.8 s of CPU where it took 0.6 s the day before, old and new code alike)
    cannot simulate it: a clock twice its own speed then strikes before the levels whatever the code.
    Such a machine skips, saying why, instead of failing on its own speed."""
    if SLOWDOWN * cpu > CPU_HEADROOM * PRODUCT_DEADLINE_SHARE * limit:
        pytest.skip(
            f"this machine ran the pool in {cpu:.2f} s of CPU: twice that comes within 20 % of the {limit:g} s limit's "
            "deadline already, so it cannot stand for a machine twice as slow as one with room"
        )


@pytest.mark.parametrize("family", ["capacity", "tight"])
def test_a_twice_slower_machine_gives_the_same_groups_at_1000_mentees(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inp = facilitated(1000, family)  # the benchmark's row: 1,000 mentees, a 3 s limit
    cpu_before = time.thread_time()
    unhurried = match(inp, 2026)  # the clock switched off (conftest)
    _needs_room_for_twice_slower(time.thread_time() - cpu_before, inp.policy.time_limit_seconds)
    # placed is proven by the flow bound and the hint; mentors used and fit are not searched (500+ mentees)
    assert not {r.level for r in unhurried.stats.solves} & {"placed", "mentors_used", "fit"}

    reads = 0
    wall0, cpu0 = time.perf_counter(), time.thread_time()

    def slow_machine_clock() -> float:
        nonlocal reads
        reads += 1
        return wall0 + SLOWDOWN * (time.thread_time() - cpu0)

    monkeypatch.setattr(levels, "WALL_DEADLINE_SHARE", PRODUCT_DEADLINE_SHARE)
    monkeypatch.setattr(time, "perf_counter", slow_machine_clock)
    loaded = match(inp, 2026)
    monkeypatch.undo()

    assert reads > 0  # the run did look at the (simulated) clock
    # not asserted: that the clock never struck. A busy test machine inflates CPU time too (up to 1.7
    # times here at load 5), and then the clock may stop the run after the first fit reassignment:
    # status GREEDY, and those groups, which are the ones the levels keep anyway
    assert _groups(loaded) == _groups(unhurried)
    assert loaded.stats.placed_count == loaded.stats.placed_bound == unhurried.stats.placed_count
    assert loaded.stats.total_fit == unhurried.stats.total_fit
