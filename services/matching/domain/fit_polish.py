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

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

import numpy as np
from ortools.graph.python import min_cost_flow

from services.matching.domain.rules import IntArray

Slot = tuple[int, int]
REPAIR_ROUNDS = 60
POLISH_ROUNDS = 30


@dataclass(frozen=True)
class Arcs:
    """Every (mentee, open group) option with its fit, as arrays: arc ``a`` is ``people[who[a]]`` in
    ``slots[where[a]]``, in the order the flow adds them (by mentee, then as its options list them).
    Large pools build it with array operations (``facilitated_fit``) instead of per-option dicts:
    3 million options at 50,000 mentees took 10 s of Python to put into dicts and read back out."""

    people: list[str]
    slots: list[Slot]
    who: IntArray
    where: IntArray
    fit: IntArray

    @classmethod
    def of(cls, people: list[str], options: Mapping[str, list[Slot]], fit: Mapping[tuple[str, Slot], int]) -> Arcs:
        """From per-mentee options and per-option fits (small pools and tests)."""
        slots = sorted({s for pid in people for s in options[pid]})
        pos = {s: c for c, s in enumerate(slots)}
        who = [r for r, pid in enumerate(people) for _ in options[pid]]
        where = [pos[s] for pid in people for s in options[pid]]
        fits = [fit.get((pid, s), 0) for pid in people for s in options[pid]]
        return cls(people, slots, *(np.array(x, dtype=np.int64) for x in (who, where, fits)))

    @functools.cached_property
    def starts(self) -> IntArray:
        """Arcs of ``people[r]``: ``starts[r]`` to ``starts[r + 1]`` (``who`` is sorted)."""
        out: IntArray = np.searchsorted(self.who, np.arange(len(self.people) + 1, dtype=np.int64)).astype(np.int64)
        return out

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {pid: r for r, pid in enumerate(self.people)}

    @functools.cached_property
    def slot_index(self) -> dict[Slot, int]:
        return {s: c for c, s in enumerate(self.slots)}

    def options_dict(self) -> dict[str, list[Slot]]:
        slots, starts, where = self.slots, self.starts.tolist(), self.where.tolist()
        return {pid: [slots[c] for c in where[starts[r] : starts[r + 1]]] for r, pid in enumerate(self.people)}

    def fit_dict(self) -> dict[tuple[str, Slot], int]:
        people, slots = self.people, self.slots
        keys = zip([people[r] for r in self.who.tolist()], [slots[c] for c in self.where.tolist()], strict=True)
        return dict(zip(keys, self.fit.tolist(), strict=True))


class ArcOptions(Mapping[str, list[Slot]]):
    """``Reassignment.options`` read from ``Arcs`` one mentee at a time (no dict of every mentee's list)."""

    def __init__(self, arcs: Arcs) -> None:
        self.arcs = arcs

    def __getitem__(self, pid: str) -> list[Slot]:
        a = self.arcs
        r = a.index[pid]
        return [a.slots[c] for c in a.where[a.starts[r] : a.starts[r + 1]].tolist()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.arcs.people)

    def __len__(self) -> int:
        return len(self.arcs.people)


class ArcFit(Mapping[tuple[str, Slot], int]):
    """``Reassignment.fit`` read from ``Arcs`` (sorted by mentee, then slot) by binary search."""

    def __init__(self, arcs: Arcs) -> None:
        self.arcs = arcs
        self.codes = arcs.who * max(1, len(arcs.slots)) + arcs.where
        assert bool(np.all(self.codes[1:] > self.codes[:-1])), "arcs sorted by mentee, then slot"

    def _at(self, pid: str, s: Slot) -> int:
        a = self.arcs
        r, c = a.index.get(pid), a.slot_index.get(s)
        if r is None or c is None:
            return -1
        key = r * max(1, len(a.slots)) + c
        i = int(np.searchsorted(self.codes, key))
        return i if i < len(self.codes) and int(self.codes[i]) == key else -1

    def __getitem__(self, pair: tuple[str, Slot]) -> int:
        i = self._at(*pair)
        if i < 0:
            raise KeyError(pair)
        return int(self.arcs.fit[i])

    def __iter__(self) -> Iterator[tuple[str, Slot]]:
        a = self.arcs
        return zip([a.people[r] for r in a.who.tolist()], [a.slots[c] for c in a.where.tolist()], strict=True)

    def __len__(self) -> int:
        return len(self.arcs.who)

    def many(self, pairs: list[tuple[str, Slot]]) -> list[int | None]:
        """The fit of each pair (None: not an option), in one array lookup."""
        a = self.arcs
        width = max(1, len(a.slots))
        r = np.array([a.index.get(pid, -1) for pid, _ in pairs], dtype=np.int64)
        c = np.array([a.slot_index.get(s, -1) for _, s in pairs], dtype=np.int64)
        key = r * width + c
        i = np.minimum(np.searchsorted(self.codes, key), max(0, len(self.codes) - 1))
        found = (r >= 0) & (c >= 0) & (len(self.codes) > 0)
        if len(self.codes):
            found &= self.codes[i] == key
        values = a.fit[i] if len(self.codes) else np.zeros(len(pairs), dtype=np.int64)
        return [int(v) if ok else None for v, ok in zip(values.tolist(), found.tolist(), strict=True)]


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
    arcs: Arcs | None = None
    """``options`` and ``fit`` as arrays (large pools build them so); else built from them when needed."""

    @functools.cached_property
    def arc_table(self) -> Arcs:
        """Every option of every placed mentee, as arrays (``arcs``, or built from the dicts)."""
        people = sorted(self.assign)
        if self.arcs is not None and self.arcs.people == people:
            return self.arcs
        return Arcs.of(people, self.options, self.fit)

    def arc_fit(self, pid: str, s: Slot) -> int:
        f = self.fit.get((pid, s))
        if f is None and self.may_join is not None:
            f = self.may_join(pid, s)
        return f or 0

    def total(self, assign: Mapping[str, Slot]) -> int:
        if isinstance(self.fit, ArcFit):  # one array lookup, not one binary search per mentee
            pairs = list(assign.items())
            found = self.fit.many(pairs)
            return sum(f if f is not None else self.arc_fit(*pair) for f, pair in zip(found, pairs, strict=True))
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
    arcs = problem.arc_table
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
        fit = np.concatenate([fit[keep], np.array([problem.fit.get((p, s), 0) for _, p, s in own], dtype=np.int64)])
        order = np.argsort(who, kind="stable")
        return who[order], where[order], -fit[order]
    return who[keep], where[keep], -fit[keep]


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


class _OptionSets(dict[str, set[Slot]]):
    """Each mentee's options as a set, made when first asked for (a repair asks for a few mentees'; all
    50,000 of them cost 0.7 s)."""

    def __init__(self, options: Mapping[str, list[Slot]]) -> None:
        super().__init__()
        self.options = options

    def __missing__(self, pid: str) -> set[Slot]:
        out = self[pid] = set(self.options[pid])
        return out


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
        self.option_set = _OptionSets(problem.options)
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
