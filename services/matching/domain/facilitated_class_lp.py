"""Facilitated groups, a placement bound that knows who may join whom: classes of people, types of mentors.

The department LP (``facilitated_lp``) counts, per mentor, the people of each department eligible for it,
but not *which* people: two mentors that can each reach the same five people of a small department may
there take five each. Where the department bound and the group minimum bind together (one department
at 80 % of a pool, at most 2 of a department per group, groups of 3-8), the people of the small
departments are what every group needs, and who can reach whom among them is what limits placement:
that LP said 474 and 2,827 on the benchmark's 1,000 and 5,000 pools, where no grouping places more
than 471 and 2,818 (this bound; the greedy with its chains places exactly that many).

This LP counts people by *class* and mentors by *type*, any partition with these two properties:

- a class holds people of one department; it may join a type when one of its people is eligible for one
  of the type's mentors (the union of their rows);
- a type holds mentors with the same room for every department (the department bound less the
  mentor's own department); its free groups are its mentors' summed.

Variables and rows (GLOP, OR-Tools): ``y[t]`` in [0, free groups of t] (the groups t's mentors lead),
``x[t, c] >= 0`` for each class c that may join t, and

- ``sum_t x[t, c] <= |c|``;
- ``sum_{c of d} x[t, c] <= room[t, d] * y[t]`` and ``<= reach[t, d]`` (the people of d eligible for
  a mentor of t);
- ``group_min * y[t] <= sum_c x[t, c] <= group_max * y[t]``.

Why it bounds placed: take any valid grouping; let ``y[t]`` be the groups led by t's mentors and
``x[t, c]`` the people of c in them. Each member is eligible for its lead, so its class may join the
lead's type and it counts in ``reach``; a person is in one group; each group holds at most room[t, d]
of d and between the minimum and the maximum in all; summing over t's groups gives each row. So the
counts are a feasible point and the optimum (rounded down after a tolerance) is at least placed. This
holds for *every* partition of the two kinds; only tightness depends on it. The run's partition keys
on what the mentor-side rules read from a profile (department, languages, time zone, level), so the
people of a class differ only in reporting lines, declared conflicts and excluded pairs (sparse), and
96 classes and 168 types stand for 5,000 people and 1,250 mentors (0.3 s).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from ortools.linear_solver import pywraplp

from services.matching.domain.facilitated_prep import BLOCK_CELLS
from services.matching.domain.rules import BoolArray, IntArray

LP_TOLERANCE = 1e-3
"""Added to GLOP's optimum before rounding down (as ``facilitated_lp``): an integer optimum a hair below
must not lose one."""
CLASS_CELLS_MAX = 200_000
"""No LP above this many (type, class) variables."""


def partition(keys: Sequence[Hashable]) -> IntArray:
    """Each item's part: equal keys share one, numbered by first appearance (deterministic)."""
    code: dict[Hashable, int] = {}
    return np.array([code.setdefault(key, len(code)) for key in keys], dtype=np.int64)


def reachable_by_type(eligible: BoolArray, rows: IntArray, mentor_type: IntArray, types: int) -> BoolArray:
    """Per person (``rows`` of ``eligible``) and mentor type: eligible for at least one of the type's
    mentors (``mentor_type`` -1: a mentor in no type). In blocks of rows, so no copy of the whole matrix."""
    order = np.flatnonzero(mentor_type >= 0)
    order = order[np.argsort(mentor_type[order], kind="stable")]
    out = np.zeros((len(rows), types), dtype=bool)
    if not len(order):
        return out
    sorted_types = mentor_type[order]
    starts = np.flatnonzero(np.r_[True, sorted_types[1:] != sorted_types[:-1]])
    block = max(1, BLOCK_CELLS // max(1, eligible.shape[1]))
    for lo in range(0, len(rows), block):
        cells = eligible[rows[lo : lo + block]][:, order]
        out[lo : lo + block, sorted_types[starts]] = np.add.reduceat(cells, starts, axis=1) > 0
    return out


def class_lp_bound(
    reach: BoolArray,
    person_class: IntArray,
    class_department: IntArray,
    room: IntArray,
    free: IntArray,
    size_min: int,
    size_max: int,
) -> int | None:
    """The LP's optimum (module doc), rounded down, or None when it is too large or GLOP does not prove
    it. ``reach``: person x type (``reachable_by_type``); ``person_class`` per person; ``class_department``
    per class; ``room`` and ``free`` per type (room per department)."""
    types, departments = room.shape
    sizes = np.bincount(person_class, minlength=len(class_department)).astype(np.int64)
    may_join = np.zeros((len(class_department), types), dtype=bool)
    np.logical_or.at(may_join, person_class, reach)
    reach_of = np.zeros((types, departments), dtype=np.int64)
    np.add.at(reach_of.T, class_department[person_class], reach.astype(np.int64))
    cells = np.argwhere(may_join & (room[:, class_department].T > 0) & (free[None, :] > 0))
    if not len(cells) or len(cells) > CLASS_CELLS_MAX:
        return None
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:
        return None
    value = _build(solver, cells, sizes, class_department, room, free, reach_of, (size_min, size_max))
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return None
    return int(np.floor(value.Value() + LP_TOLERANCE))


def _build(
    solver: pywraplp.Solver,
    cells: IntArray,
    sizes: IntArray,
    class_department: IntArray,
    room: IntArray,
    free: IntArray,
    reach_of: IntArray,
    size: tuple[int, int],
) -> pywraplp.Objective:
    """The rows of the module doc, coefficient by coefficient (the expression API costs seconds of Python
    at 5,000 mentees); returns the objective, set to maximise the people placed."""
    inf = solver.infinity()
    used = sorted({int(t) for t in cells[:, 1].tolist()})
    y = {t: solver.NumVar(0.0, float(free[t]), "") for t in used}
    most = {t: solver.Constraint(-inf, 0.0) for t in used}
    least = {t: solver.Constraint(-inf, 0.0) for t in used}
    for t in used:
        most[t].SetCoefficient(y[t], -float(size[1]))
        least[t].SetCoefficient(y[t], float(size[0]))
    of_class = {int(c): solver.Constraint(-inf, float(sizes[c])) for c in np.unique(cells[:, 0]).tolist()}
    in_room: dict[tuple[int, int], pywraplp.Constraint] = {}
    in_reach: dict[tuple[int, int], pywraplp.Constraint] = {}
    objective = solver.Objective()
    for c, t in cells.tolist():
        d = int(class_department[c])
        if (t, d) not in in_room:
            in_room[t, d] = solver.Constraint(-inf, 0.0)
            in_room[t, d].SetCoefficient(y[t], -float(room[t, d]))
            in_reach[t, d] = solver.Constraint(-inf, float(reach_of[t, d]))
        v = solver.NumVar(0.0, float(sizes[c]), "")
        for row in (of_class[c], in_room[t, d], in_reach[t, d], most[t], objective):
            row.SetCoefficient(v, 1.0)
        least[t].SetCoefficient(v, -1.0)
    objective.SetMaximization()
    return objective
