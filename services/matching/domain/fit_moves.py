"""Facilitated groups, fit level: the local search between open groups (moves and swaps).

A move takes one mentee to another open group; a swap exchanges two mentees of two groups. Only
those that keep every rule are made: each group between the policy's minimum and maximum members,
no apart pair (reporting lines, declared conflicts, excluded pairs) together, the department bound.
The same mechanism repairs the flow's rule-breakers (``fit_polish``: the best exit whatever it costs)
and polishes a solution (the first exit that raises the fit). Everything runs in a fixed order with a
fixed number of rounds; mentees under a lock never move.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping

from services.matching.domain.reassignment import Reassignment, Slot

DEADLINE_EVERY = 64
"""The local search looks at the deadline every this many mentees, not only between rounds: a round
over a thousand mentees took up to 0.3 s, a tenth of a 3 s limit."""


class Moves:
    """An assignment under single moves and swaps between open groups that keep every rule."""

    def __init__(self, problem: Reassignment, start: Mapping[str, Slot]) -> None:
        self.problem = problem
        self.rows = problem.arcs.rows
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
        problem, rows, frozen = self.problem, self.rows, self.problem.frozen
        here = self.assign[a]
        fa = problem.arc_fit(a, here)
        for s, f_as in rows[a].items():
            if s == here or s not in self.open_slots:
                continue
            gain_a = f_as - fa
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
                row_b = rows[b]
                back = row_b.get(here)
                if back is None and repair and problem.may_join is not None:  # outside b's options
                    back = problem.may_join(b, here)
                if back is None:
                    continue
                f_bs = row_b.get(s)
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
        looked at every ``DEADLINE_EVERY`` mentees too (every move applied keeps every rule, so a round
        may stop anywhere)."""
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


def polish(problem: Reassignment, start: Mapping[str, Slot], rounds: int, deadline: float | None) -> dict[str, Slot]:
    """Moves and swaps between open groups that raise the fit and keep every rule, in a fixed order."""
    moves = Moves(problem, start)
    moves.improve(rounds, deadline)
    return moves.assign
