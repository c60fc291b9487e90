"""Facilitated groups, the placement bound on the full eligibility graph, at any size.

Relax group minimums and the rules between members (reporting lines, conflicts): placing mentees is
then a b-matching (mentee -> eligible mentor with room, a mentor taking at most its free groups x the
group maximum), and its maximum bounds the number any grouping can place. With a department bound the
flow passes through (mentor, department) nodes: a mentor takes at most its free groups x the room one
department has in its group (the bound less the mentor's own department) of each department. Without
them the bound was loose exactly where departments bind: 950 on the benchmark's tight 1,000 pool,
where 40 mentees of one department share 39 eligible mentors in their community (at most one of a
department per group), so 949 is the most any grouping places (found by an exact model).

Building the max flow over every eligible pair took 8 GB and minutes at 20,000 x 5,000 (73 M pairs),
so it is solved in two steps:

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
class Departments:
    """The department bound as flow capacities: ``of`` per person (codes 0..D-1, in the order of the
    people), ``caps`` per (mentor, department): that mentor's free groups x the room one department
    has in its group."""

    of: IntArray
    caps: IntArray


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
    el: Eligibility,
    people: list[str],
    caps: IntArray,
    cost: IntArray,
    extra: tuple[IntArray, IntArray],
    departments: Departments | None,
) -> IntArray:
    """Max flow with min cost over each person's best arcs plus ``extra`` (person, mentor) arcs."""
    n, m = len(people), len(caps)
    leads = np.flatnonzero(caps > 0).astype(np.int64)
    who, mentor, _ = top_arcs(el, people, leads, SPARSE_ARCS)
    pairs = np.unique(np.concatenate([who * m + mentor, extra[0] * m + extra[1]]))
    who, mentor = pairs // m, pairs % m
    if departments is not None:  # only arcs to a (mentor, department) with room
        keep = departments.caps[mentor, departments.of[who]] > 0
        who, mentor = who[keep], mentor[keep]
    f = min_cost_flow.SimpleMinCostFlow()
    f.add_arcs_with_capacity_and_unit_cost(
        np.zeros(n, dtype=np.int64), 2 + np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64), cost
    )
    first = f.num_arcs()
    if departments is None:
        head = 2 + n + mentor
    else:  # person -> (mentor, department) -> mentor
        d = departments.caps.shape[1]
        keys, node = np.unique(mentor * d + departments.of[who], return_inverse=True)
        head = 2 + n + m + node.astype(np.int64)
    f.add_arcs_with_capacity_and_unit_cost(
        2 + who, head, np.ones(len(who), dtype=np.int64), np.zeros(len(who), dtype=np.int64)
    )
    if departments is not None:
        f.add_arcs_with_capacity_and_unit_cost(
            2 + n + m + np.arange(len(keys), dtype=np.int64), 2 + n + keys // d,
            departments.caps.reshape(-1)[keys].astype(np.int64), np.zeros(len(keys), dtype=np.int64),
        )  # fmt: skip
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


def _augment_departments(
    el: Eligibility, rows: IntArray, caps: IntArray, mentor_of: IntArray, departments: Departments
) -> bool:
    """``_augment`` through (mentor, department) nodes: a breadth-first search of the residual graph
    person -> (mentor, its department) -> mentor -> sink, from every unassigned person at once. A
    (mentor, department) node reached leads to the people it holds (one of them can move on) and, with
    room left, to its mentor; a full mentor reached leads back to each of its departments it holds
    people of (one of those can move on)."""
    m, d = departments.caps.shape
    dept = departments.of
    dcaps = departments.caps
    load = np.bincount(mentor_of[mentor_of >= 0], minlength=m)
    held = mentor_of >= 0
    dload = np.bincount(mentor_of[held] * d + dept[held], minlength=m * d).reshape(m, d)
    seen_node = np.zeros((m, d), dtype=bool)
    from_person = np.full((m, d), -1, dtype=np.int64)
    """Who reached each node (a person moving in), or -1: its mentor reached it (one of its people moves out)."""
    seen_mentor = np.zeros(m, dtype=bool)
    via = np.zeros(m, dtype=np.int64)
    seen_person = ~held
    frontier = np.flatnonzero(seen_person)
    block = max(1, BLOCK_CELLS // max(1, m))
    while len(frontier):
        fresh: list[IntArray] = []
        for code in np.unique(dept[frontier]).tolist():
            mine = frontier[dept[frontier] == code]
            for start in range(0, len(mine), block):
                part = mine[start : start + block]
                cells = el.eligible[rows[part]] & (~seen_node[:, code] & (dcaps[:, code] > 0))[None, :]
                hit = np.flatnonzero(cells.any(axis=0))
                if len(hit):
                    from_person[hit, code] = part[np.argmax(cells[:, hit], axis=0)]
                    seen_node[hit, code] = True
                    fresh.append(hit * d + code)
        if not fresh:
            return False
        nodes = np.concatenate(fresh)
        k_of, code_of = nodes // d, nodes % d
        onward = (dload[k_of, code_of] < dcaps[k_of, code_of]) & ~seen_mentor[k_of]
        reached, first = np.unique(k_of[onward], return_index=True)
        seen_mentor[reached] = True
        via[reached] = code_of[onward][first]
        open_ = reached[load[reached] < caps[reached]]
        if len(open_):
            _walk_back(int(open_.min()), via, from_person, mentor_of, dept)
            return True
        back = (dload[reached] > 0) & ~seen_node[reached]  # full mentors: back to the departments they hold
        kk, cc = np.nonzero(back)
        seen_node[reached[kk], cc] = True
        nodes = np.concatenate([nodes, reached[kk] * d + cc])
        moving = held & ~seen_person & np.isin(mentor_of * d + dept, nodes)
        seen_person |= moving
        frontier = np.flatnonzero(moving)
    return False


def _walk_back(k: int, via: IntArray, from_person: IntArray, mentor_of: IntArray, dept: IntArray) -> None:
    """Apply the path ending at mentor ``k``: from the node that reached it, each person who reached a
    node moves to its mentor, and the node the person left is the next one back."""
    code = int(via[k])
    while True:
        p = int(from_person[k, code])
        if p < 0:  # the mentor reached this node: continue from the node that reached the mentor
            code = int(via[k])
            continue
        previous = int(mentor_of[p])
        mentor_of[p] = k
        if previous < 0:
            return
        k, code = previous, int(dept[p])


def placement_bound(
    el: Eligibility,
    people: list[str],
    caps: IntArray,
    cost: IntArray,
    greedy_mentor: IntArray,
    departments: Departments | None = None,
) -> PlacementBound:
    """The relaxation's maximum placement of ``people`` (mentor capacities ``caps``, in mentees; with
    ``departments``, also per (mentor, department)), proven on the full eligibility matrix unless
    MAX_PATHS augmenting paths were not enough.

    ``cost`` per person orders who the sparse flow places among its largest flows (0 for the greedy's
    people, then the lottery); ``greedy_mentor`` (mentor position or -1) joins their arcs, so the flow
    places at least as many as the greedy."""
    rows = np.array([el.row[p] for p in people], dtype=np.int64)
    placed = np.flatnonzero(greedy_mentor >= 0)
    mentor_of = _sparse_flow(el, people, caps, cost, (placed, greedy_mentor[placed]), departments)
    paths = 0
    proven = False
    while paths < MAX_PATHS:
        found = (
            _augment(el, rows, caps, mentor_of)
            if departments is None
            else _augment_departments(el, rows, caps, mentor_of, departments)
        )
        if not found:
            proven = True
            break
        paths += 1
    return PlacementBound(int((mentor_of >= 0).sum()), proven, mentor_of, paths)


@dataclass
class Routing:
    """The placement bound's relaxation as a test for the lottery walk: if ``person`` cannot be routed
    together with people already decided in (each to an eligible mentor with room, within the mentors'
    capacities and, per department, their room), no grouping places them all, so the walk can rule the
    person out without a solve. ``department_of`` maps each person to a code of ``departments.caps``."""

    el: Eligibility
    caps: IntArray
    departments: Departments | None
    department_of: dict[str, int]

    def excludes(self, assigned: dict[str, int], person: str) -> bool:
        """True when ``person`` cannot join ``assigned`` (person -> mentor position: a valid routing,
        e.g. a solution's leads) in the relaxation: proven out. One breadth-first search from it."""
        people = [*assigned, person]
        rows = np.array([self.el.row[p] for p in people], dtype=np.int64)
        mentor_of = np.array([*assigned.values(), -1], dtype=np.int64)
        if self.departments is None:
            return not _augment(self.el, rows, self.caps, mentor_of)
        codes = np.array([self.department_of[p] for p in people], dtype=np.int64)
        mine = Departments(codes, self.departments.caps)
        return not _augment_departments(self.el, rows, self.caps, mentor_of, mine)
