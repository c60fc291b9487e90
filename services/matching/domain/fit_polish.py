"""Facilitated groups, fit level: a better starting solution under the fixed higher levels.

The solution that stands after the load levels (or the greedy's, on pools too large for CP-SAT) has
its open groups: which mentor runs how many. Moving mentees between those open groups, each keeping
between the policy's minimum and maximum members and every member-member rule (reporting lines,
declared conflicts, excluded pairs, the department bound), keeps the placed set, the lottery, the max
load ratio and the mentors used exactly; only fit changes. CP-SAT, started from that solution,
improves this reassignment slowly at scale; this module gives it a far better start:

1. a min-cost flow (mentee -> open group it may join -> sink, group minimum and maximum as arc
   capacities, cost -fit) solves the reassignment exactly *without* the member-member rules;
2. a group that breaks a member-member rule loses the arcs of the members that break it (the lower-fit
   ones first), and the flow is solved again, until no rule is broken or the flow cannot place
   everyone any more (then the solution the solver gave is the start);
3. a local search (moves and swaps between open groups, only ones that keep every rule) polishes it.

Everything is deterministic: sorted inputs, a fixed order of moves and a fixed number of rounds, no
clock. Mentees under a lock never move.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow

Slot = tuple[int, int]
REPAIR_ROUNDS = 60
POLISH_ROUNDS = 30


@dataclass(frozen=True)
class Reassignment:
    """The reassignment problem: open groups with their mentor's department, who may join which."""

    assign: Mapping[str, Slot]
    """Each placed mentee's current group (a feasible solution)."""
    options: Mapping[str, list[Slot]]
    """Open groups each mentee may join (its candidate mentors' open slots)."""
    fit: Mapping[tuple[str, Slot], int]
    dept: Mapping[str, str]
    mentor_dept: Mapping[Slot, str]
    apart: frozenset[frozenset[str]]
    size_min: int
    size_max: int
    max_same_department: int | None
    frozen: frozenset[str] = frozenset()
    """Mentees that stay where they are (locks)."""

    def total(self, assign: Mapping[str, Slot]) -> int:
        return sum(self.fit.get((pid, s), 0) for pid, s in assign.items())

    def broken(self, assign: Mapping[str, Slot]) -> list[tuple[Slot, list[str]]]:
        """Per group, the members who break a member-member rule there (sorted, deterministic)."""
        members: dict[Slot, list[str]] = defaultdict(list)
        for pid, s in sorted(assign.items()):
            members[s].append(pid)
        out = []
        for s, ids in sorted(members.items()):
            bad: set[str] = set()
            for i, a in enumerate(ids):
                for b in ids[i + 1 :]:
                    if frozenset((a, b)) in self.apart:  # the lower-fit one leaves (never a locked one)
                        bad.add(min((a, b), key=lambda p: (p in self.frozen, self.fit.get((p, s), 0), p)))
            if self.max_same_department is not None:
                by_dept: dict[str, list[str]] = defaultdict(list)
                for pid in ids:
                    by_dept[self.dept[pid]].append(pid)
                for d, pids in by_dept.items():
                    room = self.max_same_department - (1 if d == self.mentor_dept[s] else 0)
                    if len(pids) > room:
                        pids.sort(key=lambda p: (p not in self.frozen, -self.fit.get((p, s), 0), p))  # locked ones stay
                        bad.update(p for p in pids[max(0, room) :] if p not in self.frozen)
            bad -= self.frozen
            if bad:
                out.append((s, sorted(bad)))
        return out


def _flow(problem: Reassignment, banned: set[tuple[str, Slot]]) -> dict[str, Slot] | None:
    """The best reassignment with the department bound but without the other member-member rules, or
    None when it cannot keep everyone placed with every open group between its minimum and maximum.

    With a department bound, a mentee reaches its group through a (group, department) node whose
    capacity is the room that department has there (the bound, less one when the mentor is of it), so
    every flow keeps the bound; only reporting lines, conflicts and excluded pairs are left to repair."""
    people = sorted(problem.assign)
    slots = sorted(set(problem.assign.values()))
    slot_pos = {s: n for n, s in enumerate(slots)}
    n, m = len(people), len(slots)
    big = 1 + sum(max(0, f) for f in problem.fit.values())
    source, sink = 0, 1
    tails, heads, caps, costs = [], [], [], []
    arcs: list[tuple[str, Slot]] = []
    arc_at: list[int] = []
    dept_node: dict[tuple[Slot, str], int] = {}
    bound = problem.max_same_department
    next_node = 2 + n + m
    for r, pid in enumerate(people):
        tails.append(source)
        heads.append(2 + r)
        caps.append(1)
        costs.append(0)
        opts = [problem.assign[pid]] if pid in problem.frozen else problem.options[pid]
        for s in opts:
            if s not in slot_pos or (pid, s) in banned:
                continue
            head = 2 + n + slot_pos[s]
            if bound is not None:
                d = problem.dept[pid]
                room = bound - (1 if d == problem.mentor_dept[s] else 0)
                if room <= 0:
                    continue
                if (s, d) not in dept_node:
                    dept_node[(s, d)] = next_node
                    next_node += 1
                    tails.append(next_node - 1)
                    heads.append(head)
                    caps.append(room)
                    costs.append(0)
                head = dept_node[(s, d)]
            arc_at.append(len(tails))
            tails.append(2 + r)
            heads.append(head)
            caps.append(1)
            costs.append(-problem.fit.get((pid, s), 0))
            arcs.append((pid, s))
    minimum_arcs = []
    for c in range(m):
        minimum_arcs.append(len(tails))
        tails += [2 + n + c, 2 + n + c]
        heads += [sink, sink]
        caps += [problem.size_min, problem.size_max - problem.size_min]
        costs += [-big, 0]
    f = min_cost_flow.SimpleMinCostFlow()
    f.add_arcs_with_capacity_and_unit_cost(
        np.array(tails, dtype=np.int64), np.array(heads, dtype=np.int64),
        np.array(caps, dtype=np.int64), np.array(costs, dtype=np.int64),
    )  # fmt: skip
    f.set_node_supply(source, n)
    f.set_node_supply(sink, -n)
    if f.solve_max_flow_with_min_cost() != f.OPTIMAL:
        return None
    flows = f.flows(np.arange(len(tails), dtype=np.int64))
    if int(f.maximum_flow()) < n:
        return None
    if any(int(flows[a]) < problem.size_min for a in minimum_arcs):
        return None
    out = {arcs[i][0]: arcs[i][1] for i, a in enumerate(arc_at) if flows[a] > 0}
    return out if len(out) == n else None


def _flow_repaired(problem: Reassignment, deadline: float | None = None) -> dict[str, Slot] | None:
    banned: set[tuple[str, Slot]] = set()
    for _ in range(REPAIR_ROUNDS):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        assign = _flow(problem, banned)
        if assign is None:
            return None
        broken = problem.broken(assign)
        if not broken:
            return assign
        for s, pids in broken:
            banned.update((pid, s) for pid in pids)
    return None


def _polish(
    problem: Reassignment, start: Mapping[str, Slot], rounds: int = POLISH_ROUNDS, deadline: float | None = None
) -> dict[str, Slot]:
    """Moves and swaps between open groups that raise the fit and keep every rule, in a fixed order."""
    assign = dict(start)
    members: dict[Slot, set[str]] = defaultdict(set)
    for pid, s in assign.items():
        members[s].add(pid)
    bound = problem.max_same_department
    dept_count: dict[tuple[Slot, str], int] = defaultdict(int)
    for pid, s in assign.items():
        dept_count[(s, problem.dept[pid])] += 1
    partners: dict[str, set[str]] = defaultdict(set)
    for pair in problem.apart:
        a, b = sorted(pair)
        partners[a].add(b)
        partners[b].add(a)

    def fits_in(pid: str, s: Slot, leaving: str | None) -> bool:
        if any(p in members[s] and p != leaving for p in partners[pid]):
            return False
        if bound is None:
            return True
        d = problem.dept[pid]
        n = dept_count[(s, d)] + (1 if d == problem.mentor_dept[s] else 0) + 1
        if leaving is not None and problem.dept[leaving] == d:
            n -= 1
        return n <= bound

    def put(pid: str, s: Slot) -> None:
        old = assign[pid]
        members[old].discard(pid)
        dept_count[(old, problem.dept[pid])] -= 1
        assign[pid] = s
        members[s].add(pid)
        dept_count[(s, problem.dept[pid])] += 1

    movable = sorted(pid for pid in assign if pid not in problem.frozen)
    open_slots = set(members)
    for _ in range(rounds):
        if deadline is not None and time.perf_counter() > deadline:
            break
        improved = False
        for a in movable:
            here = assign[a]
            fa = problem.fit.get((a, here), 0)
            for s in problem.options[a]:
                if s == here or s not in open_slots:
                    continue
                gain_a = problem.fit.get((a, s), 0) - fa
                if (
                    gain_a > 0
                    and len(members[here]) > problem.size_min
                    and len(members[s]) < problem.size_max
                    and fits_in(a, s, None)
                ):
                    put(a, s)
                    improved = True
                    break
                for b in sorted(members[s]):
                    if b in problem.frozen or here not in problem.options[b]:
                        continue
                    gain = gain_a + problem.fit.get((b, here), 0) - problem.fit.get((b, s), 0)
                    if gain > 0 and fits_in(a, s, b) and fits_in(b, here, a):
                        put(a, s)
                        put(b, here)
                        improved = True
                        break
                if assign[a] != here:
                    break
        if not improved:
            break
    return assign


def improve(problem: Reassignment, rounds: int = POLISH_ROUNDS, deadline: float | None = None) -> dict[str, Slot]:
    """A reassignment at least as fit as ``problem.assign`` that keeps every rule and every group's size
    within bounds; the open groups and the placed set do not change. ``rounds`` bounds the local search
    (a deterministic amount of work, for large pools under a time limit). ``deadline`` (wall clock) stops
    the repair and the rounds early: then the result is the best stage reached, which depends on the
    machine's speed (the same trade-off as the solver's levels; the caller notes it)."""
    best = dict(problem.assign)
    flowed = _flow_repaired(problem, deadline)
    if flowed is not None and problem.total(flowed) > problem.total(best):
        best = flowed
    polished = _polish(problem, best, rounds, deadline)
    if problem.total(polished) > problem.total(best) and not problem.broken(polished):
        best = polished
    return best
