"""Facilitated groups on pools too large for CP-SAT: which extra groups to open for fit.

The greedy opens groups in lottery order; fit then can only move mentees between *those* groups. A
min-cost flow over the placed people (each to its best-fitting eligible mentors with room under the
run's max load ratio, a mentor taking at most its allowed groups x the group maximum, cost -fit) is the
fit-optimal placement of the same people at the same ratio when group minimums and member-member rules
are relaxed: the benchmark's proven fit bound. Mentors it loads with enough people for another group
are where fit wants groups the greedy did not open. Opening them keeps the placed set, never raises
the max load ratio (a mentor only opens what the ratio allows) and only adds mentors used; the
reassignment (``fit_polish``) then fills every open group to at least its minimum, or, when it cannot,
keeps the greedy's groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from ortools.graph.python import min_cost_flow

from services.matching.domain.facilitated_prep import Eligibility, top_arcs
from services.matching.domain.rules import IntArray

FLOW_OPTIONS = 10
"""Each placed person's arcs in the flow: its best-fitting eligible mentors with allowed groups."""


Departments = tuple[Mapping[str, str], Sequence[str], int | None]
"""Each person's department, each mentor's, and the bound per group (None: no bound)."""


def extra_groups(
    el: Eligibility,
    people: list[str],
    groups: IntArray,
    allowed: IntArray,
    sizes: tuple[int, int],
    departments: Departments,
) -> dict[int, int]:
    """Mentor position -> groups to open beyond ``groups`` (the greedy's per mentor), at most ``allowed``
    per mentor in all, where the fit-optimal flow of ``people`` puts enough people for them.

    With a department bound, a person reaches a mentor through a (mentor, department) node that takes at
    most the mentor's allowed groups x the room that department has in one of them."""
    load = fit_loads(el, people, allowed, sizes[1], departments)
    if load is None:
        return {}
    fillable = load // max(1, sizes[0])
    extra = np.minimum(allowed, fillable) - groups
    return {int(k): int(extra[k]) for k in np.flatnonzero(extra > 0)}


def fit_loads(
    el: Eligibility,
    people: list[str],
    allowed: IntArray,
    size_max: int,
    departments: Departments,
    least: IntArray | None = None,
    options: int = FLOW_OPTIONS,
) -> IntArray | None:
    """People per mentor in the fit-optimal flow of ``people`` (each to its ``options`` best-fitting
    eligible mentors with allowed groups, a mentor taking at most its allowed groups x the group
    maximum, cost -fit). Without ``least`` as many people as the arcs can carry are routed (a max flow
    of least cost); with it every person is routed and mentor k takes at least ``least[k]``, else None."""
    dept, mentor_dept, limit = departments
    leads = np.flatnonzero(allowed > 0).astype(np.int64)
    if not people or not len(leads):
        return None
    who, mentor, fit = top_arcs(el, people, leads, options)
    n, m = len(people), len(allowed)
    head = 2 + n + mentor
    f = min_cost_flow.SimpleMinCostFlow()
    if limit is not None:  # through (mentor, department) nodes: the mentor's allowed groups x that department's room
        names = {d: i for i, d in enumerate(sorted({*dept.values(), *mentor_dept}))}
        person_dept = np.array([names[dept[pid]] for pid in people], dtype=np.int64)
        of_mentor = np.array([names[d] for d in mentor_dept], dtype=np.int64)
        room = limit - (person_dept[who] == of_mentor[mentor]).astype(np.int64)
        keep = room > 0
        who, mentor, fit, room = who[keep], mentor[keep], fit[keep], room[keep]
        nodes, node_of = np.unique(mentor * len(names) + person_dept[who], return_inverse=True)
        node_room = np.zeros(len(nodes), dtype=np.int64)
        node_room[node_of] = room
        dept_node = 2 + n + m + np.arange(len(nodes), dtype=np.int64)
        f.add_arcs_with_capacity_and_unit_cost(
            dept_node, 2 + n + nodes // len(names), allowed[nodes // len(names)] * node_room,
            np.zeros(len(nodes), dtype=np.int64),
        )  # fmt: skip
        head = dept_node[node_of]
    f.add_arcs_with_capacity_and_unit_cost(
        np.zeros(n, dtype=np.int64), 2 + np.arange(n, dtype=np.int64),
        np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64),
    )  # fmt: skip
    first = f.num_arcs()
    f.add_arcs_with_capacity_and_unit_cost(2 + who, head, np.ones(len(who), dtype=np.int64), -fit)
    floor = np.zeros(m, dtype=np.int64) if least is None else least.astype(np.int64)
    top = (allowed * size_max).astype(np.int64)
    if (floor > top).any() or floor.sum() > n:
        return None
    f.add_arcs_with_capacity_and_unit_cost(
        2 + n + np.arange(m, dtype=np.int64), np.ones(m, dtype=np.int64), top - floor, np.zeros(m, dtype=np.int64)
    )
    if least is None:
        f.set_node_supply(0, n)
        f.set_node_supply(1, -n)
        if f.solve_max_flow_with_min_cost() != f.OPTIMAL:
            return None
    else:  # the minimums as demands of the mentor nodes, the rest on to the sink
        mentor_node = 2 + n + np.arange(m, dtype=np.int64)
        f.set_nodes_supplies(
            np.array([0, 1, *mentor_node.tolist()], dtype=np.int64),
            np.array([n, -(n - int(floor.sum())), *(-floor).tolist()], dtype=np.int64),
        )
        if f.solve() != f.OPTIMAL:
            return None
    flows = f.flows(first + np.arange(len(who), dtype=np.int64))
    load = np.zeros(m, dtype=np.int64)
    np.add.at(load, mentor, flows)
    return load
