"""The facilitated placement bound: a sparse flow completed by augmenting paths over the eligibility
matrix equals the max flow over every eligible pair (brute force), whatever the sparse arcs miss."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ortools.graph.python import max_flow

from services.matching.domain import facilitated_bound
from services.matching.domain.facilitated_bound import placement_bound
from services.matching.domain.facilitated_prep import Eligibility


def _full_max_flow(eligible: np.ndarray, caps: np.ndarray) -> int:
    n, m = eligible.shape
    f = max_flow.SimpleMaxFlow()
    for i in range(n):
        f.add_arc_with_capacity(0, 2 + i, 1)
        for k in np.flatnonzero(eligible[i] & (caps > 0)):
            f.add_arc_with_capacity(2 + i, 2 + n + int(k), 1)
    for j in range(m):
        f.add_arc_with_capacity(2 + n + j, 1, int(caps[j]))
    assert f.solve(0, 1) == f.OPTIMAL
    return int(f.optimal_flow())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(1, 9).flatmap(
        lambda n: st.integers(1, 5).flatmap(
            lambda m: st.tuples(
                st.lists(st.lists(st.booleans(), min_size=m, max_size=m), min_size=n, max_size=n),
                st.lists(st.integers(0, 3), min_size=m, max_size=m),
                st.lists(st.integers(-1, m - 1), min_size=n, max_size=n),
            )
        )
    )
)
def test_the_bound_is_the_max_flow_over_every_eligible_pair(
    monkeypatch: pytest.MonkeyPatch, case: tuple[list[list[bool]], list[int], list[int]]
) -> None:
    rows, caps_list, greedy_list = case
    eligible = np.array(rows, dtype=bool)
    caps = np.array(caps_list, dtype=np.int64)
    free = (caps > 0).astype(np.int64)
    people = [f"P{i}" for i in range(len(rows))]
    el = Eligibility(people, eligible, np.zeros(eligible.shape, dtype=np.int64), free)
    # a feasible greedy assignment: each person at most once, within each mentor's capacity
    greedy = np.full(len(rows), -1, dtype=np.int64)
    used = np.zeros(len(caps), dtype=np.int64)
    for i, k in enumerate(greedy_list):
        if k >= 0 and eligible[i, k] and used[k] < caps[k]:
            greedy[i] = k
            used[k] += 1
    # the same value for every input, so the fixture not being reset between inputs is harmless
    monkeypatch.setattr(facilitated_bound, "SPARSE_ARCS", 1)  # the sparse flow misses arcs: paths must find them
    bound = placement_bound(el, people, caps, np.arange(len(rows), dtype=np.int64), greedy)
    assert bound.proven
    assert bound.value == _full_max_flow(eligible, caps)
    placed = bound.mentor_of[bound.mentor_of >= 0]
    assert all(eligible[i, k] for i, k in enumerate(bound.mentor_of) if k >= 0)
    assert (np.bincount(placed, minlength=len(caps)) <= caps).all()


def _full_max_flow_departments(eligible: np.ndarray, caps: np.ndarray, dept: np.ndarray, dcaps: np.ndarray) -> int:
    n, m = eligible.shape
    d = dcaps.shape[1]
    f = max_flow.SimpleMaxFlow()
    node = 2 + n + m  # (mentor, department) nodes after the mentors
    for i in range(n):
        f.add_arc_with_capacity(0, 2 + i, 1)
        for k in np.flatnonzero(eligible[i]):
            f.add_arc_with_capacity(2 + i, node + int(k) * d + int(dept[i]), 1)
    for j in range(m):
        for c in range(d):
            f.add_arc_with_capacity(node + j * d + c, 2 + n + j, int(dcaps[j, c]))
        f.add_arc_with_capacity(2 + n + j, 1, int(caps[j]))
    assert f.solve(0, 1) == f.OPTIMAL
    return int(f.optimal_flow())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.integers(1, 10).flatmap(
        lambda n: st.integers(1, 5).flatmap(
            lambda m: st.tuples(
                st.lists(st.lists(st.booleans(), min_size=m, max_size=m), min_size=n, max_size=n),
                st.lists(st.integers(0, 4), min_size=m, max_size=m),
                st.lists(st.integers(0, 2), min_size=n, max_size=n),
                st.lists(st.lists(st.integers(0, 2), min_size=3, max_size=3), min_size=m, max_size=m),
            )
        )
    )
)
def test_with_departments_the_bound_is_the_max_flow_through_mentor_department_nodes(
    monkeypatch: pytest.MonkeyPatch, case: tuple[list[list[bool]], list[int], list[int], list[list[int]]]
) -> None:
    """A mentor takes at most so many people of each department (its groups x the room one department
    has in a group): the bound is the max flow through (mentor, department) nodes, which the sparse flow
    alone (one arc per person) often misses."""
    rows, caps_list, dept_list, dcaps_list = case
    eligible = np.array(rows, dtype=bool)
    caps = np.array(caps_list, dtype=np.int64)
    dept = np.array(dept_list, dtype=np.int64)
    dcaps = np.array(dcaps_list, dtype=np.int64)
    people = [f"P{i}" for i in range(len(rows))]
    el = Eligibility(people, eligible, np.zeros(eligible.shape, dtype=np.int64), (caps > 0).astype(np.int64))
    greedy = np.full(len(rows), -1, dtype=np.int64)
    monkeypatch.setattr(facilitated_bound, "SPARSE_ARCS", 1)
    departments = facilitated_bound.Departments(dept, dcaps)
    bound = placement_bound(el, people, caps, np.arange(len(rows), dtype=np.int64), greedy, departments)
    assert bound.proven
    assert bound.value == _full_max_flow_departments(eligible, caps, dept, dcaps)
    placed = np.flatnonzero(bound.mentor_of >= 0)
    assert all(eligible[i, bound.mentor_of[i]] for i in placed)
    assert (np.bincount(bound.mentor_of[placed], minlength=len(caps)) <= caps).all()
    for i in placed:
        k, c = bound.mentor_of[i], dept[i]
        assert int(((bound.mentor_of == k) & (dept == c)).sum()) <= dcaps[k, c]


def test_forty_of_one_department_and_thirty_nine_mentors_place_thirty_nine() -> None:
    """The benchmark's tight pool in miniature: one person of a department per group, 40 of it, 39
    mentors each with room for six: 39 at most, although capacity alone allows all 40."""
    n, m = 40, 39
    eligible = np.ones((n, m), dtype=bool)
    caps = np.full(m, 6, dtype=np.int64)
    people = [f"P{i}" for i in range(n)]
    el = Eligibility(people, eligible, np.zeros((n, m), dtype=np.int64), np.ones(m, dtype=np.int64))
    none = np.full(n, -1, dtype=np.int64)
    order = np.arange(n, dtype=np.int64)
    assert placement_bound(el, people, caps, order, none).value == 40
    departments = facilitated_bound.Departments(np.zeros(n, dtype=np.int64), np.ones((m, 1), dtype=np.int64))
    assert placement_bound(el, people, caps, order, none, departments).value == 39


def test_the_lottery_walk_rules_out_whom_the_relaxation_cannot_route() -> None:
    """With 39 people of one department already in (one per mentor), a 40th of it cannot join: proven
    out without a solve; with 38 in, it can (the walk must then ask the solver)."""
    n, m = 40, 39
    people = [f"P{i}" for i in range(n)]
    el = Eligibility(people, np.ones((n, m), dtype=bool), np.zeros((n, m), dtype=np.int64), np.ones(m, dtype=np.int64))
    departments = facilitated_bound.Departments(np.zeros(n, dtype=np.int64), np.ones((m, 1), dtype=np.int64))
    routing = facilitated_bound.Routing(el, np.full(m, 6, dtype=np.int64), departments, dict.fromkeys(people, 0))
    assert routing.excludes({f"P{i}": i for i in range(39)}, "P39")
    assert not routing.excludes({f"P{i}": i for i in range(38)}, "P39")
    assert not facilitated_bound.Routing(el, np.full(m, 6, dtype=np.int64), None, {}).excludes(
        {f"P{i}": i for i in range(39)}, "P39"
    )
