"""Facilitated groups, placing more than the greedy: chains of moves between groups that keep every rule.

The greedy decides each mentee once, in lottery order, so a mentee it could not fit stays out even
when moving a few members between groups would make room (on the benchmark's tight 1,000 pool it
placed 947 of a proven 949, and CP-SAT, started from there, did not reach 949 in 3 s). For each
mentee left out, in lottery order, a breadth-first search over *ejection chains*: the mentee enters a
group whose mentor is eligible for it, in the place of a member who then needs a group, and so on,
until the last one moved joins a group with room, or opens a group with an idle eligible mentor
together with a partner (another mentee left out, or a member of a group above the minimum) where the
policy allows groups of two. Every
step keeps every rule of the group it lands in (eligibility, size, reporting lines, conflicts and
excluded pairs, the department bound); each group is entered at most once per search, so the steps of
a chain never undo each other's checks.

When no chain places the mentee, a chain that ends by leaving out a member drawn *after* it in the
lottery is applied instead (the latest drawn it reaches): the placed count stays, and who is placed
follows the lottery more closely, which the lottery level then proves or corrects.

One mentor per group only (co-facilitators must also be eligible for everyone: not searched here).
Deterministic: fixed orders, a fixed cap on the people each search reaches, no clock. Mentees under a
lock are neither moved nor placed here.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Container, Mapping
from dataclasses import dataclass, field

import numpy as np

from services.matching.domain.common import Prepared, apart_pairs
from services.matching.domain.facilitated_prep import Eligibility
from services.matching.domain.rules import IntArray

MentorGroup = tuple[list[int], list[str]]
Partner = tuple[str, int | None]
"""Someone to open a group with: (id, the group it leaves, or None when it was left out)."""
SEARCH_PEOPLE = 400
"""People one chain search may reach at most (each costs a scan of the groups its mentors lead)."""
IDLE_TRIED = 4
"""Idle eligible mentors a reached person tries to open a group with (each a scan of who could join)."""
CHAIN_WORK = 4_000_000
"""People all the searches of a run may reach in all, times the mentees (at least 2,000 people): a
reach scans the groups and idle mentors of one person, about 1.6 ms at 5,000 mentees and 6.5 ms at
20,000, so the worst case (many left out, the bound out of reach) stays a few seconds and
deterministic. The benchmark's pools needed at most 2,024 reaches (800 tight)."""


@dataclass
class _State:
    """The groups being repaired, with what each rule check needs; per group and per person (row of the
    eligibility matrix) also as arrays, so that the searches scan them at numpy speed."""

    lead: IntArray
    members: list[list[str]]
    depts: list[Counter[str]]
    where: IntArray
    """Per eligibility row, its group or -1."""
    size: IntArray
    used: IntArray
    """Per mentor, the groups it leads."""
    group_of: dict[str, int] = field(default_factory=dict)

    def move_in(self, g: int, pid: str, row: int, dept: str) -> None:
        self.members[g].append(pid)
        self.depts[g][dept] += 1
        self.group_of[pid] = g
        self.where[row] = g
        self.size[g] += 1

    def move_out(self, g: int, pid: str, row: int, dept: str) -> None:
        self.members[g].remove(pid)
        self.depts[g][dept] -= 1
        self.group_of.pop(pid, None)
        self.where[row] = -1
        self.size[g] -= 1

    def open(self, k: int, mentor_dept: str) -> int:
        self.lead = np.append(self.lead, k)
        self.size = np.append(self.size, 0)
        self.members.append([])
        self.depts.append(Counter([mentor_dept]))
        self.used[k] += 1
        return len(self.members) - 1


class Repair:
    """One repair run: the rules as lookups, the state, and the chain search."""

    def __init__(self, prep: Prepared, el: Eligibility, free: IntArray, groups: list[MentorGroup]) -> None:
        self.prep = prep
        self.el = el
        self.free = free
        pol = prep.policy
        self.size_min, self.size_max, self.limit = pol.group_members_min, pol.group_members_max, pol.max_same_department
        self.opens_pairs = self.size_min <= 2 <= self.size_max  # a chain opens a group of two, nothing larger
        self.dept = {pid: prep.by_id[pid].department for pid in el.seekers}
        self.mentor_dept = [prep.by_id[m].department for m in prep.mentor_ids]
        self.locked = frozenset(p for pair in prep.locked for p in pair)
        self.apart: dict[str, set[str]] = defaultdict(set)
        for a, b in apart_pairs(prep, el.seekers):
            self.apart[a].add(b)
            self.apart[b].add(a)
        n = len(el.seekers)
        self.rank = np.array([prep.ranks[pid] for pid in el.seekers], dtype=np.int64)
        self.free_to_pair = np.zeros(n, dtype=bool)
        """Rows that may be taken out of the left-out pool to open a group: active and not locked."""
        self.free_to_pair[[el.row[pid] for pid in el.active if pid not in self.locked]] = True
        self.unlocked = np.array([pid not in self.locked for pid in el.seekers], dtype=bool)
        self.s = _State(
            np.array([ms[0] for ms, _ in groups], dtype=np.int64),
            [[] for _ in groups],
            [Counter([self.mentor_dept[ms[0]]]) for ms, _ in groups],
            np.full(n, -1, dtype=np.int64),
            np.zeros(len(groups), dtype=np.int64),
            np.zeros(len(free), dtype=np.int64),
        )
        for g, (ms, members) in enumerate(groups):
            self.s.used[ms[0]] += 1
            for pid in members:
                self.s.move_in(g, pid, el.row[pid], self.dept[pid])
        self.work = max(2_000, CHAIN_WORK // max(1, len(el.seekers)))

    def groups_for(self, pid: str) -> list[int]:
        """Groups whose mentor is eligible for ``pid``, in a fixed order."""
        row = self.el.eligible[self.el.row[pid]]
        return np.flatnonzero(row[self.s.lead]).tolist()

    def fits(self, pid: str, g: int, without: str | None = None) -> bool:
        """``pid`` may join group ``g`` (in the place of ``without``, if given): every rule of ``g``."""
        return self.joins(self.s.members[g], self.s.depts[g], pid, without)

    def joins(self, members: list[str], depts: Counter[str], pid: str, without: str | None = None) -> bool:
        """``pid`` may join a group of ``members`` whose departments (its mentors' included) are ``depts``,
        in the place of ``without`` if given: nobody apart, the department bound, the size maximum (the
        mentors' eligibility is the caller's). The co-facilitated finish asks it of its own groups."""
        if without is None and len(members) >= self.size_max:
            return False
        mine = self.apart.get(pid)
        if mine and any(o in mine and o != without for o in members):
            return False
        if self.limit is not None:
            same = depts[self.dept[pid]] - (1 if without and self.dept[without] == self.dept[pid] else 0)
            if same + 1 > self.limit:
                return False
        return True

    def partner_for(self, pid: str, k: int, busy: Container[str], taken: set[int]) -> Partner | None:
        """Someone to open a group with ``pid`` under idle mentor ``k``: eligible for ``k``, not apart from
        ``pid``, within the department bound, not on the chain (``busy``) and not from a group the chain
        enters (``taken``): a mentee left out (first drawn first), else a member of a group above the
        minimum (its group stays valid), by row."""
        s = self.s
        col = self.el.eligible[:, k]
        left = np.flatnonzero(col & (s.where < 0) & self.free_to_pair)
        in_group = np.flatnonzero(col & (s.where >= 0) & self.unlocked)
        members = in_group[s.size[s.where[in_group]] > self.size_min]
        mine = self.apart.get(pid, set())
        seekers = self.el.seekers
        for r in [*left[np.argsort(self.rank[left], kind="stable")].tolist(), *members.tolist()]:
            o = seekers[r]
            g = int(s.where[r])
            if o == pid or o in busy or o in mine or (g >= 0 and g in taken):
                continue
            if self.limit is not None:
                count = Counter([self.mentor_dept[k], self.dept[pid], self.dept[o]])
                if max(count.values()) > self.limit:
                    continue
            return o, (g if g >= 0 else None)
        return None

    def idle_mentors(self, pid: str) -> list[int]:
        row = self.el.eligible[self.el.row[pid]]
        out: list[int] = np.flatnonzero(row & (self.s.used < self.free)).tolist()
        return out

    def place(self, u: str) -> str | None:
        """Search a chain for ``u``; apply it. Returns "" when ``u`` was placed with nobody left out, the
        id of the member left out instead (drawn after ``u``), or None when nothing was applied."""
        ranks = self.prep.ranks
        came: dict[str, tuple[str, int] | None] = {u: None}  # person -> (who takes its place, in which group)
        entered: set[int] = set()
        queue = [u]
        latest: str | None = None
        head = 0
        while head < len(queue) and len(came) <= SEARCH_PEOPLE and self.work > 0:
            p = queue[head]
            head += 1
            self.work -= 1
            gs = [g for g in self.groups_for(p) if g not in entered and g != self.s.group_of.get(p)]
            for g in gs:
                if self.fits(p, g):
                    self._apply(p, came, ("join", g, None))
                    return ""
            for k in self.idle_mentors(p)[:IDLE_TRIED] if self.opens_pairs else []:
                origin = self.s.group_of.get(p)
                taken = entered if origin is None else entered | {origin}
                found = self.partner_for(p, k, came, taken)
                if found is not None:
                    self._apply(p, came, ("open", k, found))
                    return ""
            for g in gs:
                entered.add(g)
                for q in list(self.s.members[g]):
                    if q not in came and q not in self.locked and self.fits(p, g, without=q):
                        came[q] = (p, g)
                        queue.append(q)
                        if ranks[q] > ranks[u] and (latest is None or ranks[q] > ranks[latest]):
                            latest = q
        if latest is None:
            return None
        self._apply(latest, came, ("drop", -1, None))
        return latest

    def _apply(
        self, end: str, came: Mapping[str, tuple[str, int] | None], action: tuple[str, int, Partner | None]
    ) -> None:
        """Move ``end`` by ``action`` (join a group, open one with a partner, or leave), then each person
        on the chain back to the start takes the place of the one after it."""
        kind, target, partner = action
        self._leave(end)
        if kind == "join":
            self._enter(target, end)
        elif kind == "open":
            assert partner is not None
            other, _ = partner
            self._leave(other)
            g = self.s.open(target, self.mentor_dept[target])
            self._enter(g, end)
            self._enter(g, other)
        link = came[end]
        while link is not None:
            p, g = link
            self._leave(p)
            self._enter(g, p)
            link = came[p]

    def _leave(self, pid: str) -> None:
        g = self.s.group_of.get(pid)
        if g is not None:
            self.s.move_out(g, pid, self.el.row[pid], self.dept[pid])

    def _enter(self, g: int, pid: str) -> None:
        self.s.move_in(g, pid, self.el.row[pid], self.dept[pid])


def place_more(
    prep: Prepared, el: Eligibility, free: IntArray, groups: list[MentorGroup], want: int, *, settle: bool = False
) -> list[MentorGroup]:
    """The greedy's groups (one mentor each) with more mentees placed by chains of moves, at most
    ``want`` placed in all (the proven bound: beyond it no chain exists). Groups keep every rule.
    ``settle``: search every mentee left out even once ``want`` is met (a chain can then only apply a
    lottery move: no chain places beyond a proven bound), within the same work cap."""
    repair = Repair(prep, el, free, groups)
    ranks = prep.ranks
    placed = sum(len(m) for m in repair.s.members)
    heap = [(ranks[p], p) for p in el.active if p not in repair.s.group_of and p not in repair.locked]
    heapq.heapify(heap)
    tried: set[str] = set()
    while heap and (placed < want or settle) and repair.work > 0:
        _, u = heapq.heappop(heap)
        if u in repair.s.group_of or u in tried:
            continue
        tried.add(u)
        result = repair.place(u)
        if result == "":
            placed += 1
        elif result:
            heapq.heappush(heap, (ranks[result], result))
    return [([int(k)], members) for k, members in zip(repair.s.lead, repair.s.members, strict=True) if members]
