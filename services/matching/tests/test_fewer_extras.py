"""Extra groups the fit flow wants, when it cannot fill all of them (``fit_polish._fewer_extras``).

On the outside-in probe's pool where at most one member of a department sits in a group, a quarter of
the placed people are in one department and one declared conflict per two people keeps pairs apart,
the flow wanted 35 groups beyond the greedy's; the placed people could fill 11 of them at the minimum,
so the flow failed and every extra group was dropped. Fewer of them (5) can be filled: the fit rose and
the groups they open had room for people left out (946 placed before, 957 now, seed 4242).
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

from bench.probes.group_probe import cases, certificates
from services.matching.domain import match, validate
from services.matching.domain.fit_polish import _fewer_extras
from services.matching.domain.reassignment import Arcs, Reassignment, Slot

SEED = 4242


def test_where_the_department_bound_binds_some_extra_groups_open_and_take_people_left_out() -> None:
    inp = cases()["fac conflicts0.5 dept1 s17 1000"][1]()
    result = match(inp, SEED)
    assert validate(inp, result) == []
    assert result.stats.placed_count >= 957
    insertable, lottery_swaps, complete = certificates(inp, result)
    assert complete and insertable == 0 and lottery_swaps == 0


def _problem(people: int, own: list[Slot], extra: list[Slot], size_min: int) -> Reassignment:
    assign = {f"p{i:02d}": own[i % len(own)] for i in range(people)}
    options = {pid: own + extra for pid in assign}
    return Reassignment(
        assign=assign,
        arcs=Arcs.of(sorted(assign), options, {}),
        dept=dict.fromkeys(assign, "d"),
        mentor_dept=dict.fromkeys(own + extra, "m"),
        apart=frozenset(),
        size_min=size_min,
        size_max=8,
        max_same_department=None,
        extra=frozenset(extra),
    )


def test_extra_groups_are_tried_all_then_as_many_as_the_minimum_fills_then_halved_idle_mentors_first() -> None:
    own = [(0, 0), (1, 0)]
    extra = [(2, 1), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0), (8, 0), (9, 0), (2, 2)]
    tried = [
        sorted(p.extra) for p in _fewer_extras(_problem(people=18, own=own, extra=extra, size_min=3))
    ]  # 18 people fill 6 groups of 3: the two own groups and 4 extra
    assert [len(t) for t in tried] == [9, 4, 2, 1, 0]
    assert tried[1] == [(3, 0), (4, 0), (5, 0), (6, 0)]  # first groups (idle mentors) before second ones
    assert all(set(later) <= set(earlier) for earlier, later in pairwise(tried))


def test_without_extra_groups_or_with_groups_chosen_afresh_the_problem_is_tried_as_it_is() -> None:
    plain = _problem(people=6, own=[(0, 0)], extra=[], size_min=3)
    assert [p.extra for p in _fewer_extras(plain)] == [frozenset()]
    chosen = _problem(people=6, own=[(0, 0)], extra=[(1, 0)], size_min=3)
    closing = replace(chosen, closing=frozenset({(0, 0)}))
    assert [p.extra for p in _fewer_extras(closing)] == [frozenset({(1, 0)})]
