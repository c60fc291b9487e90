"""Peer groups' exact re-splits (``peer_lns``) and restarted annealing (``peer_anneal.restarted_walks``):
the split of a neighbourhood is the brute-force optimum, every grouping returned keeps every rule
(``validate``), places exactly the same peers, never fits worse than its start, and replays for the
same input and seed."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fit_bounds import peer_exact_fit, peer_fit_bound
from services.matching.domain import MatchingInput, match, validate
from services.matching.domain.peer_anneal import restart_budget, restarted_walks
from services.matching.domain.peer_fit import polish_peer_groups
from services.matching.domain.peer_lns import best_split, lns_budget, lns_peer_groups, sub_groups
from services.matching.domain.peer_place import merge_groups
from services.matching.domain.peer_state import PeerGroups
from services.matching.tests.test_peer_anneal import _start, all_compatible, three_triangles
from services.matching.tests.test_peer_team_search import _as_result, _peer_problem
from services.matching.tests.test_properties import as_peer_groups, small_pools


def _valid(search: PeerGroups, group: Sequence[int]) -> bool:
    """Every rule of one group, written out independently of ``sub_groups``."""
    if not search.size_min <= len(group) <= search.size_max:
        return False
    if not all(search.compat[a, b] for a, b in itertools.combinations(group, 2)):
        return False
    spoken = np.bitwise_and.reduce(search.lang[list(group)])
    if int(spoken) == 0:
        return False
    counts = Counter(int(search.dept[r]) for r in group)
    return search.dept_limit is None or max(counts.values()) <= search.dept_limit


def _brute_force(search: PeerGroups, rows: list[int]) -> int | None:
    """The best total fit of any split of ``rows`` into valid groups, or None if there is none."""
    best: int | None = None

    def split(left: list[int], total: int) -> None:
        nonlocal best
        if not left:
            best = total if best is None else max(best, total)
            return
        head, rest = left[0], left[1:]
        for size in range(search.size_min - 1, search.size_max):
            for others in itertools.combinations(rest, size):
                group = [head, *others]
                if _valid(search, group):
                    split([r for r in rest if r not in others], total + search.total([group]))

    split(rows, 0)
    return best


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_pools(max_mentors=3, max_mentees=8, lenient=True), st.integers(2, 3), st.integers(3, 4))
def test_the_split_of_a_neighbourhood_is_the_brute_force_optimum(
    inp: MatchingInput, size_min: int, size_max: int
) -> None:
    grouped = as_peer_groups(inp, size_min, size_max)
    placed, search, _ = _start(grouped)
    if not placed:
        return
    rows = sorted(r for g in placed for r in g)
    listed = sub_groups(search, rows)
    assert all(_valid(search, [rows[i] for i in group]) for group, _ in listed)
    assert all(value == search.total([[rows[i] for i in group]]) for group, value in listed)
    optimum = _brute_force(search, rows)
    assert optimum is not None and optimum >= search.total(placed)  # the start is one split
    split, _ = best_split(search, placed)
    if optimum == search.total(placed):
        assert split is None  # nothing strictly better exists
    else:
        assert split is not None and search.total(split) == optimum
        assert sorted(r for g in split for r in g) == rows
        assert all(_valid(search, g) for g in split)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    small_pools(max_mentors=3, max_mentees=9, lenient=True), st.integers(2, 3), st.integers(3, 4), st.integers(0, 99)
)
def test_restarts_and_re_splits_keep_every_rule_the_placed_peers_and_replay(
    inp: MatchingInput, size_min: int, size_max: int, seed: int
) -> None:
    grouped = as_peer_groups(inp, size_min, size_max)
    placed, search, peers = _start(grouped)
    start, _ = polish_peer_groups(search, merge_groups(search, placed))
    budget = restart_budget(sum(map(len, start)), len(start), 3.0)
    walked, cut = restarted_walks(search, start, seed, budget)
    assert not cut
    split, cut = lns_peer_groups(search, walked, lns_budget(3.0))
    assert not cut
    prep, _, _ = _peer_problem(grouped)
    for groups in (walked, split):
        assert validate(grouped, _as_result(prep, grouped, [[peers[r] for r in g] for g in groups])) == []
        assert sorted(r for g in groups for r in g) == sorted(r for g in start for r in g)
    assert search.total(split) >= search.total(walked) >= search.total(start)
    if 0 < len(split) <= 3:  # one neighbourhood holds every group: the exact optimum of the placed set
        assert search.total(split) == _brute_force(search, sorted(r for g in split for r in g))
    assert restarted_walks(search, start, seed, budget) == (walked, False)
    assert lns_peer_groups(search, walked, lns_budget(3.0)) == (split, False)


def test_a_re_split_of_three_groups_leaves_a_local_optimum_of_moves_and_swaps_for_the_optimum() -> None:
    """Nine peers, groups of exactly three, all compatible: three triangles of weight 10 hidden behind
    a start of weight 8 whose every single move and swap loses; the exact re-split finds them."""
    search, start = three_triangles()
    n = 9
    stuck, _ = polish_peer_groups(search, start)
    assert search.total(stuck) == 72
    split, _ = lns_peer_groups(search, start, lns_budget(3.0))
    assert sorted(split) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert search.total(split) == _brute_force(search, list(range(n))) == 90


def test_groups_holding_a_locked_peer_are_never_re_split() -> None:
    n = 6
    fit = np.zeros((n, n), dtype=np.int64)
    fit[0, 3] = fit[3, 0] = 50  # the better split would separate the locked pair 0/1
    search = all_compatible(fit, 3, frozen=frozenset({0, 1}))
    start = [[0, 1, 2], [3, 4, 5]]
    assert lns_peer_groups(search, start, lns_budget(3.0)) == (start, False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_pools(max_mentors=3, max_mentees=7, lenient=True), st.integers(2, 3), st.integers(3, 4))
def test_the_benchmarks_peer_fit_bounds_are_never_below_the_brute_force_optimum(
    inp: MatchingInput, size_min: int, size_max: int
) -> None:
    """The bounds the benchmark reports the peer rows' gap against (its exact set partitioning and
    its b-matching bound) hold: never below the best grouping of the same placed peers."""
    grouped = as_peer_groups(inp, size_min, size_max)
    result = match(grouped, 1, time_limit_s=5)
    _, peers, search = _peer_problem(grouped)
    placed = {m.participant_id for g in result.groups for m in g.members}
    optimum = _brute_force(search, sorted(r for r, pid in enumerate(peers) if pid in placed)) or 0
    exact, bound = peer_exact_fit(grouped, result), peer_fit_bound(grouped, result)
    assert exact is not None and bound is not None
    assert result.stats.total_fit <= optimum <= exact <= bound + 1e-9
    if grouped.policy.require_shared_language:  # the same rules on both sides: the same optimum
        assert exact == optimum
