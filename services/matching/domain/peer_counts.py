"""Peer groups: a counting bound on how many peers can be placed, where the department bound binds.

The run's ``placed_bound`` counted the peers with enough compatible peers to form a group. With at most
``max_same_department`` of a department per group that is loose when a department dominates a region
of the pool: on a tight probe pool (groups of 3-5, time zones within 2 h, equal levels, one per
department) it said 492 where the most any grouping places is 477, what the run placed (each
component solved exactly: every valid group listed, set packing by CBC); this count says 480.

The count holds for every grouping: two peers share a group only if compatible, so every group lies
inside one component of the compatibility graph; in a component whose groups number g, department d
places at most min(c_d, limit x g) of its c_d peers and a group holds at most
m = min(max, sum_d min(c_d, limit)) (none when m is below the minimum), so the component places at
most the largest, over g up to (its size) / (group minimum), of min(m x g, sum_d min(c_d, limit x g)).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.matching.domain.rules import BoolArray, IntArray


def components(compat: BoolArray, rows: Sequence[int]) -> list[list[int]]:
    """The components of the compatibility graph among ``rows`` (breadth-first over matrix rows; the
    matrix is symmetric, as the rules are, and is read as it is: a masked copy is 100 MB at 10,000)."""
    mask = np.zeros(len(compat), dtype=bool)
    mask[list(rows)] = True
    label = np.full(len(compat), -1, dtype=np.int64)
    out: list[list[int]] = []
    for r in rows:
        if label[r] >= 0:
            continue
        reached = np.zeros(len(compat), dtype=bool)
        reached[r] = True
        frontier = reached.copy()
        while frontier.any():
            frontier = compat[frontier].any(axis=0) & mask & ~reached
            reached |= frontier
        label[reached] = len(out)
        out.append([int(x) for x in np.flatnonzero(reached)])
    return out


def most_in_component(departments: IntArray, size_min: int, size_max: int, limit: int | None) -> int:
    """At most this many of a component's peers (their departments given) can be placed (module doc)."""
    k = len(departments)
    if k < size_min:
        return 0
    if limit is None:
        return k
    counts = np.bincount(departments)
    counts = counts[counts > 0]
    largest = min(size_max, int(np.minimum(counts, limit).sum()))  # one group: at most ``limit`` a department
    if largest < size_min:
        return 0
    best = 0
    for g in range(1, k // size_min + 1):
        best = max(best, min(largest * g, int(np.minimum(counts, limit * g).sum())))
    return min(k, best)


def counted_most(
    compat: BoolArray, rows: Sequence[int], dept: IntArray, size_min: int, size_max: int, limit: int | None
) -> int:
    """At most this many of ``rows`` can be placed in any valid grouping (sum over components)."""
    if not len(rows):
        return 0
    if limit is None:
        return len(rows)
    return sum(most_in_component(dept[part], size_min, size_max, limit) for part in components(compat, rows))
