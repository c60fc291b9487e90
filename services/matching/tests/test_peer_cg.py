"""The exact-pricing column generation bound (``bench/peer_cg.py``) is a proof: on small pools it is never
below the exact optimum for the run's placed set (every valid group listed, the set partitioning solved
by CBC), and its pricing search (``bench/peer_cg_search.py``) bounds, at any duals, the best red of every
valid group whose first member is the root (checked against every valid group listed)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.fit_bounds import peer_fit_bound
from bench.peer_bound import problem_of, run_groupings
from bench.peer_cg import cg_bound
from bench.peer_cg_cpsat import price
from bench.peer_cg_search import EPS, Tables, price_root
from services.matching.domain import match
from services.matching.tests.test_peer_bound import POOLS, _optimum, _pool, _valid_groups


@pytest.mark.parametrize(("size", "seed", "policy"), POOLS)
def test_pricing_bounds_every_group_of_its_root(size: int, seed: int, policy: dict[str, object]) -> None:
    """At random duals, each root's ``most`` is at least the best red of a valid group it roots, equal to
    it when that is positive and the search complete, and a proof still when the budget cuts it short;
    every group it returns is valid, rooted there, and gains what it says."""
    inp = _pool(size, seed, **policy)
    pp = problem_of(inp, {p.participant_id for p in inp.participants})
    listed = [g for g in _valid_groups(pp) if pp.valid(g)]
    t = Tables.of(pp)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        u = rng.uniform(0, 12, len(t.ok))
        for i in range(len(t.ok)):
            reds = [pp.value(g) - u[list(g)].sum() for g in listed if min(g, key=lambda x: t.pos[x]) == i]
            truth = max(reds, default=-np.inf)
            found = price_root(t, u, i)
            assert found.complete and found.most >= truth - 1e-9
            if truth > EPS:
                assert found.met == pytest.approx(truth)
            for red, g in found.groups:
                assert pp.valid(g) and min(g, key=lambda x: t.pos[x]) == i
                assert red == pytest.approx(pp.value(g) - u[list(g)].sum())
            assert price_root(t, u, i, budget=2).most >= truth - 1e-9


@pytest.mark.parametrize(("size", "seed", "policy"), POOLS)
def test_bound_is_the_lp_and_at_least_the_exact_optimum(size: int, seed: int, policy: dict[str, object]) -> None:
    inp = _pool(size, seed, **policy)
    result = match(inp, 2026)
    pp = problem_of(inp, {m.participant_id for g in result.groups for m in g.members})
    optimum = _optimum(pp)
    found = cg_bound(pp, [run_groupings(inp, result)], seconds=60)
    assert found.proven_lp
    assert found.value >= optimum - 1e-6 >= result.stats.total_fit - 1e-6
    assert found.value <= found.lp + len(pp.compat) * EPS + 1e-6
    b_matching = peer_fit_bound(inp, result)
    assert b_matching is not None and found.value <= b_matching + 1e-6
    print(f"{size} peers: optimum {optimum}, exact-pricing LP bound {found.value:.2f}, b-matching {b_matching:.1f}")


def test_cp_sat_pricing_is_each_roots_best_group_of_a_size() -> None:
    """The CP-SAT model of one root's pricing (``bench/peer_cg_cpsat.py``, kept to measure it) finds, for
    each size, the best red of a valid group of that size holding the root (all listed), within the
    rounding of u to thousandths, and its proven bound is at least that."""
    inp = _pool(14, 9, group_members_min=2, group_members_max=4)
    pp = problem_of(inp, {p.participant_id for p in inp.participants})
    listed = [g for g in _valid_groups(pp) if pp.valid(g)]
    u = np.random.default_rng(5).uniform(0, 6, len(pp.compat))
    for i in range(0, len(pp.compat), 3):
        for size in range(pp.size_min, pp.size_max + 1):
            reds = [pp.value(g) - u[list(g)].sum() for g in listed if i in g and len(g) == size]
            found = price(pp, u, i, size, 10.0)
            if not reds:
                assert found.status == "INFEASIBLE"
                continue
            assert found.status == "OPTIMAL"
            assert max(reds) - 1e-9 <= found.bound <= max(reds) + size * 1e-3
