"""Facilitated groups, the last steps of every path (one mentor per group): fill, fair load, lottery pass.

Whatever path made the groups (the reassigned greedy, the CP-SAT levels, a component the clock left to
the greedy), they end here before the result is built:

- **fill**: each seeker left out, in lottery order, joins a group of the result as it stands that
  takes it under every rule (the chains' checks, ``Repair.fits``: eligibility with the mentor, apart
  pairs, the department bound, the size maximum), best fit first; else it opens a group with an idle
  eligible mentor with room (lowest load ratio, then best fit) together with other seekers left out
  (drawn first first) once they reach the group minimum. The greedy reads each mentee's few best
  mentors and dissolves the groups that stay small; nothing after it tried the others, so on a pool
  where one department dominates 729 of 1,000 were left out while each fitted a group as it stood.
- **fair load** (level (b) below (a)): an idle mentor (no group in this run, room for one) takes over,
  as it stands, a group of a mentor who leads two or more, the highest load ratio first, when it is
  eligible for every member, keeps the department bound, and its load ratio with the group stays
  within the run's max load ratio; then the fit reassignment's exact flow runs again in the same groups
  (``polish_groups``: the members were placed for their old mentors).
- **lottery pass**: each seeker left out, in lottery order, takes the place of the latest-drawn
  member (drawn after it) of a group it may enter in that member's place, every rule kept; the
  displaced member goes through the fill, then the lottery pass in its turn. Placed never shrinks.

People under a lock are neither moved nor placed here (``count_locks`` then reports every lock).
Deterministic: fixed orders and a fixed amount of work, no clock. When placed already equals the
proven bound nobody can be added, so the fill is skipped and only the lottery pass runs (array work
per seeker left out).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.matching.domain.common import Prepared
from services.matching.domain.facilitated_fit import polish_groups
from services.matching.domain.facilitated_prep import BLOCK_CELLS, Eligibility
from services.matching.domain.facilitated_repair import Repair
from services.matching.domain.rules import IntArray

NamedGroup = tuple[list[str], list[str]]
"""A group by ids: (its mentors, the lead first; its members)."""

OPEN_TRIED = 8
"""Idle eligible mentors a seeker left out tries to open a group with (each a scan of who could join)."""
FINISH_WORK = 400_000
"""Rule checks (``Repair.fits`` and partner checks) the fill and the lottery pass may spend in all: a
fixed amount, so the result never depends on the clock (about a second of Python at worst)."""


@dataclass
class Finished:
    groups: list[NamedGroup]
    filled: int = 0
    """Seekers the fill placed."""
    swapped: int = 0
    """Seekers who took the place of a member drawn after them."""
    taken_over: int = 0
    """Groups an idle mentor took over from a mentor leading two or more."""
    out_of_work: bool = False

    def note(self) -> str | None:
        if not self.filled and not self.swapped and not self.taken_over and not self.out_of_work:
            return None
        text = (
            f"final fill: {self.filled} seeker(s) left out joined a group as it stood or opened one with an idle "
            f"mentor; fair load: {self.taken_over} group(s) taken over by an idle mentor from one leading two or "
            f"more; lottery pass: {self.swapped} seeker(s) took the place of a member drawn after them"
        )
        return text + (" (its work cap stopped it)" if self.out_of_work else "")


class _Finish:
    def __init__(self, prep: Prepared, el: Eligibility, free: IntArray, groups: list[NamedGroup]) -> None:
        mpos = {m: k for k, m in enumerate(prep.mentor_ids)}
        self.prep, self.el = prep, el
        self.rep = Repair(prep, el, free, [([mpos[m] for m in ms], members) for ms, members in groups])
        self.work = FINISH_WORK
        self.rank = np.array([prep.ranks[pid] for pid in el.seekers], dtype=np.int64)
        cap = np.array([max(1, prep.capacity[m]) for m in prep.mentor_ids], dtype=np.float64)
        self.real_cap = np.array([prep.capacity[m] > 0 for m in prep.mentor_ids], dtype=bool)
        self.load = np.array([prep.load[m] for m in prep.mentor_ids], dtype=np.float64)
        self.cap = cap
        self.mentor_rank = np.array([prep.ranks[m] for m in prep.mentor_ids], dtype=np.int64)
        self.code = {d: c for c, d in enumerate(sorted({*self.rep.dept.values(), *self.rep.mentor_dept}))}
        self.dept_code = np.array([self.code[self.rep.dept[pid]] for pid in el.seekers], dtype=np.int64)
        groups_now, depts_now = len(self.rep.s.members), len(self.code)
        self.counts = np.zeros((groups_now, depts_now), dtype=np.int64)
        """Per group and department, its people (the mentor included): the department bound as one array
        lookup per group, so a pool where most groups are at the bound for someone costs no rule checks."""
        self.latest = np.full((groups_now, depts_now), -1, dtype=np.int64)
        """Per group and department, the rank of its latest-drawn member who may be moved (-1: none)."""
        for g, depts in enumerate(self.rep.s.depts):
            for d, n in depts.items():
                self.counts[g, self.code[d]] = n
            self._refresh(g)
        self.mentor_code = np.array([self.code[d] for d in self.rep.mentor_dept], dtype=np.int64)
        self.avail: IntArray | None = None
        """Per mentor and department, the people left out (active, not locked) eligible for the mentor:
        built at the first group opened, kept exact by every move, so that a mentor who cannot reach the
        group minimum for someone is passed over without a scan (``open``)."""

    def _available(self) -> IntArray:
        rep, el = self.rep, self.el
        rows = np.flatnonzero((rep.s.where < 0) & rep.free_to_pair)
        out = np.zeros((len(rep.mentor_dept), len(self.code)), dtype=np.int64)
        block = max(1, BLOCK_CELLS // max(1, len(rep.mentor_dept)))
        for start in range(0, len(rows), block):
            part = rows[start : start + block]
            cells, codes = el.eligible[part], self.dept_code[part]
            for c in np.unique(codes).tolist():
                out[:, c] += np.count_nonzero(cells[codes == c], axis=0)
        return out

    def _left_out(self, pid: str, by: int) -> None:
        """Keep ``avail`` exact: ``pid`` leaves (-1) or joins (+1) the people left out."""
        row = self.el.row[pid]
        if self.avail is not None and self.rep.free_to_pair[row]:
            self.avail[:, self.dept_code[row]] += by * self.el.eligible[row]

    def _grow(self, g: int) -> None:
        if g >= len(self.counts):
            more = g + 1 - len(self.counts)
            self.counts = np.vstack([self.counts, np.zeros((more, len(self.code)), np.int64)])
            self.latest = np.vstack([self.latest, np.full((more, len(self.code)), -1, np.int64)])

    def _count(self, g: int, dept: str, by: int) -> None:
        self._grow(g)
        self.counts[g, self.code[dept]] += by

    def _refresh(self, g: int) -> None:
        self._grow(g)
        self.latest[g] = -1
        for p in self.rep.s.members[g]:
            if p not in self.rep.locked:
                c = self.code[self.rep.dept[p]]
                self.latest[g, c] = max(int(self.latest[g, c]), self.prep.ranks[p])

    def _in(self, g: int, pid: str) -> None:
        self._left_out(pid, -1)
        self.rep.s.move_in(g, pid, self.el.row[pid], self.rep.dept[pid])
        self._count(g, self.rep.dept[pid], 1)
        self._refresh(g)

    def _out(self, g: int, pid: str) -> None:
        self._left_out(pid, 1)
        self.rep.s.move_out(g, pid, self.el.row[pid], self.rep.dept[pid])
        self._count(g, self.rep.dept[pid], -1)
        self._refresh(g)

    def positions(self) -> list[tuple[list[int], list[str]]]:
        """The groups as they stand: (mentor positions, members), empty ones left out."""
        s = self.rep.s
        return [([int(k)], list(members)) for k, members in zip(s.lead, s.members, strict=True) if members]

    # the fill ------------------------------------------------------------------------------------

    def join(self, pid: str) -> bool:
        """``pid`` joins the best-fitting group with room whose mentor is eligible for it (every rule)."""
        s, r = self.rep.s, self.el.row[pid]
        ok = self.el.eligible[r][s.lead] & (s.size < self.rep.size_max) & (s.size > 0)
        if self.rep.limit is not None:
            ok &= self.counts[: len(ok), self.code[self.rep.dept[pid]]] < self.rep.limit
        gs = np.flatnonzero(ok)
        if not len(gs):
            return False
        fit = self.el.fit[r][s.lead[gs]].astype(np.int64)
        for g in gs[np.lexsort((gs, -fit))].tolist():
            self.work -= 1
            if self.rep.fits(pid, g):
                self._in(g, pid)
                return True
        return False

    def open(self, pid: str) -> bool:
        """``pid`` opens a group with an idle eligible mentor with room and others left out (first drawn
        first, each compatible with everyone chosen), once they reach the group minimum."""
        rep, s, el = self.rep, self.rep.s, self.el
        ks = self.may_reach_minimum(pid, np.array(rep.idle_mentors(pid), dtype=np.int64))
        if not len(ks):
            return False
        ratio = (self.load[ks] + s.used[ks] + 1) / self.cap[ks]
        fit = el.fit[el.row[pid]][ks].astype(np.int64)
        for k in ks[np.lexsort((self.mentor_rank[ks], -fit, ratio))][:OPEN_TRIED].tolist():
            chosen = self.gather(pid, k)
            if len(chosen) >= rep.size_min:
                g = s.open(k, rep.mentor_dept[k])
                self._count(g, rep.mentor_dept[k], 1)
                for o in chosen:
                    self._in(g, o)
                return True
        return False

    def may_reach_minimum(self, pid: str, ks: IntArray) -> IntArray:
        """The mentors of ``ks`` whose group with ``pid`` could reach the minimum, counting the people left
        out eligible for each by department within the department bound (an upper bound: apart pairs
        are the scan's to check)."""
        if not len(ks):
            return ks
        if self.avail is None:
            self.avail = self._available()
        rep, d = self.rep, int(self.dept_code[self.el.row[pid]])
        others = self.avail[ks].copy()
        others[:, d] -= 1  # ``pid`` itself
        valid = np.ones(len(ks), dtype=bool)
        if rep.limit is not None:  # each department's room left beside the mentor and ``pid``
            room = np.full(others.shape, rep.limit, dtype=np.int64)
            room[np.arange(len(ks)), self.mentor_code[ks]] -= 1
            room[:, d] -= 1
            valid = room[:, d] >= 0
            others = np.minimum(others, room)
        reach = 1 + np.minimum(np.clip(others, 0, None).sum(axis=1), rep.size_max - 1)
        out: IntArray = ks[valid & (reach >= rep.size_min)]
        return out

    def gather(self, pid: str, k: int) -> list[str]:
        """``pid`` and the seekers left out eligible for mentor ``k`` (first drawn first) that a group of
        ``k`` may hold with it: nobody apart, the department bound, up to the group maximum. A department
        at its bound drops out of the scan at once (array work): on a pool one department dominates,
        most of the people scanned are of it."""
        rep, s, el = self.rep, self.rep.s, self.el
        depts = Counter([rep.mentor_dept[k], rep.dept[pid]])
        if rep.limit is not None and max(depts.values()) > rep.limit:
            return []
        rows = np.flatnonzero(el.eligible[:, k] & (s.where < 0) & rep.free_to_pair)
        rows = rows[np.argsort(self.rank[rows], kind="stable")]
        full = [d for d, n in depts.items() if rep.limit is not None and n >= rep.limit]
        if full:
            rows = rows[~np.isin(self.dept_code[rows], [self.code[d] for d in full])]
        chosen = [pid]
        at = 0
        while at < len(rows) and len(chosen) < rep.size_max and self.work > 0:
            self.work -= 1
            o = el.seekers[int(rows[at])]
            at += 1
            if o == pid or any(o in rep.apart.get(c, ()) for c in chosen):
                continue
            chosen.append(o)
            d = rep.dept[o]
            depts[d] += 1
            if rep.limit is not None and depts[d] >= rep.limit:
                rest = rows[at:]
                rows = np.concatenate([rows[:at], rest[self.dept_code[rest] != self.code[d]]])
        return chosen

    def fill(self, pid: str) -> bool:
        return self.join(pid) or self.open(pid)

    # fair load -----------------------------------------------------------------------------------

    def take_over(self) -> int:
        """Idle mentors (no group in this run, room for one) take over, as it stands, a group of a mentor
        who leads two or more, the highest load ratio first (fair load ranks above fit): an idle one
        eligible for every member, within the department bound, whose load ratio with the group stays
        within the run's max load ratio (level (a) comes before (b)), the best fit for the members first.
        One pass is complete: the idle only become fewer, so a group no idle mentor could take stays so.
        Groups with a locked member stay with their mentor. Returns how many groups changed mentor."""
        rep, s, el = self.rep, self.rep.s, self.el
        ratio = (self.load + s.used) / self.cap
        # level (a) first: a taker's ratio with the group stays within the run's max load ratio
        top = float(ratio[self.real_cap].max(initial=0.0))  # as ``common.max_load_ratio`` counts it
        idle = np.flatnonzero((s.used == 0) & (rep.free > 0) & ((self.load + 1) / self.cap <= top + 1e-9))
        if not len(idle):
            return 0
        leads = [int(k) for k in np.flatnonzero(s.used >= 2)]
        leads.sort(key=lambda k: (-ratio[k], self.mentor_rank[k]))
        mentor_code = self.mentor_code
        taken = 0
        for k in leads:
            for g in np.flatnonzero(s.lead == k).tolist():
                idle = idle[s.used[idle] == 0]
                members = s.members[g]
                if s.used[k] < 2 or not len(idle) or not members or any(p in rep.locked for p in members):
                    continue
                rows = [el.row[p] for p in members]
                ok = el.eligible[np.ix_(rows, idle)].all(axis=0)
                if rep.limit is not None:  # the member departments already at the bound exclude a mentor of theirs
                    counts = Counter(rep.dept[p] for p in members)
                    full = [self.code[d] for d, n in counts.items() if n >= rep.limit]
                    ok &= ~np.isin(mentor_code[idle], full)
                options = idle[ok]
                if not len(options):
                    continue
                fit = el.fit[np.ix_(rows, options)].astype(np.int64).sum(axis=0)
                new = int(options[np.lexsort((self.mentor_rank[options], -fit))[0]])
                s.depts[g][rep.mentor_dept[k]] -= 1
                s.depts[g][rep.mentor_dept[new]] += 1
                self._count(g, rep.mentor_dept[k], -1)
                self._count(g, rep.mentor_dept[new], 1)
                s.lead[g] = new
                s.used[k] -= 1
                s.used[new] += 1
                taken += 1
        return taken

    # the lottery pass ----------------------------------------------------------------------------

    def swap(self, u: str) -> str | None:
        """``u`` takes the place of the latest-drawn member drawn after it of a group it may enter in that
        member's place; returns who left, or None. A group at the department bound for ``u`` is a
        candidate only if a member of ``u``'s department was drawn after it (array work)."""
        s, r, ranks = self.rep.s, self.el.row[u], self.prep.ranks
        mine = ranks[u]
        latest = self.latest[: len(s.members)]
        top = latest.max(axis=1)
        ok = self.el.eligible[r][s.lead] & (top > mine)
        if self.rep.limit is not None:
            c = self.code[self.rep.dept[u]]
            at_bound = self.counts[: len(s.members), c] >= self.rep.limit
            ok &= ~at_bound | (latest[:, c] > mine)
        gs = np.flatnonzero(ok)
        for g in gs[np.lexsort((gs, -top[gs]))].tolist():
            later: list[str] = [p for p in s.members[g] if ranks[p] > mine and p not in self.rep.locked]
            for q in sorted(later, key=ranks.__getitem__, reverse=True):
                self.work -= 1
                if self.work <= 0:
                    return None
                if self.rep.fits(u, g, without=q):
                    self._out(g, q)
                    self._in(g, u)
                    return q
        return None


class Swaps(Protocol):
    """What the lottery pass needs of a finish: its rule-check budget and the swap itself."""

    work: int

    def swap(self, u: str) -> str | None:
        """``u`` takes the place of a later-drawn member (returned), or None."""


def lottery_pass(
    f: Swaps,
    left: list[str],
    ranks: Mapping[str, int],
    group_of: Mapping[str, int],
    place: Callable[[str], bool],
    bound: int,
) -> int:
    """The lottery pass (see the module doc) over the seekers ``left`` out, in lottery order: each takes
    the place of a later-drawn member where it can, and the displaced one is placed by ``place`` (while
    placed is below ``bound``) or waits its turn. ``group_of`` is the finish's own, read as it changes.
    Returns the swaps made."""
    heap = [(ranks[p], p) for p in left if p not in group_of]
    heapq.heapify(heap)
    swapped, placed = 0, len(group_of)
    while heap and f.work > 0:
        _, u = heapq.heappop(heap)
        if u in group_of:
            continue
        q = f.swap(u)
        if q is None:
            continue
        swapped += 1
        if not (placed < bound and place(q)):
            heapq.heappush(heap, (ranks[q], q))
        placed = len(group_of)
    return swapped


def finish(
    prep: Prepared, el: Eligibility, free: IntArray, groups: list[NamedGroup], bound: int, deadline: float | None = None
) -> Finished:
    """The fill (unless placed already meets ``bound``), the takeovers of fair load (then the fit
    reassignment again, ``deadline`` its wall-clock safety net), then the lottery pass; see the module doc."""
    f = _Finish(prep, el, free, groups)
    rep, s = f.rep, f.rep.s
    placed = len(s.group_of)
    left = sorted((p for p in el.active if p not in s.group_of and p not in rep.locked), key=prep.ranks.__getitem__)
    out = Finished(groups)
    before = placed
    if placed < bound:  # joins first (cheap), then groups opened with idle mentors, then joins again
        for step in (f.join, f.open, f.join):
            for pid in left:
                if f.work <= 0 or placed >= bound:
                    break
                if pid not in s.group_of and step(pid):
                    placed = len(s.group_of)
    out.taken_over = f.take_over()
    if out.taken_over and placed < bound:  # a new lead may take someone left out
        for pid in left:
            if f.work <= 0 or placed >= bound:
                break
            if pid not in s.group_of and f.join(pid):
                placed = len(s.group_of)
    if out.taken_over:  # the members were reassigned for their old mentors: fit again, in the same groups
        work = f.work
        polished = polish_groups(prep, f.positions(), el, prep.mentor_ids, rep.locked, deadline, flow_only=True)
        f = _Finish(prep, el, free, polished)
        f.work = work
        rep, s = f.rep, f.rep.s
    out.swapped = lottery_pass(f, left, prep.ranks, s.group_of, f.fill, bound)
    out.filled = len(s.group_of) - before
    out.out_of_work = f.work <= 0
    out.groups = [([prep.mentor_ids[ms[0]]], members) for ms, members in f.positions()]
    return out
