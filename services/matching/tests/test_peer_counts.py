"""The counting bound on placed peers (``peer_counts``) is a bound: on small tight pools never below the
most peers any valid grouping places (set packing over every valid group, CBC), and where one
department dominates it is below the old count of peers with enough compatible peers."""

from __future__ import annotations

import numpy as np
import pytest
from ortools.linear_solver import pywraplp

from bench.peer_bound import problem_of
from bench.synthetic_pool import instance
from contracts.policy import Form
from services.matching.domain import MatchingInput, match, validate
from services.matching.domain.peer_counts import counted_most, most_in_component
from services.matching.tests.test_peer_bound import _valid_groups

TIGHT = {"max_timezone_distance_hours": 2.0, "max_same_department": 1, "max_peer_level_spread": 0}


def _pool(size: int, seed: int, **policy: object) -> MatchingInput:
    inp = instance(size, Form.PEER_GROUP, seed=seed)
    changes = {"time_limit_seconds": 3.0, "group_members_min": 3, "group_members_max": 5, **policy}
    people = inp.participants[:size]
    return inp.model_copy(update={"participants": people, "policy": inp.policy.model_copy(update=changes)})


def test_most_in_component_by_hand() -> None:
    # 7 of one department, 2 of another, groups of 3-5, one per department: no group has 3 departments
    assert most_in_component(np.array([0] * 7 + [1] * 2), 3, 5, 1) == 0
    # 3 departments of 4, 1, 1: the most is one group of 3; the count (a bound) says 4, as it does not see
    # that a second group would lack departments
    assert most_in_component(np.array([0] * 4 + [1, 2]), 3, 5, 1) == 4
    # two per department allowed: 6 of one department and 3 others
    assert most_in_component(np.array([0] * 6 + [1, 2, 3]), 3, 5, 2) == 9  # three groups {0, 0, x}
    assert most_in_component(np.array([0, 1]), 3, 5, None) == 0


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_counted_bound_holds_on_tight_pools(seed: int) -> None:
    inp = _pool(40, seed, **TIGHT)
    pp = problem_of(inp, {p.participant_id for p in inp.participants})
    groups = _valid_groups(pp)
    solver = pywraplp.Solver.CreateSolver("CBC")
    chosen = [solver.BoolVar(f"g{k}") for k in range(len(groups))]
    for r in range(len(pp.compat)):
        solver.Add(solver.Sum([v for v, g in zip(chosen, groups, strict=True) if r in g]) <= 1)
    solver.Maximize(solver.Sum([len(g) * v for g, v in zip(groups, chosen, strict=True)]))
    assert solver.Solve() == pywraplp.Solver.OPTIMAL
    most = round(solver.Objective().Value())
    counted = counted_most(pp.compat, list(range(len(pp.compat))), pp.dept, 3, 5, 1)
    assert counted >= most
    result = match(inp, 2026)
    assert validate(inp, result) == []
    assert most >= result.stats.placed_count
    assert result.stats.placed_bound >= most
