"""The department LP bound of facilitated placement (``facilitated_lp``): never below the exact optimum of
groups that keep eligibility, the size bounds and the department bound (CP-SAT on small instances), and
tight where the max flow is loose (one dominant department)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from ortools.sat.python import cp_model

from bench.probes.group_probe import fac, one_department
from services.matching.domain import match, validate
from services.matching.domain.facilitated_lp import department_lp_bound


def exact_placement(
    eligible: np.ndarray, dept: list[int], own: list[int], free: list[int], size: tuple[int, int], limit: int
) -> int:
    """The most people groups can hold: each mentor's slots open or not, each open one within the size
    bounds and with at most ``limit`` of a department (the mentor's own included)."""
    model = cp_model.CpModel()
    n, m = eligible.shape
    slots = [(k, s) for k in range(m) for s in range(free[k])]
    x = {(i, j): model.new_bool_var("") for i in range(n) for j, (k, _) in enumerate(slots) if eligible[i, k]}
    for i in range(n):
        model.add(sum(v for (p, _), v in x.items() if p == i) <= 1)
    for j, (k, _) in enumerate(slots):
        opened = model.new_bool_var("")
        members = [v for (_, s), v in x.items() if s == j]
        model.add(sum(members) >= size[0] * opened)
        model.add(sum(members) <= size[1] * opened)
        for d in set(dept):
            same = [v for (p, s), v in x.items() if s == j and dept[p] == d]
            model.add(sum(same) + (1 if own[k] == d else 0) * opened <= limit)
    model.maximize(sum(x.values()))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(model) == cp_model.OPTIMAL
    return int(solver.objective_value)


def _lp(
    eligible: np.ndarray, dept: list[int], own: list[int], free: list[int], size: tuple[int, int], limit: int
) -> int | None:
    """The LP's bound, or None where it cannot be below the max flow (every room at least the minimum)."""
    d = max([*dept, *own]) + 1
    codes = np.array(dept, dtype=np.int64)
    by_department = np.stack([eligible[codes == c].sum(axis=0) for c in range(d)], axis=1).astype(np.int64)
    room = limit - (np.array(own)[:, None] == np.arange(d)[None, :]).astype(np.int64)
    people = np.bincount(codes, minlength=d).astype(np.int64)
    free_arr = np.array(free, dtype=np.int64)
    return department_lp_bound(by_department, people, np.maximum(0, room), free_arr, size[0], size[1])


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 7).flatmap(
        lambda n: st.integers(1, 3).flatmap(
            lambda m: st.tuples(
                st.lists(st.lists(st.booleans(), min_size=m, max_size=m), min_size=n, max_size=n),
                st.lists(st.integers(0, 2), min_size=n, max_size=n),
                st.lists(st.integers(0, 2), min_size=m, max_size=m),
                st.lists(st.integers(0, 2), min_size=m, max_size=m),
                st.integers(1, 3),
                st.integers(0, 2),
                st.integers(1, 2),
            )
        )
    )
)
def test_the_lp_bound_is_never_below_the_exact_optimum(
    case: tuple[list[list[bool]], list[int], list[int], list[int], int, int, int],
) -> None:
    rows, dept, own, free, low, extra, limit = case
    eligible = np.array(rows, dtype=bool)
    size = (low, low + extra)
    bound = _lp(eligible, dept, own, free, size, limit)
    assert bound is None or bound >= exact_placement(eligible, dept, own, free, size, limit)


def test_one_dominant_department_bounds_placement_by_the_people_of_the_others() -> None:
    """Four people of department 0 and one of department 1; two mentors of department 0 with a group each;
    groups of 3, at most 2 of a department: a group holds at most one of department 0 beside its mentor,
    so it needs two of the others, and there is one. Nobody can be placed; the max flow, which relaxes
    the minimum, places 3, the LP 1 (a third of a group per mentor)."""
    eligible = np.ones((5, 2), dtype=bool)
    assert _lp(eligible, [0, 0, 0, 0, 1], [0, 0], [1, 1], (3, 3), 2) == 1
    assert exact_placement(eligible, [0, 0, 0, 0, 1], [0, 0], [1, 1], (3, 3), 2) == 0
    # a mentor of another department: two of department 0 and the one of department 1
    assert _lp(eligible, [0, 0, 0, 0, 1], [0, 2], [1, 1], (3, 3), 2) == 3


def test_a_department_dominated_pool_places_close_to_its_proven_bound() -> None:
    """One department at 80 % of a 1,000-mentee pool, at most 2 per group, groups of 3-8: the max flow's
    bound was 1,000 and the run placed 287; the department LP counts the department bound with the group
    minimum (474), the class LP who may join whom too (471), and the greedy that places by department,
    with its chains, reaches it (every rule kept)."""
    inp = one_department(fac(1_000, 16, max_same_department=2), 16)
    result = match(inp, 4242)
    assert validate(inp, result) == []
    assert result.stats.placed_bound <= 474
    assert result.stats.placed_count == result.stats.placed_bound  # proven: the class LP (below) says 471
