"""Facilitated groups, fit level: a better starting solution under the fixed higher levels.

The solution that stands after the load levels (or the greedy's, on pools too large for CP-SAT) has
its open groups: which mentor runs how many. Moving mentees between those open groups, each keeping
between the policy's minimum and maximum members and every member-member rule (reporting lines,
declared conflicts, excluded pairs, the department bound), keeps the placed set, the lottery, the max
load ratio and the mentors used exactly; only fit changes (the problem: ``reassignment``). CP-SAT,
started from that solution, improves this reassignment slowly at scale; this module gives it a far
better start:

1. a min-cost flow (mentee -> open group it may join -> sink, group minimum and maximum as arc
   capacities, cost -fit) solves the reassignment exactly *without* the member-member rules;
2. a group that breaks a member-member rule loses the arcs of the members that break it (the lower-fit
   ones first), and the flow is solved again, until no rule is broken or the flow cannot place
   everyone any more (then the solution the solver gave is the start);
3. a local search (``fit_moves``: moves and swaps between open groups, only ones that keep every rule)
   polishes it.

Everything is deterministic: sorted inputs, a fixed order of moves and a fixed number of rounds, no
clock. Mentees under a lock never move.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import replace

import numpy as np
from ortools.graph.python import min_cost_flow

from services.matching.domain.fit_moves import Moves, polish
from services.matching.domain.reassignment import Reassignment, Slot
from services.matching.domain.rules import IntArray

REPAIR_ROUNDS = 60
POLISH_ROUNDS = 30


def _flow(problem: Reassignment, banned: set[tuple[str, Slot]]) -> dict[str, Slot] | None:
    """The best reassignment with the department bound but without the other member-member rules, or
    None when it cannot keep everyone placed with every open group between its minimum and maximum.

    With a department bound, a mentee reaches its group through a (group, department) node whose
    capacity is the room that department has there (the bound, less one when the mentor is of it), so
    every flow keeps the bound; only reporting lines, conflicts and excluded pairs are left to repair.
    Group minimums are node demands (each group node must receive its minimum, the rest goes on to
    the sink through an arc of capacity maximum - minimum), not a large negative cost on a minimum arc:
    that cost widened the cost range the cost-scaling solver works through (7 s against 3 s for 20,000
    mentees in 5,000 groups). Arcs are built as arrays. ``problem.optional`` people may also go straight
    to the sink; their arcs into groups earn ``_bonuses`` (placed first, then the lottery, then fit)."""
    solved = _solve(problem, banned, placeholders=False)
    return None if solved is None else solved[0]


def short_extras(problem: Reassignment) -> set[Slot] | None:
    """The ``extra`` groups the flow cannot fill to their minimum: each may take up to its minimum of
    placeholders, at a cost above what placing anyone earns, so the flow fills as many extra places
    with people as it can and the groups still holding a placeholder are those to give up (None: not
    even so can the placed stay placed)."""
    solved = _solve(problem, set(), placeholders=True)
    return None if solved is None else solved[1]


def _solve(
    problem: Reassignment, banned: set[tuple[str, Slot]], placeholders: bool
) -> tuple[dict[str, Slot], set[Slot]] | None:
    """The flow of ``_flow`` (with ``placeholders``, those of ``short_extras``): the assignment, and the
    extra groups that took a placeholder."""
    people = sorted({*problem.assign, *problem.optional})
    slots = sorted((set(problem.assign.values()) - problem.closing) | problem.extra)
    slot_pos = {s: n for n, s in enumerate(slots)}
    n, m = len(people), len(slots)
    who, where, cost = _arcs(problem, people, slot_pos, banned)
    group_node = 2 + n + np.arange(m, dtype=np.int64)
    f = min_cost_flow.SimpleMinCostFlow()
    _unit_arcs(f, np.zeros(n, dtype=np.int64), 2 + np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64))
    bonus = _bonuses(problem, people, cost)
    cost = cost - bonus[who]
    skip = np.flatnonzero(bonus > 0).astype(np.int64)  # optional people may stay out
    _unit_arcs(f, 2 + skip, np.ones(len(skip), dtype=np.int64), np.zeros(len(skip), dtype=np.int64))
    who, where, cost, head = _department_nodes(f, problem, people, slots, (who, where, cost), group_node)
    first = f.num_arcs()
    _unit_arcs(f, 2 + who, head, cost)
    spare = problem.size_max - problem.size_min
    f.add_arcs_with_capacity_and_unit_cost(
        group_node, np.ones(m, dtype=np.int64), np.full(m, spare, dtype=np.int64), np.zeros(m, dtype=np.int64)
    )
    supply = n
    short_arcs = np.zeros(0, dtype=np.int64)
    extra = np.array([slot_pos[s] for s in sorted(problem.extra)], dtype=np.int64)
    if placeholders and len(extra):  # a node supplying placeholders to the extra groups, the rest to the sink
        held = f.num_nodes()
        supply += len(extra) * problem.size_min
        price = 2 * int(bonus.max(initial=0)) + 2 * int(np.abs(cost).max(initial=0)) + 1
        short_arcs = f.num_arcs() + np.arange(len(extra), dtype=np.int64)
        f.add_arcs_with_capacity_and_unit_cost(
            np.full(len(extra), held, dtype=np.int64), group_node[extra],
            np.full(len(extra), problem.size_min, dtype=np.int64), np.full(len(extra), price, dtype=np.int64),
        )  # fmt: skip
        f.add_arc_with_capacity_and_unit_cost(held, 1, len(extra) * problem.size_min, 0)
        f.set_node_supply(held, len(extra) * problem.size_min)
    if supply - m * problem.size_min < 0:
        return None
    f.set_nodes_supplies(
        np.array([0, 1, *group_node.tolist()], dtype=np.int64),
        np.array([n, -(supply - m * problem.size_min), *([-problem.size_min] * m)], dtype=np.int64),
    )
    if f.solve() != f.OPTIMAL:
        return None
    flows = f.flows(first + np.arange(len(who), dtype=np.int64))
    used = np.flatnonzero(flows > 0)
    out = {people[int(who[a])]: slots[int(where[a])] for a in used}
    if not all(pid in out for pid in problem.assign):
        return None
    short = f.flows(short_arcs) if len(short_arcs) else short_arcs
    return out, {slots[int(extra[c])] for c in np.flatnonzero(short > 0).tolist()}


def _unit_arcs(f: min_cost_flow.SimpleMinCostFlow, tails: IntArray, heads: IntArray, costs: IntArray) -> None:
    f.add_arcs_with_capacity_and_unit_cost(tails, heads, np.ones(len(tails), dtype=np.int64), costs)


def _department_nodes(
    f: min_cost_flow.SimpleMinCostFlow,
    problem: Reassignment,
    people: list[str],
    slots: list[Slot],
    arcs: tuple[IntArray, IntArray, IntArray],
    group_node: IntArray,
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """With a department bound, the (group, department) nodes between people and groups, each with the
    room that department has there; returns the arcs (who, where, cost) kept and each one's head node
    (its group's node when there is no bound)."""
    who, where, cost = arcs
    if problem.max_same_department is None:
        return who, where, cost, group_node[where]
    n, m = len(people), len(slots)
    names = {d: i for i, d in enumerate(sorted({*problem.dept.values(), *problem.mentor_dept.values()}))}
    person_dept = np.array([names[problem.dept[pid]] for pid in people], dtype=np.int64)
    slot_dept = np.array([names[problem.mentor_dept[s]] for s in slots], dtype=np.int64)
    room = problem.max_same_department - (person_dept[who] == slot_dept[where]).astype(np.int64)
    keep = room > 0
    who, where, cost, room = who[keep], where[keep], cost[keep], room[keep]
    key = where * len(names) + person_dept[who]
    nodes, node_of = np.unique(key, return_inverse=True)
    node_room = np.zeros(len(nodes), dtype=np.int64)
    node_room[node_of] = room
    dept_node = 2 + n + m + np.arange(len(nodes), dtype=np.int64)
    f.add_arcs_with_capacity_and_unit_cost(
        dept_node, group_node[nodes // len(names)], node_room, np.zeros(len(nodes), dtype=np.int64)
    )
    return who, where, cost, dept_node[node_of]


def _bonuses(problem: Reassignment, people: list[str], cost: IntArray) -> IntArray:
    """Per person (in ``people`` order) what placing it earns in the flow: 0 for the placed (they must
    be placed), and for the ``optional`` person drawn i-th of L, ``step x (L + 1) x L + step x (L - i)``
    with ``step`` above any difference in fit: one more person placed outweighs any choice among the
    drawn, and an earlier draw any fit."""
    out = np.zeros(len(people), dtype=np.int64)
    if not problem.optional:
        return out
    step = (int(np.abs(cost).max(initial=0)) + 1) * len(people) + 1  # fits are never negative
    count = len(problem.optional)
    index = {pid: r for r, pid in enumerate(people)}
    for i, pid in enumerate(problem.optional):
        out[index[pid]] = step * (count + 1) * count + step * (count - i)
    return out


def _arcs(
    problem: Reassignment, people: list[str], slot_pos: Mapping[Slot, int], banned: set[tuple[str, Slot]]
) -> tuple[IntArray, IntArray, IntArray]:
    """The flow's mentee -> group arcs as (mentee row, group position, cost -fit): every option of each
    mentee in an open group, in option order, except banned ones; a locked mentee only to its own group."""
    arcs = problem.arcs
    to_pos = np.array([slot_pos.get(s, -1) for s in arcs.slots], dtype=np.int64)
    who, where, fit = arcs.who, to_pos[arcs.where] if len(arcs.where) else arcs.where, arcs.fit
    keep = where >= 0
    m = max(1, len(slot_pos))
    if banned:
        index = arcs.index
        gone = [index[pid] * m + slot_pos[s] for pid, s in banned if s in slot_pos and pid in index]
        keep &= ~np.isin(who * m + where, np.array(gone, dtype=np.int64))
    frozen = [r for r, pid in enumerate(people) if pid in problem.frozen]
    if frozen:  # only its own group, at the fit it has there (0 if not among its options)
        is_frozen = np.zeros(len(people), dtype=bool)
        is_frozen[frozen] = True
        keep &= ~is_frozen[who]
        own = [(r, people[r], problem.assign[people[r]]) for r in frozen]
        own = [(r, pid, s) for r, pid, s in own if s in slot_pos and (pid, s) not in banned]
        who = np.concatenate([who[keep], np.array([r for r, _, _ in own], dtype=np.int64)])
        where = np.concatenate([where[keep], np.array([slot_pos[s] for _, _, s in own], dtype=np.int64)])
        fit = np.concatenate([fit[keep], np.array([problem.option_fit(p, s) for _, p, s in own], dtype=np.int64)])
        order = np.argsort(who, kind="stable")
        return who[order], where[order], -fit[order]
    return who[keep], where[keep], -fit[keep]


def flow_repaired(
    problem: Reassignment, deadline: float | None = None, repairs: int = REPAIR_ROUNDS
) -> dict[str, Slot] | None:
    """The flow, with each member who breaks a member-member rule moved out by the best single move or
    swap that keeps every rule (one flow, then a few moves: a second flow cost 3 s at 20,000 mentees);
    members no move can repair lose their arc to that group and the flow is solved again."""
    banned: set[tuple[str, Slot]] = set()
    for _ in range(repairs):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        assign = _flow(problem, banned)
        if assign is None:
            return None
        broken = problem.broken(assign)
        if broken:
            moves = Moves(problem, assign)
            for s, pids in broken:
                for pid in pids:
                    if moves.assign[pid] == s and moves.still_broken(pid):
                        moves.leave(pid, repair=True)
            assign = moves.assign
            broken = problem.broken(assign)
        if not broken:
            return assign
        for s, pids in broken:
            banned.update((pid, s) for pid in pids)
    return None


def improve(
    problem: Reassignment, rounds: int = POLISH_ROUNDS, deadline: float | None = None, repairs: int = REPAIR_ROUNDS
) -> dict[str, Slot]:
    """A reassignment at least as fit as ``problem.assign`` that keeps every rule and every group's size
    within bounds; the open groups and the placed set do not change. ``rounds`` bounds the local search
    (a deterministic amount of work, for large pools under a time limit). ``deadline`` (wall clock) stops
    the repair and the rounds early: then the result is the best stage reached, which depends on the
    machine's speed (the same trade-off as the solver's levels; the caller notes it)."""
    best = dict(problem.assign)
    flowed = None
    for trial in _fewer_extras(problem):
        flowed = flow_repaired(trial, deadline, repairs)
        if flowed is not None:
            problem = trial
            break
    if flowed is not None and problem.total(flowed) > problem.total(best):
        best = flowed
    return moved(problem, best, rounds, deadline)


def _fewer_extras(problem: Reassignment) -> Iterator[Reassignment]:
    """The problem, then with fewer of its ``extra`` groups until the flow can fill them: as many as
    the placed people fill at the group minimum, then half of those, down to none (its own groups stay
    open). A mentor's first group comes before anyone's second, so mentors left idle are given one
    first (fair load (b)). Why not all or none: where the department bound binds (probe ``fac
    conflicts0.5 dept1 s17 1000``: at most one of a department per group, and a quarter of the placed
    people in one department) the flow wanted 35 extra groups, the placed could fill 11 at the
    minimum, 5 could be filled; dropping all 35 left the fit 0.8 % below the proven optimum. With
    ``closing`` (groups a flow chose afresh) the problem is tried as it is: it has no fallback here."""
    yield problem
    if problem.closing or not problem.extra:
        return
    extra = sorted(problem.extra, key=lambda s: (s[1], s[0]))
    fill = len(problem.assign) // max(1, problem.size_min) - len(set(problem.assign.values()))
    extra = extra[: max(0, fill)] if fill < len(extra) else extra[: len(extra) // 2]
    while True:
        yield replace(problem, extra=frozenset(extra))
        if not extra:
            return
        extra = extra[: len(extra) // 2]


def moved(
    problem: Reassignment, start: dict[str, Slot], rounds: int = POLISH_ROUNDS, deadline: float | None = None
) -> dict[str, Slot]:
    """``start`` after ``rounds`` of the local search (moves and swaps that keep every rule), if fitter."""
    if rounds > 0:
        polished = polish(problem, start, rounds, deadline)
        if problem.total(polished) > problem.total(start) and not problem.broken(polished):
            return polished
    return start
