"""The annealing's batched walk (``peer_batch.judge``, ``peer_anneal.anneal_peer_groups`` on pools of
more than ``BATCHED_GROUPS`` groups): a batch judged at once gives what one proposal at a time gives
(``_Walk.move_gain``, ``_Walk.best_swap``), and the walk keeps every rule, the placed peers and the
locked peers' places, never loses fit, and replays for the same seed."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.matching.domain.peer_anneal import BATCHED_GROUPS, _bits, _partners, _Walk, anneal_peer_groups
from services.matching.domain.peer_batch import judge
from services.matching.domain.peer_state import PeerGroups


def random_problem(seed: int, groups: int = BATCHED_GROUPS + 6) -> tuple[PeerGroups, list[list[int]]]:
    """Random peers (about 70 % of the pairs compatible, three languages, six departments, a few locked)
    in ``groups`` valid groups of three (groups of 2-4 allowed, so moves and swaps both occur)."""
    rng = np.random.default_rng(seed)
    n = 3 * groups
    compat = rng.random((n, n)) < 0.7
    compat = np.triu(compat, 1)
    compat = compat | compat.T
    fit = np.triu(rng.integers(0, 12, (n, n)), 1)
    fit = fit + fit.T
    lang = rng.integers(1, 8, n).astype(np.uint64)
    dept = rng.integers(0, 6, n).astype(np.int64)
    start = [list(range(3 * g, 3 * g + 3)) for g in range(groups)]
    for g, members in enumerate(start):  # each start group valid: compatible, one language, departments apart
        for a, b in itertools.combinations(members, 2):
            compat[a, b] = compat[b, a] = True
        lang[members] |= np.uint64(1 << (g % 3))
        dept[members] = [(g + i) % 6 for i in range(3)]
    limit = [None, 1, 2][seed % 3]
    frozen = frozenset(int(r) for r in rng.choice(n, size=3, replace=False))
    return PeerGroups(compat, fit, lang, dept, 2, 4, limit, frozen), start


def valid(pg: PeerGroups, group: list[int]) -> bool:
    """Every rule of one group, checked from scratch."""
    if not pg.size_min <= len(group) <= pg.size_max:
        return False
    if not all(pg.compat[a, b] for a, b in itertools.combinations(group, 2)):
        return False
    if not int(np.bitwise_and.reduce(pg.lang[group])):
        return False
    return pg.dept_limit is None or max(np.bincount(pg.dept[group])) <= pg.dept_limit


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 2_000))
def test_a_batch_is_judged_as_one_proposal_at_a_time(seed: int, steps: int) -> None:
    """Every (peer, partner) proposal on a walked state: the same move or swap gain, and the same
    verdict that no rule allows any, as ``_Walk`` judging it alone."""
    pg, start = random_problem(seed)
    groups, _ = anneal_peer_groups(pg, start, seed, steps)  # a state away from the start
    walk = _Walk(pg, groups)
    rows = np.array([r for r in range(len(pg.compat)) if r not in pg.frozen], dtype=np.int64)
    r, q = (x.ravel() for x in np.meshgrid(rows, np.arange(len(pg.compat))))
    glang = np.array([_bits(x) for x in walk.glang], dtype=np.uint64)
    frozen = np.zeros(len(pg.compat), dtype=bool)
    frozen[list(pg.frozen)] = True
    judged = judge(walk.state, glang, frozen, r.astype(np.int64), q.astype(np.int64))
    for i, (ri, qi) in enumerate(zip(r.tolist(), q.tolist(), strict=True)):
        a, k = walk.home[ri], walk.home[qi]
        expected: tuple[str, int] | None = None
        if a != k:
            gain = walk.move_gain(ri, a, k)
            swap = walk.best_swap(ri, a, qi, k) if gain is None else None
            expected = ("move", gain) if gain is not None else (None if swap is None else ("swap", swap[1]))
        got = None if not judged.valid[i] else ("move" if judged.move[i] else "swap", int(judged.gain[i]))
        assert got == expected, (ri, qi)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 99))
def test_the_batched_walk_keeps_every_rule_and_replays(seed: int, walk_seed: int) -> None:
    pg, start = random_problem(seed)
    assert len(start) > BATCHED_GROUPS  # the batched walk, not the one at a time
    walked, cut = anneal_peer_groups(pg, start, walk_seed, 20_000)
    assert not cut
    assert all(valid(pg, g) for g in walked)
    assert sorted(r for g in walked for r in g) == sorted(r for g in start for r in g)
    assert pg.total(walked) >= pg.total(start)

    def locked_with(groups: list[list[int]]) -> set[frozenset[int]]:
        return {frozenset(r for r in g if r in pg.frozen) for g in groups} - {frozenset()}

    assert locked_with(walked) == locked_with(start)  # locked peers never move
    again, _ = anneal_peer_groups(pg, start, walk_seed, 20_000)
    assert again == walked


def test_partners_do_not_depend_on_how_ties_are_broken() -> None:
    """Equal fits: the lower row first, whichever of them ``argpartition`` would have picked."""
    n = 40
    fit = np.full((n, n), 5, dtype=np.int64)
    np.fill_diagonal(fit, 0)
    fit[0, 30] = fit[30, 0] = 9
    pg = PeerGroups(~np.eye(n, dtype=bool), fit, np.ones(n, dtype=np.uint64), np.arange(n), 2, 4, None)
    partners = _partners(pg, [0, 1], np.ones(n, dtype=bool))
    assert partners[0] == [30, *range(1, 24)]
    assert partners[1] == [0, *range(2, 25)]


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.05, 5.0))
def test_a_floor_turns_down_only_what_the_draw_would_turn_down(seed: int, temperature: float) -> None:
    """With the caller's floor (T ln draw), every proposal the acceptance would take is judged as
    without it (the same move or swap and gain); only proposals at or below the floor may be turned
    down early."""
    pg, start = random_problem(seed)
    groups, _ = anneal_peer_groups(pg, start, seed, 500)
    walk = _Walk(pg, groups)
    rng = np.random.default_rng(seed)
    n = len(pg.compat)
    rows = np.array([r for r in range(n) if r not in pg.frozen], dtype=np.int64)
    r, q = rng.choice(rows, 2_000), rng.integers(0, n, 2_000)
    glang = np.array([_bits(x) for x in walk.glang], dtype=np.uint64)
    frozen = np.zeros(n, dtype=bool)
    frozen[list(pg.frozen)] = True
    floor = temperature * np.log(rng.random(2_000))
    full = judge(walk.state, glang, frozen, r, q)
    early = judge(walk.state, glang, frozen, r, q, floor)
    taken = full.valid & (full.gain > floor)
    assert np.array_equal(taken, early.valid & (early.gain > floor))
    for name in ("move", "other", "gain"):
        assert np.array_equal(getattr(full, name)[taken], getattr(early, name)[taken]), name
