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
    mentees in 5,000 groups). Arcs are built as arrays."""
    people = sorted(problem.assign)
    slots = sorted((set(problem.assign.values()) - problem.closing) | problem.extra)
    slot_pos = {s: n for n, s in enumerate(slots)}
    n, m = len(people), len(slots)
    who, where, cost = _arcs(problem, people, slot_pos, banned)
    group_node = 2 + n + np.arange(m, dtype=np.int64)
    head = group_node[where]
    f = min_cost_flow.SimpleMinCostFlow()
    f.add_arcs_with_capacity_and_unit_cost(
        np.zeros(n, dtype=np.int64),
        2 + np.arange(n, dtype=np.int64),
        np.ones(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
    )
    if problem.max_same_department is not None:
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
        head = dept_node[node_of]
    first = f.num_arcs()
    f.add_arcs_with_capacity_and_unit_cost(2 + who, head, np.ones(len(who), dtype=np.int64), cost)
    spare = problem.size_max - problem.size_min
    f.add_arcs_with_capacity_and_unit_cost(
        group_node, np.ones(m, dtype=np.int64), np.full(m, spare, dtype=np.int64), np.zeros(m, dtype=np.int64)
    )
    if n - m * problem.size_min < 0:
        return None
    f.set_nodes_supplies(
        np.array([0, 1, *group_node.tolist()], dtype=np.int64),
        np.array([n, -(n - m * problem.size_min), *([-problem.size_min] * m)], dtype=np.int64),
    )
    if f.solve() != f.OPTIMAL:
        return None
    flows = f.flows(first + np.arange(len(who), dtype=np.int64))
    used = np.flatnonzero(flows > 0)
    out = {people[int(who[a])]: slots[int(where[a])] for a in used}
    return out if len(out) == n else None


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


def _flow_repaired(
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
        flowed = _flow_repaired(trial, deadline, repairs)
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
