"""Peer groups, fit: large-neighbourhood search, the members of a few groups re-partitioned exactly.

Moves, swaps and the annealing (``peer_fit``, ``peer_anneal``) change one or two peers at a time, and
a grouping they cannot improve may still be far from the best: on the benchmark's 30-peer pool they
stopped at 232 where the proven optimum is 235, the better grouping needing three peers of three
groups to move at once. A neighbourhood here is the members of two to four groups: every valid group
of them is listed (pairwise compatible, one language all speak, the department bound, the size
window; ``sub_groups``) and the best split of them into such groups is solved exactly as a set
partitioning by CP-SAT, the current groups as its hint, its proven optimum as the stopping rule. The
number of groups may change (three groups of four may come back as two of six). What is outside the
neighbourhood stays as it is, so the placed set, and with it the placed count and the lottery, keep
their values exactly; a neighbourhood is replaced only when its proven best fits strictly better.

Which neighbourhoods: a pool of few groups gets every combination of ``k`` of them, in order, pass
after pass until a pass gains nothing (then no re-partition of any ``k`` groups improves the
grouping); a large pool gets, per step, a group drawn by ``random.Random(seed)`` and the groups its
members are most drawn to (fit with compatible peers), so that the re-partition has something to
exchange. Deterministic: the steps are a count fixed by the pool and the limit (``lns_budget``), each
sub-problem solved by one CP-SAT worker with a fixed seed and a deterministic-time cap; the clock is
only a safety stop checked between blocks of steps (the grouping at a block's end stands). Locked
peers never move: a group holding one is never freed.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator, Sequence

import numpy as np

from services.matching.domain.peer_fit import PeerGroups

SUB_WORK = 300_000
"""Steps of the exact split per sub-problem at most (a subset visited or a group tried: about 0.1 s)."""
MAX_COLUMNS = 2_000
"""A neighbourhood with more valid groups than this is skipped (listing them costs more than it gives)."""
BLOCK = 16
"""The clock is checked between blocks of this many steps."""
PER_SECOND = 60
"""LNS steps per second of the time limit, up to ``FULL_RATE_PEERS`` peers (fewer in proportion above,
where the descent and the annealing already take more of the limit)."""
FULL_RATE_PEERS = 1_000
PER_GROUP = 12
"""Steps per group at most: after that many, a neighbourhood around every group was tried often."""
EXHAUSTIVE_GROUPS = 12
"""Pools of at most this many groups (unlocked) get every combination of ``k`` groups, pass after pass."""


def lns_budget(peers: int, groups: int, time_limit: float) -> int:
    """How many neighbourhoods a pool gets: a count, so the same input gives the same search."""
    rate = PER_SECOND * min(1.0, FULL_RATE_PEERS / max(1, peers))
    return int(min(PER_GROUP * max(1, groups), rate * time_limit))


def sub_groups(pg: PeerGroups, rows: Sequence[int]) -> list[tuple[tuple[int, ...], int]]:
    """Every valid group of ``rows`` (as positions in ``rows``) with its fit: sizes within the policy's
    window, every pair compatible (which holds the time-zone and level windows, conflicts, reporting
    lines, excluded pairs), a language all members speak, at most ``dept_limit`` of a department."""
    m = len(rows)
    index = np.asarray(rows, dtype=np.int64)
    compat = pg.compat[np.ix_(index, index)]
    fit = pg.fit[np.ix_(index, index)].astype(np.int64).tolist()
    later = [sum(1 << j for j in range(i + 1, m) if compat[i, j]) for i in range(m)]
    lang = [int(pg.lang[r]) for r in rows]
    dept = [int(pg.dept[r]) for r in rows]
    limit = pg.dept_limit
    out: list[tuple[tuple[int, ...], int]] = []

    def grow(group: list[int], cand: int, spoken: int, value: int) -> None:
        if len(group) >= pg.size_min:
            out.append((tuple(group), value))
        if len(group) == pg.size_max:
            return
        while cand:
            low = cand & -cand
            c = low.bit_length() - 1
            cand ^= low
            both = spoken & lang[c]
            if not both:
                continue
            if limit is not None and sum(1 for g in group if dept[g] == dept[c]) >= limit:
                continue
            group.append(c)
            grow(group, cand & later[c], both, value + sum(fit[c][g] for g in group[:-1]))
            group.pop()

    for first in range(m):
        grow([first], later[first], lang[first], 0)
        if len(out) > MAX_COLUMNS:
            break
    return out


def best_split(pg: PeerGroups, current: Sequence[Sequence[int]], work: int = SUB_WORK) -> list[list[int]] | None:
    """The best split of the members of ``current`` into valid groups, proven by dynamic programming
    over subsets (``_split``); None when it is not strictly better than ``current``, or when the
    neighbourhood has too many valid groups or the proof would take more than ``work`` steps."""
    rows = sorted(r for g in current for r in g)
    columns = sub_groups(pg, rows)
    if len(columns) > MAX_COLUMNS:
        return None
    found = _split(len(rows), columns, work)
    if found is None or found[0] <= pg.total(current):
        return None
    return [[rows[i] for i in group] for group in found[1]]


def _split(m: int, columns: Sequence[tuple[tuple[int, ...], int]], work: int) -> tuple[int, list[list[int]]] | None:
    """The most fit of any partition of positions 0..m-1 into ``columns`` (each position in exactly one),
    with the groups, or None past ``work`` steps (or when no partition exists). The group holding the
    lowest position of what is left is chosen first, so a subset is reached in one way per split of what
    is gone, and each subset's best is kept (memo): exact, and a count of steps bounds the work."""
    by_first: list[list[tuple[int, int]]] = [[] for _ in range(m)]
    for group, value in columns:
        by_first[group[0]].append((sum(1 << i for i in group), value))
    for options in by_first:
        options.sort(key=lambda option: -option[1])
    memo: dict[int, tuple[int, int]] = {0: (0, 0)}
    done = [0]
    none = -(1 << 60)

    def best(left: int) -> int:
        got = memo.get(left)
        if got is not None:
            return got[0]
        done[0] += 1
        if done[0] > work:
            raise _OutOfWork
        top, arg = none, 0
        for mask, value in by_first[(left & -left).bit_length() - 1]:
            if mask & ~left:
                continue
            done[0] += 1
            total = value + best(left ^ mask)
            if total > top:
                top, arg = total, mask
        memo[left] = (top, arg)
        return top

    everyone = (1 << m) - 1
    try:
        value = best(everyone)
    except _OutOfWork:
        return None
    if value <= none // 2:
        return None
    groups: list[list[int]] = []
    left = everyone
    while left:
        mask = memo[left][1]
        groups.append([i for i in range(m) if mask >> i & 1])
        left ^= mask
    return value, groups


class _OutOfWork(Exception):
    """The sub-problem's proof needs more steps than its budget."""


class _Groups:
    """Groups by number (an emptied group keeps its number, so numbers stay valid across steps)."""

    def __init__(self, pg: PeerGroups, groups: Sequence[Sequence[int]]) -> None:
        self.pg = pg
        self.members = [sorted(g) for g in groups]
        self.home = np.full(len(pg.compat), -1, dtype=np.int64)
        for k, g in enumerate(self.members):
            self.home[g] = k

    def movable(self, k: int) -> bool:
        return bool(self.members[k]) and not any(r in self.pg.frozen for r in self.members[k])

    def replace(self, ks: Sequence[int], split: list[list[int]]) -> None:
        """The groups ``ks`` become ``split`` (the same peers): reuse their numbers, append the rest."""
        free = list(ks)
        for k in ks:
            self.members[k] = []
        for g in split:
            k = free.pop(0) if free else len(self.members)
            if k == len(self.members):
                self.members.append([])
            self.members[k] = sorted(g)
            self.home[g] = k

    def drawn_to(self, k: int) -> np.ndarray:
        """Per group, the fit its members have with compatible members of group k."""
        rows = self.members[k]
        pull = np.where(self.pg.compat[rows], self.pg.fit[rows], 0).sum(axis=0)  # compatible peers only
        placed = self.home >= 0
        return np.bincount(self.home[placed], weights=pull[placed], minlength=len(self.members))

    def result(self) -> list[list[int]]:
        return [g for g in self.members if g]


def _exhaustive(state: _Groups, sizes: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every combination of ``k`` movable groups, for each k of ``sizes``, in order, over and over
    (the caller stops after a pass without gain)."""
    while True:
        ks = [k for k in range(len(state.members)) if state.movable(k)]
        for size in sizes:
            yield from itertools.combinations(ks, min(size, len(ks)))
        yield ()  # the end of a pass


def _around(state: _Groups, rng: random.Random, size: int) -> tuple[int, ...]:
    """A group drawn at random and the ``size - 1`` groups its members are most drawn to (of the
    ``2 x (size - 1)`` most drawn, drawn at random, so a step can leave a neighbourhood that failed)."""
    ks = [k for k in range(len(state.members)) if state.movable(k)]
    if len(ks) < 2:
        return ()
    first = ks[rng.randrange(len(ks))]
    pull = state.drawn_to(first)
    options = [k for k in np.argsort(-pull, kind="stable").tolist() if k != first and state.movable(k)]
    options = [k for k in options[: 2 * (size - 1)] if pull[k] > 0] or options[: size - 1]
    return (first, *sorted(rng.sample(options, min(size - 1, len(options)))))


def lns_peer_groups(
    pg: PeerGroups,
    groups: Sequence[Sequence[int]],
    seed: int,
    steps: int,
    deadline: float | None = None,
) -> tuple[list[list[int]], bool]:
    """Better-fitting groups of the same peers by ``steps`` exact re-partitions of a few groups (never
    worse than ``groups``), and whether the clock cut the search short (after a complete block)."""
    state = _Groups(pg, groups)
    movable = sum(1 for k in range(len(state.members)) if state.movable(k))
    rng = random.Random(seed)
    exhaustive = movable <= EXHAUSTIVE_GROUPS
    walk = _exhaustive(state, (2, 3)) if exhaustive else None
    gained_in_pass = False
    for step in range(steps):
        if step % BLOCK == 0 and step and deadline is not None and time.perf_counter() > deadline:
            return state.result(), True
        if walk is not None:
            ks = next(walk)
            if not ks:  # a pass ended
                if not gained_in_pass:
                    break
                gained_in_pass = False
                continue
        else:
            ks = _around(state, rng, 2 + step % 3)
        if len(ks) < 2:
            if walk is None:
                break
            continue
        split = best_split(pg, [state.members[k] for k in ks])
        if split is not None:
            state.replace(ks, split)
            gained_in_pass = True
            if walk is not None:
                walk = _exhaustive(state, (2, 3))  # group numbers changed: a new pass from here
    return state.result(), False
