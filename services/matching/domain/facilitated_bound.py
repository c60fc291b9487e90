"""Facilitated groups, the placement bound on the full eligibility graph, at any size.

Relax group minimums and member-member rules: placing mentees is then a b-matching (mentee -> eligible
mentor with room, a mentor taking at most its free groups x the group maximum), and its maximum bounds
the number any grouping can place. Building the max flow over every eligible pair took 8 GB and
minutes at 20,000 x 5,000 (73 M pairs), so it is solved in two steps:

1. a flow over a few arcs per mentee (its best-fitting eligible mentors with room, its mentor in the
   greedy solution), each placed-by-the-greedy mentee at cost 0 and every other one at 1 + its
   lottery position, so among the largest flows on those arcs it keeps the greedy's people and then
   follows the lottery;
2. augmenting paths on the *full* eligibility matrix (array work, one breadth-first search over its
   rows per path): from every unassigned mentee at once, through eligible mentors to the mentees they
   hold, to a mentor with room left. When no such path exists the flow is maximum on the full graph
   (Berge / the max-flow min-cut theorem): its value is a proven bound, with no arc list built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow

from services.matching.domain.facilitated_prep import BLOCK_CELLS, Eligibility, top_arcs
from services.matching.domain.rules import IntArray

SPARSE_ARCS = 8
"""Arcs per mentee in the first flow (its best-fitting eligible mentors with room)."""
MAX_PATHS = 200
"""Augmenting paths searched on the full matrix at most; past it the bound is not proven (noted)."""


@dataclass
class PlacementBound:
    """The relaxation's maximum: ``value`` (proven when ``proven``) and an assignment reaching it."""

    value: int
    proven: bool
    mentor_of: IntArray
    """Per mentee (in the order given), its mentor position in the assignment, or -1."""
    paths: int
    """Augmenting paths the full-matrix search added to the sparse flow."""


def _sparse_flow(
    el: Eligibility, people: list[str], caps: IntArray, cost: IntArray, extra: tuple[IntArray, IntArray]
) -> IntArray:
    """Max flow with min cost over each person's best arcs plus ``extra`` (person, mentor) arcs."""
    n, m = len(people), len(caps)
    leads = np.flatnonzero(caps > 0).astype(np.int64)
    who, mentor, _ = top_arcs(el, people, leads, SPARSE_ARCS)
    pairs = np.unique(np.concatenate([who * m + mentor, extra[0] * m + extra[1]]))
    who, mentor = pairs // m, pairs % m
    f = min_cost_flow.SimpleMinCostFlow()
    f.add_arcs_with_capacity_and_unit_cost(
        np.zeros(n, dtype=np.int64), 2 + np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64), cost
    )
    first = f.num_arcs()
    f.add_arcs_with_capacity_and_unit_cost(
        2 + who, 2 + n + mentor, np.ones(len(who), dtype=np.int64), np.zeros(len(who), dtype=np.int64)
    )
    f.add_arcs_with_capacity_and_unit_cost(
        2 + n + np.arange(m, dtype=np.int64), np.ones(m, dtype=np.int64), caps.astype(np.int64),
        np.zeros(m, dtype=np.int64),
    )  # fmt: skip
    f.set_node_supply(0, n)
    f.set_node_supply(1, -n)
    out = np.full(n, -1, dtype=np.int64)
    if f.solve_max_flow_with_min_cost() != f.OPTIMAL:
        raise RuntimeError("placement flow failed")
    flows = f.flows(first + np.arange(len(who), dtype=np.int64))
    used = np.flatnonzero(flows > 0)
    out[who[used]] = mentor[used]
    return out


def _augment(el: Eligibility, rows: IntArray, caps: IntArray, mentor_of: IntArray) -> bool:
    """One augmenting path on the full eligibility matrix, applied to ``mentor_of``; False when none
    exists (then the assignment is maximum). Breadth-first from every unassigned person at once."""
    m = len(caps)
    load = np.bincount(mentor_of[mentor_of >= 0], minlength=m)
    has_room = caps > 0
    seen_mentor = np.zeros(m, dtype=bool)
    reached_by = np.full(m, -1, dtype=np.int64)
    seen_person = mentor_of < 0
    frontier = np.flatnonzero(seen_person)
    block = max(1, BLOCK_CELLS // max(1, m))
    while len(frontier):
        fresh_parts: list[IntArray] = []
        for start in range(0, len(frontier), block):
            part = frontier[start : start + block]
            cells = el.eligible[rows[part]] & (has_room & ~seen_mentor)[None, :]
            hit = np.flatnonzero(cells.any(axis=0))
            if not len(hit):
                continue
            reached_by[hit] = part[np.argmax(cells[:, hit], axis=0)]
            seen_mentor[hit] = True
            fresh_parts.append(hit)
        if not fresh_parts:
            return False
        fresh = np.concatenate(fresh_parts)
        open_ = fresh[load[fresh] < caps[fresh]]
        if len(open_):
            k = int(open_.min())
            while True:  # walk back: each person on the path moves to the mentor that reached it
                p = int(reached_by[k])
                previous = int(mentor_of[p])
                mentor_of[p] = k
                if previous < 0:
                    return True
                k = previous
        held = np.isin(mentor_of, fresh) & ~seen_person
        seen_person |= held
        frontier = np.flatnonzero(held)
    return False


def placement_bound(
    el: Eligibility, people: list[str], caps: IntArray, cost: IntArray, greedy_mentor: IntArray
) -> PlacementBound:
    """The relaxation's maximum placement of ``people`` (mentor capacities ``caps``, in mentees), proven
    on the full eligibility matrix unless MAX_PATHS augmenting paths were not enough.

    ``cost`` per person orders who the sparse flow places among its largest flows (0 for the greedy's
    people, then the lottery); ``greedy_mentor`` (mentor position or -1) joins their arcs, so the flow
    places at least as many as the greedy."""
    rows = np.array([el.row[p] for p in people], dtype=np.int64)
    placed = np.flatnonzero(greedy_mentor >= 0)
    mentor_of = _sparse_flow(el, people, caps, cost, (placed, greedy_mentor[placed]))
    paths = 0
    proven = False
    while paths < MAX_PATHS:
        if not _augment(el, rows, caps, mentor_of):
            proven = True
            break
        paths += 1
    return PlacementBound(int((mentor_of >= 0).sum()), proven, mentor_of, paths)
