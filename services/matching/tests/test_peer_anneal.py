"""Peer groups' merging (``peer_place.merge_groups``) and annealing (``peer_anneal``): every grouping
they return keeps every rule (``validate``), places exactly the same peers, never fits worse than its
start, and the annealing replays for the same seed."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.matching.domain import MatchingInput, validate
from services.matching.domain.group_greedy import greedy_peers
from services.matching.domain.peer_anneal import anneal_budget, anneal_peer_groups
from services.matching.domain.peer_fit import polish_peer_groups
from services.matching.domain.peer_place import merge_groups, place_more
from services.matching.domain.peer_state import PeerGroups
from services.matching.tests.test_peer_team_search import _as_result, _peer_problem
from services.matching.tests.test_properties import as_peer_groups, small_pools


def all_compatible(fit: np.ndarray, size: int, frozen: frozenset[int] = frozenset()) -> PeerGroups:
    """Peers who may all share a group (one language, each of their own department), groups of ``size``."""
    n = len(fit)
    return PeerGroups(
        compat=~np.eye(n, dtype=bool),
        fit=fit,
        lang=np.full(n, np.uint64(1), dtype=np.uint64),
        dept=np.arange(n, dtype=np.int64),
        size_min=size,
        size_max=size,
        dept_limit=None,
        frozen=frozen,
    )


def three_triangles() -> tuple[PeerGroups, list[list[int]]]:
    """Nine peers, groups of exactly three: three triangles of weight 10 (the optimum, 90) hidden behind
    a start of weight 8 (72) whose every single move and swap loses."""
    fit = np.zeros((9, 9), dtype=np.int64)
    for a, b, c in ((0, 1, 2), (3, 4, 5), (6, 7, 8)):
        for x, y in ((a, b), (a, c), (b, c)):
            fit[x, y] = fit[y, x] = 10
    start = [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    for group in start:
        for x, y in itertools.combinations(group, 2):
            fit[x, y] = fit[y, x] = 8
    return all_compatible(fit, 3), start


def _start(grouped: MatchingInput) -> tuple[list[list[int]], PeerGroups, list[str]]:
    prep, peers, search = _peer_problem(grouped)
    row = {pid: r for r, pid in enumerate(peers)}
    first = [
        [row[p] for p in members]
        for members in greedy_peers(prep, peers, search.compat, np.asarray(search.fit, dtype=np.int64))
    ]
    waiting = [r for r in range(len(peers)) if all(r not in g for g in first)]
    more = place_more(search, first, waiting)
    return more, search, peers


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    small_pools(max_mentors=3, max_mentees=8, lenient=True), st.integers(2, 3), st.integers(3, 4), st.integers(0, 99)
)
def test_annealing_keeps_every_rule_the_placed_peers_and_never_loses_fit(
    inp: MatchingInput, size_min: int, size_max: int, seed: int
) -> None:
    grouped = as_peer_groups(inp, size_min, size_max)
    placed, search, peers = _start(grouped)
    start = merge_groups(search, placed)
    assert sorted(r for g in start for r in g) == sorted(r for g in placed for r in g)
    assert search.total(start) >= search.total(placed)
    walked, cut = anneal_peer_groups(search, start, seed, 3_000)
    assert not cut
    prep, _, _ = _peer_problem(grouped)
    for groups in (start, walked):
        assert validate(grouped, _as_result(prep, grouped, [[peers[r] for r in g] for g in groups])) == []
    assert sorted(r for g in walked for r in g) == sorted(r for g in start for r in g)
    assert search.total(walked) >= search.total(start)
    again, _ = anneal_peer_groups(search, start, seed, 3_000)
    assert again == walked


def _brute_force_best(search: PeerGroups, rows: list[int]) -> int:
    """The best total fit of any split of ``rows`` into valid groups (pairwise compatible, sizes)."""
    best = -1

    def valid(group: tuple[int, ...]) -> bool:
        return all(search.compat[a, b] for a, b in itertools.combinations(group, 2))

    def split(left: list[int], total: int) -> None:
        nonlocal best
        if not left:
            best = max(best, total)
            return
        head, rest = left[0], left[1:]
        for size in range(search.size_min - 1, search.size_max):
            for others in itertools.combinations(rest, size):
                group = (head, *others)
                if valid(group):
                    split([r for r in rest if r not in others], total + search.total([list(group)]))

    split(rows, 0)
    return best


def test_annealing_leaves_a_local_optimum_of_moves_and_swaps_for_the_optimum() -> None:
    """Nine peers, groups of exactly three, all compatible: the fit is three triangles of weight 10
    hidden behind a start of weight 8 whose every single swap loses; annealing reaches the optimum (brute force)."""
    search, start = three_triangles()
    n = 9
    stuck, _ = polish_peer_groups(search, start)
    assert search.total(stuck) == search.total(start) == 72  # no move or swap gains: a local optimum
    walked, _ = anneal_peer_groups(search, start, 7, anneal_budget(n, len(start), 3.0))
    assert search.total(walked) == _brute_force_best(search, list(range(n))) == 90
