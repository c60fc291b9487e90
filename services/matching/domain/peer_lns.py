"""Peer groups, fit: large-neighbourhood search, the members of two or three groups re-split exactly.

Moves, swaps and the annealing (``peer_fit``, ``peer_anneal``) change one or two peers at a time, and
a grouping they cannot improve may still be below the best: on the benchmark's 30-peer pool they
stopped at 232 where the proven optimum is 235, the better grouping needing peers of three groups to
move at once. A neighbourhood here is the members of two or three groups: every valid group of them
is listed (pairwise compatible, one language all speak, the department bound, the size window;
``sub_groups``) and their best split into such groups is found exactly (``best_split``: dynamic
programming over subsets, the group of the lowest peer left chosen first, each subset's best kept),
so the stopping rule of a step is its proven optimum. The number of groups may change (three groups
of four may come back as two of six). What is outside the neighbourhood stays as it is, so the placed
set, and with it the placed count and the lottery, keep their values exactly; a neighbourhood is
replaced only when its best fits strictly better. (CP-SAT, the product's solver, proved the same
sub-problems too, as a set partitioning with the current groups as the hint, but took 1.8-4.6 s for
15 peers with 3,744 valid groups, where the dynamic programme takes 0.1-0.2 s.)

Which neighbourhoods: every combination of two, then three groups, in order, pass after pass until a
pass gains nothing (then no re-split of any two or three groups improves the grouping) or the work
budget is spent. Only pools of at most ``EXHAUSTIVE_GROUPS`` groups: on the benchmark's 500 and 2,000
peers (61 % of the pairs compatible) two groups of six have about 1,700-2,100 valid sub-groups, a step
cost 30-60 ms and 100-150 steps gained 4-9 fit (0.05 %), less than the annealing gains in the same
time, and three groups (about 18,000 valid sub-groups) did not finish in 0.1 s of work.

Deterministic: the work (valid groups listed, subsets and groups tried by the dynamic programme) is
counted against ``lns_budget``, a count fixed by the limit; the clock is only a safety stop checked
between blocks of steps (the grouping at a block's end stands). Locked peers never move: a group
holding one is never freed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence

import numpy as np

from services.matching.domain.peer_state import PeerGroups

SUB_WORK = 300_000
"""Steps of the exact split per sub-problem at most (a subset visited or a group tried: about 0.1 s)."""
MAX_COLUMNS = 4_000
"""A neighbourhood with more valid groups than this is skipped (its split would exceed ``SUB_WORK``)."""
BLOCK = 16
"""The clock is checked between blocks of this many steps."""
WORK_PER_SECOND = 333_000
"""Work per second of the limit. 1,000,000 was meant as a third of a second of CPU, but the search
does about 1.3 million steps a CPU second on this machine: at 60-100 peers (11-18 groups, where the
budget binds) the re-splits took 2.0-2.4 s of the 3 s limit's CPU, so the run went past its limit
and a loaded machine met the clock. With 333,000 (2026-11-30, seeds 2026-2028): 30 peers unchanged
(its search ends after 670,000 steps, a pass without gain, at 235, the proven optimum), 40 and 60 the
same fit (386; 699, 699, 694), 100 peers 1,257 instead of 1,260 for one seed of three (1,253 for both
others, as before), and 1.8-2.2 s of CPU at 40-60 peers instead of 2.6-3.6 s."""
EXHAUSTIVE_GROUPS = 20
"""Pools of at most this many groups (unlocked) are searched; see the module's docstring for why not more."""


def lns_budget(time_limit: float) -> int:
    """How much work the search gets: a count, so the same input gives the same search."""
    return int(WORK_PER_SECOND * time_limit)


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


def best_split(
    pg: PeerGroups, current: Sequence[Sequence[int]], work: int = SUB_WORK
) -> tuple[list[list[int]] | None, int]:
    """The best split of the members of ``current`` into valid groups, proven by dynamic programming
    over subsets (``_split``), or None when it is not strictly better than ``current``, the
    neighbourhood has too many valid groups or the proof would take more than ``work`` steps; and the
    work spent."""
    rows = sorted(r for g in current for r in g)
    columns = sub_groups(pg, rows)
    if len(columns) > MAX_COLUMNS:
        return None, len(columns)
    found, spent = _split(len(rows), columns, work)
    if found is None or found[0] <= pg.total(current):
        return None, spent + len(columns)
    return [[rows[i] for i in group] for group in found[1]], spent + len(columns)


def _split(
    m: int, columns: Sequence[tuple[tuple[int, ...], int]], work: int
) -> tuple[tuple[int, list[list[int]]] | None, int]:
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
    done = 0
    none = -(1 << 60)
    lookup = memo.get

    def best(left: int) -> int:
        """The best split of ``left`` (a subset not in ``memo``): the recursion visits each subset once;
        a subset already solved is read from ``memo`` before the call (most are: a call per subset cost
        a third of the search)."""
        nonlocal done
        done += 1
        if done > work:
            raise _OutOfWork
        top, arg = none, 0
        for mask, value in by_first[(left & -left).bit_length() - 1]:
            if mask & left != mask:
                continue
            done += 1
            rest = left ^ mask
            got = lookup(rest)
            total = value + (got[0] if got is not None else best(rest))
            if total > top:
                top, arg = total, mask
        memo[left] = (top, arg)
        return top

    everyone = (1 << m) - 1
    try:
        value = best(everyone) if everyone not in memo else memo[everyone][0]
    except _OutOfWork:
        return None, done
    if value <= none // 2:
        return None, done
    groups: list[list[int]] = []
    left = everyone
    while left:
        mask = memo[left][1]
        groups.append([i for i in range(m) if mask >> i & 1])
        left ^= mask
    return (value, groups), done


class _OutOfWork(Exception):
    """The sub-problem's proof needs more steps than its budget."""


def _movable(pg: PeerGroups, groups: Sequence[Sequence[int]]) -> list[int]:
    return [k for k, g in enumerate(groups) if g and not any(r in pg.frozen for r in g)]


def _neighbourhoods(pg: PeerGroups, groups: Sequence[Sequence[int]]) -> Iterator[tuple[int, ...]]:
    """Every combination of two, then three movable groups, in order (one pass)."""
    ks = _movable(pg, groups)
    for size in (2, 3):
        yield from itertools.combinations(ks, size)


def lns_peer_groups(
    pg: PeerGroups,
    groups: Sequence[Sequence[int]],
    work: int,
    deadline: float | None = None,
) -> tuple[list[list[int]], bool]:
    """Better-fitting groups of the same peers by exact re-splits of two or three groups (never worse
    than ``groups``) within ``work``, and whether the clock cut the search short (after a complete
    block of steps). A pass starts again after each gain; the search ends after a pass without one."""
    members = [sorted(g) for g in groups]
    if len(_movable(pg, members)) > EXHAUSTIVE_GROUPS:
        return members, False
    steps = 0
    gained = True
    while gained and work > 0:
        gained = False
        for ks in _neighbourhoods(pg, members):
            steps += 1
            if steps % BLOCK == 0 and deadline is not None and time.perf_counter() > deadline:
                return [g for g in members if g], True
            split, spent = best_split(pg, [members[k] for k in ks], min(SUB_WORK, work))
            work -= spent
            if split is not None:
                members = [g for k, g in enumerate(members) if k not in ks] + sorted(split)
                gained = True
                break  # the group numbers changed: a new pass
            if work <= 0:
                break
    return [g for g in members if g], False
