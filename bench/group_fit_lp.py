"""A fit bound for facilitated groups that keeps the group minimum together with the department bound.

The benchmark's transportation bound (``bench.fit_bounds.idle_and_fit_bound``) lets each mentor take
up to (its groups) x (the room one department has in a group) of each department and up to (its groups) x
group maximum in all, with nothing that ties a mentor's people to a number of groups. Where most people
are of one department (the *one-dept* rows: 80 % in one, at most 2 of a department per group, groups of
3-8), that relaxation puts people of the big department with the mentors they fit best, as many as the
room of all the mentor's groups allows, while a real group needs people of other departments to reach
its minimum, and those are few: the run was 14-17 % below it, most of it the bound's.

This bound is a linear programme (GLOP) over the same placed people and the same max load ratio:

- ``x[i, k]`` in [0, 1] for each placed mentee ``i`` and each of its kept arcs (its best eligible
  mentors with groups allowed), worth the pair's fit;
- ``o[i]`` in [0, 1]: ``i`` with a mentor outside its kept arcs, worth its next-best fit (at least the
  fit of every arc not kept);
- ``s[k]`` >= 0: the members of ``k``'s groups who came through ``o``; ``sum_k s[k] = sum_i o[i]``;
- ``y[k]`` in [0, groups allowed to k]: the groups mentor ``k`` leads;
- each placed mentee once: ``sum_k x[i, k] + o[i] = 1``;
- sizes: ``group_min * y[k] <= sum_i x[i, k] + s[k] <= group_max * y[k]``;
- departments: ``sum_{i of d} x[i, k] <= room(k, d) * y[k]``, ``room`` the department bound less one
  when ``k`` is of ``d``.

Why it bounds every grouping of the placed people at that ratio: take the grouping's own numbers (``y[k]``
its groups of ``k``, ``x[i, k] = 1`` when ``i`` is in a group of ``k`` through a kept arc, else ``o[i] =
1`` and one more in ``s[k]``). Each group holds between the minimum and the maximum, so the sums over
``k``'s groups meet the size rows; each group holds at most ``room(k, d)`` of ``d``, and the kept-arc
members of ``d`` are some of them, so the department rows hold; the mentor's groups respect the ratio.
Its value is at least the grouping's fit (an ``o`` is worth at least the arc it stands for), and the LP's
optimum is at least that. The optimum (a float) is rounded down after a tolerance of 1e-3, since fits
are whole numbers. Only for one mentor per group (the LP's groups are a mentor's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ortools.linear_solver import pywraplp

LP_TOLERANCE = 1e-3
MAX_ARCS = 400_000
"""No LP above this many kept arcs (about 3-5 s of model building and GLOP here); the flow's bound stands."""

Arcs = Sequence[tuple[str, Sequence[tuple[int, int]], int | None]]
"""Per placed mentee: its id, its kept arcs (mentor position, fit), its next-best fit (None: every arc kept)."""


def group_fit_lp_bound(
    arcs: Arcs,
    mentor_departments: Sequence[str],
    allowed: Sequence[int],
    department_of: dict[str, str],
    *,
    group_min: int,
    group_max: int,
    department_limit: int | None,
) -> float | None:
    """The LP's optimum rounded down (see the module docstring); None when it is too large or GLOP fails."""
    if sum(len(kept) for _, kept, _ in arcs) > MAX_ARCS:
        return None
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:
        return None
    infinity = solver.infinity()
    groups = [solver.NumVar(0.0, float(a), "") for a in allowed]
    spill = [solver.NumVar(0.0, infinity, "") for _ in allowed]
    members: list[list[pywraplp.Variable]] = [[] for _ in allowed]
    of_department: dict[tuple[int, str], list[pywraplp.Variable]] = {}
    objective = solver.Objective()
    outside: list[pywraplp.Variable] = []
    for pid, kept, next_best in arcs:
        here: list[pywraplp.Variable] = []
        for k, fit in kept:
            x = solver.NumVar(0.0, 1.0, "")
            objective.SetCoefficient(x, float(fit))
            members[k].append(x)
            if department_limit is not None:
                of_department.setdefault((k, department_of[pid]), []).append(x)
            here.append(x)
        if next_best is not None:
            o = solver.NumVar(0.0, 1.0, "")
            objective.SetCoefficient(o, float(next_best))
            outside.append(o)
            here.append(o)
        solver.Add(solver.Sum(here) == 1)
    solver.Add(solver.Sum(outside) == solver.Sum(spill))
    for k, y in enumerate(groups):
        size = solver.Sum(members[k]) + spill[k]
        solver.Add(size >= group_min * y)
        solver.Add(size <= group_max * y)
    if department_limit is not None:
        for (k, department), xs in of_department.items():
            room = department_limit - (1 if mentor_departments[k] == department else 0)
            solver.Add(solver.Sum(xs) <= room * groups[k])
    objective.SetMaximization()
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return None
    return float(math.floor(objective.Value() + LP_TOLERANCE))
