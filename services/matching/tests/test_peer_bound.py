"""The benchmark's set-partitioning fit bound for peer groups (``bench/peer_bound.py``) is a bound: on
small pools it is never below the exact optimum for the run's placed set (every valid group listed, the
set partitioning solved by CP-SAT to proven optimality), and never below the run's own fit."""

from __future__ import annotations

import numpy as np
import pytest
from ortools.linear_solver import pywraplp

from bench.fit_bounds import peer_fit_bound
from bench.peer_bound import PeerProblem, fit_bound, positive_groups, problem_of, run_groupings
from bench.peer_descent import refine, share_bound
from bench.peer_root import root_bounds
from bench.peer_share import shares
from bench.synthetic_pool import instance
from contracts.policy import Form
from services.matching.domain import MatchingInput, match


def _pool(size: int, seed: int, **policy: object) -> MatchingInput:
    inp = instance(size, Form.PEER_GROUP, seed=seed)
    people = inp.participants[:size]
    changes = {"time_limit_seconds": 3.0, **policy}
    return inp.model_copy(update={"participants": people, "policy": inp.policy.model_copy(update=changes)})


def _valid_groups(pp: PeerProblem) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []

    def grow(group: tuple[int, ...]) -> None:
        if len(group) >= pp.size_min and pp.valid(group):
            out.append(group)
        if len(group) == pp.size_max:
            return
        for c in range(group[-1] + 1, len(pp.compat)):
            if all(pp.compat[c, g] for g in group):
                grow((*group, c))

    for first in range(len(pp.compat)):
        grow((first,))
    return out


def _optimum(pp: PeerProblem) -> int:
    """The most fit of any grouping of every row: set partitioning over every valid group, solved to
    proven optimality by CBC (CP-SAT took 16 s of CPU on 576 groups of 15 peers, CBC a fraction)."""
    groups = _valid_groups(pp)
    solver = pywraplp.Solver.CreateSolver("CBC")
    chosen = [solver.BoolVar(f"g{k}") for k in range(len(groups))]
    for r in range(len(pp.compat)):
        solver.Add(solver.Sum([v for v, g in zip(chosen, groups, strict=True) if r in g]) == 1)
    solver.Maximize(solver.Sum([pp.value(g) * v for g, v in zip(groups, chosen, strict=True)]))
    assert solver.Solve() == pywraplp.Solver.OPTIMAL
    value: float = solver.Objective().Value()
    return round(value)


POOLS = [
    (15, 1, {}),
    (20, 2, {}),
    (24, 3, {"group_members_min": 2, "group_members_max": 4}),
    (30, 4, {"group_members_min": 3, "group_members_max": 5, "max_same_department": 1}),
    (18, 5, {"require_shared_language": False, "max_same_department": None}),
    (28, 6, {"group_members_min": 4, "group_members_max": 4}),
]


@pytest.mark.parametrize(("size", "seed", "policy"), POOLS)
def test_bound_is_at_least_the_exact_optimum(size: int, seed: int, policy: dict[str, object]) -> None:
    inp = _pool(size, seed, **policy)
    result = match(inp, 2026)
    placed = {m.participant_id for g in result.groups for m in g.members}
    pp = problem_of(inp, placed)
    groups = run_groupings(inp, result)
    assert all(pp.valid(g) for g in groups)
    assert sum(pp.value(g) for g in groups) == result.stats.total_fit
    optimum = _optimum(pp)
    bound = fit_bound(pp, [groups], seconds=60)
    assert bound.proven
    assert bound.value >= optimum - 1e-6 >= result.stats.total_fit - 1e-6
    # converged to the set-partitioning LP (its stopping rule: within 0.5), which is never above the
    # b-matching bound (an LP solution spread over its pairs is a fractional b-matching)
    assert bound.value <= bound.lp + 0.5
    b_matching = peer_fit_bound(inp, result)
    assert b_matching is not None and bound.value <= b_matching + 0.5
    print(f"{size} peers: optimum {optimum}, LP bound {bound.value:.1f}, b-matching {b_matching:.1f}")


def test_search_finds_every_group_that_gains() -> None:
    """With all duals 0, every valid group has red = its fit: the search must find each one with fit > 0,
    and each peer's share is its best group's fit over its size."""
    inp = _pool(14, 9, group_members_min=2, group_members_max=4)
    pp = problem_of(inp, {p.participant_id for p in inp.participants})
    listed = _valid_groups(pp)
    found = positive_groups(pp, np.zeros(len(pp.compat)), keep=len(listed) + 1)
    assert found.capped == 0
    assert sorted(g for _, g in found.found) == sorted(g for g in listed if pp.value(g) > 0)
    for r in range(len(pp.compat)):
        shares = [pp.value(g) / len(g) for g in listed if r in g] or [0.0]
        assert found.best_share[r] == pytest.approx(max(0.0, *shares))


@pytest.mark.parametrize("cap", [1, 3, 10])
def test_a_capped_search_is_still_a_bound(cap: int) -> None:
    """A search cut short per lowest member credits the bound of each branch it leaves to every peer the
    branch could hold: sum u + sum d stays at least the optimum, at any duals (here 0 and the run's
    shares)."""
    inp = _pool(20, 2)
    result = match(inp, 2026)
    pp = problem_of(inp, {m.participant_id for g in result.groups for m in g.members})
    optimum = _optimum(pp)
    shares = np.zeros(len(pp.compat))
    for g in run_groupings(inp, result):
        shares[g] = pp.value(g) / len(g)
    for u in (np.zeros(len(pp.compat)), shares):
        found = positive_groups(pp, u, keep=100, root_cap=cap)
        assert found.capped > 0
        assert u.sum() + found.d.sum() >= optimum - 1e-6


@pytest.mark.parametrize(("size", "seed", "policy"), POOLS)
@pytest.mark.parametrize("budget", [0, 2, 10, 1_000_000])
def test_best_first_shares_bound_the_optimum(size: int, seed: int, policy: dict[str, object], budget: int) -> None:
    """The best-first share bound (``bench/peer_share.py``) is a proof at every budget, and once its
    searches end (an unlimited budget) it is below the b-matching bound on these pools."""
    inp = _pool(size, seed, **policy)
    result = match(inp, 2026)
    pp = problem_of(inp, {m.participant_id for g in result.groups for m in g.members})
    found = share_bound(pp, run_groupings(inp, result), budget)
    optimum = _optimum(pp)
    assert found.value >= optimum - 1e-6
    assert found.value <= found.root + 1e-6
    assert found.estimate <= found.value + 1e-6
    if budget == 1_000_000:
        b_matching = peer_fit_bound(inp, result)
        assert b_matching is not None and found.value <= b_matching


@pytest.mark.parametrize("budget", [1, 4, 1_000_000])
def test_best_first_share_is_each_peers_best_group_when_complete(budget: int) -> None:
    """At any u, each peer's bound is at least the best share of a valid group holding it (checked
    against every valid group listed), and equals it once the search is complete."""
    inp = _pool(14, 9, group_members_min=2, group_members_max=4)
    pp = problem_of(inp, {p.participant_id for p in inp.participants})
    listed = _valid_groups(pp)
    u = np.random.default_rng(3).uniform(0, 6, len(pp.compat))
    found = shares(pp, u, budget)
    for r in range(len(pp.compat)):
        best = max([0.0, *((pp.value(g) - u[list(g)].sum()) / len(g) for g in listed if r in g)])
        assert found.d[r] >= best - 1e-9
        assert found.met[r] <= best + 1e-9
        if budget == 1_000_000:
            assert found.d[r] == pytest.approx(best)


def test_root_bound_is_a_bound_at_every_u() -> None:
    """``root_bounds`` never falls below a peer's best share, at any u (a few drawn)."""
    inp = _pool(16, 11, group_members_min=2, group_members_max=5)
    pp = problem_of(inp, {p.participant_id for p in inp.participants})
    listed = _valid_groups(pp)
    for seed in range(4):
        u = np.random.default_rng(seed).uniform(-2, 8, len(pp.compat))
        root, _ = root_bounds(pp, u)
        for r in range(len(pp.compat)):
            shares_r = [(pp.value(g) - u[list(g)].sum()) / len(g) for g in listed if r in g]
            assert max([-np.inf, *shares_r]) <= root[r] + 1e-9


@pytest.mark.parametrize(("size", "seed", "policy"), POOLS[:4])
def test_searched_steps_keep_the_bound_a_proof(size: int, seed: int, policy: dict[str, object]) -> None:
    """Steps on the searched bound (its gradient from each peer's witness) only choose where to prove:
    every step's value is still at least the optimum, and the bound kept is the least of them."""
    inp = _pool(size, seed, **policy)
    result = match(inp, 2026)
    pp = problem_of(inp, {m.participant_id for g in result.groups for m in g.members})
    groups = run_groupings(inp, result)
    start = np.zeros(len(pp.compat))
    for g in groups:
        start[g] = pp.value(g) / len(g)
    _, found = refine(pp, start, budget=2, steps=5)
    optimum = _optimum(pp)
    assert len(found.trace) == 5
    assert min(found.trace) >= optimum - 1e-6
    assert found.value == min(found.trace)
    assert share_bound(pp, groups, budget=2, steps=3).value >= optimum - 1e-6
