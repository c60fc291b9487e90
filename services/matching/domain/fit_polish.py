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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

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
    extra: frozenset[Slot] = frozenset()
    """Open groups with nobody in them yet: the flow fills each to at least its minimum (or, if it
    cannot, the reassignment keeps the groups of ``assign``)."""

    may_join: Callable[[str, Slot], int | None] | None = None
    """Fit of a mentee in any open group it is eligible for (None: not eligible), beyond ``options``: a
    repair may swap someone into a group outside their options to take a rule-breaker's place."""

    def arc_fit(self, pid: str, s: Slot) -> int:
        f = self.fit.get((pid, s))
        if f is None and self.may_join is not None:
            f = self.may_join(pid, s)
        return f or 0

    def total(self, assign: Mapping[str, Slot]) -> int:
        return sum(self.arc_fit(pid, s) for pid, s in assign.items())

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
    every flow keeps the bound; only reporting lines, conflicts and excluded pairs are left to repair.
    Group minimums are node demands (each group node must receive its minimum, the rest goes on to
    the sink through an arc of capacity maximum - minimum), not a large negative cost on a minimum arc:
    that cost widened the cost range the cost-scaling solver works through (7 s against 3 s for 20,000
    mentees in 5,000 groups). Arcs are built as arrays."""
    people = sorted(problem.assign)
    slots = sorted(set(problem.assign.values()) | problem.extra)
    slot_pos = {s: n for n, s in enumerate(slots)}
    n, m = len(people), len(slots)
    who_l: list[int] = []
    where_l: list[int] = []
    fit_l: list[int] = []
    for r, pid in enumerate(people):
        opts = [problem.assign[pid]] if pid in problem.frozen else problem.options[pid]
        for s in opts:
            c = slot_pos.get(s)
            if c is None or (pid, s) in banned:
                continue
            who_l.append(r)
            where_l.append(c)
            fit_l.append(problem.fit.get((pid, s), 0))
    who, where = np.array(who_l, dtype=np.int64), np.array(where_l, dtype=np.int64)
    cost = -np.array(fit_l, dtype=np.int64)
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


def _flow_repaired(problem: Reassignment, deadline: float | None = None) -> dict[str, Slot] | None:
    """The flow, with each member who breaks a member-member rule moved out by the best single move or
    swap that keeps every rule (one flow, then a few moves: a second flow cost 3 s at 20,000 mentees);
    members no move can repair lose their arc to that group and the flow is solved again."""
    banned: set[tuple[str, Slot]] = set()
    for _ in range(REPAIR_ROUNDS):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        assign = _flow(problem, banned)
        if assign is None:
            return None
        broken = problem.broken(assign)
        if broken:
            moves = _Moves(problem, assign)
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


class _Moves:
    """An assignment under single moves and swaps between open groups that keep every rule."""

    def __init__(self, problem: Reassignment, start: Mapping[str, Slot]) -> None:
        self.problem = problem
        self.assign = dict(start)
        self.members: dict[Slot, set[str]] = defaultdict(set)
        self.dept_count: dict[tuple[Slot, str], int] = defaultdict(int)
        for pid, s in self.assign.items():
            self.members[s].add(pid)
            self.dept_count[(s, problem.dept[pid])] += 1
        self.partners: dict[str, set[str]] = defaultdict(set)
        for pair in problem.apart:
            a, b = sorted(pair)
            self.partners[a].add(b)
            self.partners[b].add(a)
        self.open_slots = set(self.members)
        self.option_set = {pid: set(opts) for pid, opts in problem.options.items()}
        self._sorted: dict[Slot, list[str]] = {}

    def fits_in(self, pid: str, s: Slot, leaving: str | None) -> bool:
        """``pid`` may join group ``s`` (``leaving`` leaves it at the same time): apart pairs, department."""
        problem = self.problem
        if any(p in self.members[s] and p != leaving for p in self.partners[pid]):
            return False
        bound = problem.max_same_department
        if bound is None:
            return True
        d = problem.dept[pid]
        n = self.dept_count[(s, d)] + (1 if d == problem.mentor_dept[s] else 0) + 1
        if leaving is not None and problem.dept[leaving] == d:
            n -= 1
        return n <= bound

    def still_broken(self, pid: str) -> bool:
        """``pid`` breaks a rule where it is (with those present now)."""
        s = self.assign[pid]
        self.members[s].discard(pid)
        self.dept_count[(s, self.problem.dept[pid])] -= 1
        ok = self.fits_in(pid, s, None)
        self.members[s].add(pid)
        self.dept_count[(s, self.problem.dept[pid])] += 1
        return not ok

    def sorted_members(self, s: Slot) -> list[str]:
        """Group ``s``'s members in id order (kept until a move changes the group)."""
        out = self._sorted.get(s)
        if out is None:
            out = self._sorted[s] = sorted(self.members[s])
        return out

    def put(self, pid: str, s: Slot) -> None:
        old = self.assign[pid]
        self._sorted.pop(old, None)
        self._sorted.pop(s, None)
        self.members[old].discard(pid)
        self.dept_count[(old, self.problem.dept[pid])] -= 1
        self.assign[pid] = s
        self.members[s].add(pid)
        self.dept_count[(s, self.problem.dept[pid])] += 1

    def _exits(self, a: str, repair: bool = False, gaining: bool = False) -> Iterator[tuple[int, Slot, str | None]]:
        """Every move or swap that takes ``a`` out of its group and keeps every rule: (gain, group, partner),
        in a fixed order. A repair also swaps in partners for whom ``a``'s group is not among their options.
        ``gaining``: only those that raise the fit, their gain checked before the rules (most candidates
        lose fit, and the rules are the costly part: a round over 1,000 mentees took 0.7-1 s checking
        them first); the same exits, in the same order, as the unfiltered list's positive ones."""
        problem = self.problem
        fit = problem.fit  # read directly in the loops below (``arc_fit`` when a pair is not in it)
        frozen, option_set = problem.frozen, self.option_set
        here = self.assign[a]
        fa = problem.arc_fit(a, here)
        for s in problem.options[a]:
            if s == here or s not in self.open_slots:
                continue
            f_as = fit.get((a, s))
            gain_a = (f_as if f_as is not None else problem.arc_fit(a, s)) - fa
            if (
                (gain_a > 0 or not gaining)
                and len(self.members[here]) > problem.size_min
                and len(self.members[s]) < problem.size_max
                and self.fits_in(a, s, None)
            ):
                yield gain_a, s, None
            for b in self.sorted_members(s):
                if b in frozen:
                    continue
                if here in option_set[b]:
                    back = fit.get((b, here))
                    if back is None:
                        back = problem.arc_fit(b, here)
                elif repair and problem.may_join is not None and (f := problem.may_join(b, here)) is not None:
                    back = f
                else:
                    continue
                f_bs = fit.get((b, s))
                gain = gain_a + back - (f_bs if f_bs is not None else problem.arc_fit(b, s))
                if (gain > 0 or not gaining) and self.fits_in(a, s, b) and self.fits_in(b, here, a):
                    yield gain, s, b

    def _apply(self, a: str, s: Slot, b: str | None) -> None:
        here = self.assign[a]
        self.put(a, s)
        if b is not None:
            self.put(b, here)

    def leave(self, a: str, repair: bool = False) -> bool:
        """The best move or swap out of ``a``'s group, whatever it costs in fit (a repair)."""
        exits = list(self._exits(a, repair))
        if not exits:
            return False
        _, s, b = max(exits, key=lambda e: (e[0], e[1], e[2] or ""))
        self._apply(a, s, b)
        return True

    def improve(self, rounds: int, deadline: float | None) -> None:
        """Rounds of the first improving move or swap of each mentee, in a fixed order. The deadline is
        looked at every ``DEADLINE_EVERY`` mentees too: a round over a thousand mentees took up to 0.3 s,
        a tenth of a 3 s limit, past it (every move applied keeps every rule, so a round may stop anywhere)."""
        movable = sorted(pid for pid in self.assign if pid not in self.problem.frozen)
        for _ in range(rounds):
            if deadline is not None and time.perf_counter() > deadline:
                break
            improved = False
            for i, a in enumerate(movable):
                if deadline is not None and i % DEADLINE_EVERY == 0 and time.perf_counter() > deadline:
                    return
                for gain, s, b in self._exits(a, gaining=True):
                    if gain > 0:
                        self._apply(a, s, b)
                        improved = True
                        break
            if not improved:
                break


DEADLINE_EVERY = 64


def _polish(
    problem: Reassignment, start: Mapping[str, Slot], rounds: int = POLISH_ROUNDS, deadline: float | None = None
) -> dict[str, Slot]:
    """Moves and swaps between open groups that raise the fit and keep every rule, in a fixed order."""
    moves = _Moves(problem, start)
    moves.improve(rounds, deadline)
    return moves.assign


def improve(problem: Reassignment, rounds: int = POLISH_ROUNDS, deadline: float | None = None) -> dict[str, Slot]:
    """A reassignment at least as fit as ``problem.assign`` that keeps every rule and every group's size
    within bounds; the open groups and the placed set do not change. ``rounds`` bounds the local search
    (a deterministic amount of work, for large pools under a time limit). ``deadline`` (wall clock) stops
    the repair and the rounds early: then the result is the best stage reached, which depends on the
    machine's speed (the same trade-off as the solver's levels; the caller notes it)."""
    best = dict(problem.assign)
    flowed = _flow_repaired(problem, deadline)
    if flowed is None and problem.extra:
        problem = replace(problem, extra=frozenset())
        flowed = _flow_repaired(problem, deadline)
    if flowed is not None and problem.total(flowed) > problem.total(best):
        best = flowed
    if rounds > 0:
        polished = _polish(problem, best, rounds, deadline)
        if problem.total(polished) > problem.total(best) and not problem.broken(polished):
            best = polished
    return best
