"""Facilitated groups, a placement bound that counts the department bound *and* the group minimum.

The max-flow bound (``facilitated_bound``) relaxes group minimums: a mentor of the dominant department
may then take one mentee of it per group in as many groups as it has, each group a single person. On a
pool where one department holds 80 % of the people (at most 2 of a department per group, groups of 3-8)
that bound was 1,000 of 1,000 while no grouping places more than about 470: a group that holds at most
two (or, with a mentor of theirs, one) of the dominant department needs people of other departments to
reach its minimum, and those are few.

This bound is a linear programme over (mentor, department) counts, solved by GLOP (OR-Tools):

- ``y[k]`` in [0, free groups of k]: the groups mentor ``k`` leads (fractional);
- ``x[k, d]`` in [0, people of department d eligible for k]: the people of d in k's groups;
- ``x[k, d] <= room[k, d] * y[k]``: the department bound less the mentor's own department;
- ``group_min * y[k] <= sum_d x[k, d] <= group_max * y[k]``: every group between the size bounds;
- ``sum_k x[k, d] <= people of d``.

Every grouping gives a feasible point (its counts), so the LP's optimum bounds placed; it is rounded
down after a tolerance of 1e-3 (GLOP's optimum is a float: an integer optimum returned a hair
below must not round down to one less). The relaxation forgets who exactly is eligible within a department (the
max flow keeps it), so the run's bound is the smaller of the two.
"""

from __future__ import annotations

import numpy as np
from ortools.linear_solver import pywraplp

from contracts.events import ParticipantProfile
from services.matching.domain.common import Prepared
from services.matching.domain.facilitated_class_lp import class_lp_bound, partition, reachable_by_type
from services.matching.domain.facilitated_prep import BLOCK_CELLS, Eligibility
from services.matching.domain.rules import IntArray

LP_TOLERANCE = 1e-3
"""Added to GLOP's optimum before rounding down: it is a float, and an integer optimum a hair below must
not lose one (a bound one too low would claim a placement impossible that is not)."""
LP_CELLS_MAX = 200_000
"""No LP above this many (mentor, department) variables (about 1-2 s of GLOP on this machine)."""


def eligible_by_department(el: Eligibility, active: list[str], codes: IntArray, departments: int) -> IntArray:
    """Per (mentor, department), the active people of the department eligible for the mentor (blocks)."""
    rows = np.array([el.row[pid] for pid in active], dtype=np.int64)
    m = el.eligible.shape[1]
    out = np.zeros((m, departments), dtype=np.int64)
    block = max(1, BLOCK_CELLS // max(1, m))
    for start in range(0, len(rows), block):
        cells, part = el.eligible[rows[start : start + block]], codes[start : start + block]
        for c in np.unique(part).tolist():
            out[:, c] += np.count_nonzero(cells[part == c], axis=0)
    return out


def department_lp_bound(
    eligible: IntArray,
    people: IntArray,
    room: IntArray,
    free: IntArray,
    size_min: int,
    size_max: int,
) -> int | None:
    """The LP's optimum, rounded down: ``eligible`` and ``room`` per (mentor, department), ``people`` per
    department, ``free`` groups per mentor. None when the LP is too large, cannot be below the max flow,
    or GLOP does not prove it."""
    cells = np.argwhere((eligible > 0) & (room > 0) & (free[:, None] > 0))
    if len(cells) > LP_CELLS_MAX:
        return None
    if not len(cells) or room[cells[:, 0], cells[:, 1]].min() >= size_min:
        # a department alone may fill a group to its minimum: for any counts within the max flow's
        # capacities, y = max(x[d] / room[d], sum x / size_max) keeps every row, so the LP is the flow's
        # aggregate and cannot be lower than the max flow (no solve needed)
        return None
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:
        return None
    inf = solver.infinity()
    leads = sorted({int(k) for k in cells[:, 0].tolist()})
    y = {k: solver.NumVar(0.0, float(free[k]), "") for k in leads}
    # each mentor's size bounds as two rows, each department's people as one (coefficients set one by
    # one: the natural API's expressions cost 3 s of Python at 5,000 mentees)
    most = {k: solver.Constraint(-inf, 0.0) for k in leads}
    least = {k: solver.Constraint(-inf, 0.0) for k in leads}
    for k in leads:
        most[k].SetCoefficient(y[k], -float(size_max))
        least[k].SetCoefficient(y[k], float(size_min))
    of_department = {int(d): solver.Constraint(-inf, float(people[d])) for d in np.unique(cells[:, 1]).tolist()}
    objective = solver.Objective()
    for k, d in cells.tolist():
        v = solver.NumVar(0.0, float(eligible[k, d]), "")
        room_row = solver.Constraint(-inf, 0.0)
        room_row.SetCoefficient(v, 1.0)
        room_row.SetCoefficient(y[k], -float(room[k, d]))
        most[k].SetCoefficient(v, 1.0)
        least[k].SetCoefficient(v, -1.0)
        of_department[d].SetCoefficient(v, 1.0)
        objective.SetCoefficient(v, 1.0)
    objective.SetMaximization()
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return None
    return int(np.floor(solver.Objective().Value() + LP_TOLERANCE))


def placement_lp_bound(prep: Prepared, el: Eligibility, active: list[str], free: IntArray) -> int | None:
    """``department_lp_bound`` of the run's active seekers, or None without a department bound (then the
    max flow already counts everything this LP would). The lead mentor's own department takes one place
    of its department's room in every group it leads (co-facilitators' departments are left out: the
    bound stays an upper bound)."""
    pol = prep.policy
    limit = pol.max_same_department
    if limit is None or not active:
        return None
    of, room = department_rooms(prep, active, limit)
    departments = room.shape[1]
    eligible = eligible_by_department(el, active, of, departments)
    people = np.bincount(of, minlength=departments).astype(np.int64)
    size_min, size_max = pol.group_members_min, pol.group_members_max
    by_department = department_lp_bound(eligible, people, np.maximum(0, room), free, size_min, size_max)
    if by_department is None:
        return None  # too large, or it cannot be below the max flow: neither can the finer LP
    by_class = placement_class_bound(prep, el, active, free, of, np.maximum(0, room))
    return by_department if by_class is None else min(by_department, by_class)


def placement_class_bound(
    prep: Prepared, el: Eligibility, active: list[str], free: IntArray, of: IntArray, room: IntArray
) -> int | None:
    """``facilitated_class_lp``'s bound of the run's active seekers: a class per department and profile
    (``profile_key``), a type per mentor department and profile (mentors with free groups only)."""
    pol = prep.policy
    person_class = partition([profile_key(prep.by_id[pid]) for pid in active])  # one department each
    class_department = np.zeros(int(person_class.max()) + 1, dtype=np.int64)
    class_department[person_class] = of
    mentor_type = partition([profile_key(prep.by_id[m]) for m in prep.mentor_ids])  # one room row each
    mentor_type[free <= 0] = -1
    types = int(mentor_type.max()) + 1
    if types <= 0:
        return None
    type_room = np.zeros((types, room.shape[1]), dtype=np.int64)
    type_free = np.zeros(types, dtype=np.int64)
    typed = np.flatnonzero(mentor_type >= 0)
    type_room[mentor_type[typed]] = room[typed]
    np.add.at(type_free, mentor_type[typed], free[typed])
    rows = np.array([el.row[pid] for pid in active], dtype=np.int64)
    reach = reachable_by_type(el.eligible, rows, mentor_type, types)
    size_min, size_max = pol.group_members_min, pol.group_members_max
    return class_lp_bound(reach, person_class, class_department, type_room, type_free, size_min, size_max)


def profile_key(p: ParticipantProfile) -> tuple[str, tuple[str, ...], int, int]:
    """What the mentor-side rules read from a profile besides pair lists (reporting lines, conflicts,
    exclusions): department, languages, time zone, level. Any key keeps the class bound valid; this one
    keeps it tight."""
    return p.department, tuple(sorted(p.languages)), p.utc_offset_minutes, p.level


def department_rooms(prep: Prepared, active: list[str], limit: int) -> tuple[IntArray, IntArray]:
    """Each active seeker's department (a code), and each mentor's room for every department in a group
    it leads: ``limit``, one less in the mentor's own department (negative where a limit of 0 would
    already be broken by the mentor). One home for the department bound's counts, which the max flow's
    bound and this LP both take."""
    names = sorted({prep.by_id[pid].department for pid in active})
    code = {name: c for c, name in enumerate(names)}
    of = np.array([code[prep.by_id[pid].department] for pid in active], dtype=np.int64)
    own = np.array([code.get(prep.by_id[m].department, -1) for m in prep.mentor_ids], dtype=np.int64)
    room = limit - (own[:, None] == np.arange(len(names))[None, :]).astype(np.int64)
    return of, room
