"""Facilitated groups, the last steps of every path: fill, fair load, lottery pass.

Whatever path made the groups (the reassigned greedy, the CP-SAT levels, a component the clock left to
the greedy), with one mentor per group or with co-facilitators, they end here before the result is
built. A group's mentors (one, or the lead and its co-facilitators) must all be eligible for every
member and all count in the department bound; one mentor per group is the case of a row of one:

- **fill**: each seeker left out, in lottery order, joins a group of the result as it stands that
  takes it under every rule (every mentor eligible, nobody apart, the department bound, the size
  maximum), best fit (summed over the group's mentors) first; else, with one mentor per group, it
  opens a group with an idle eligible mentor with room (lowest load ratio, then best fit) together with
  other seekers left out (drawn first first) once they reach the group minimum. (Opening a group with
  co-facilitators needs a lead and co-facilitators who suit each other and the members: that is the
  greedy's and the model's.) The greedy reads each mentee's few best mentors and dissolves the groups
  that stay small; nothing after it tried the others, so on a pool where one department dominates 729
  of 1,000 were left out while each fitted a group as it stood.
- **fair load** (level (b) below (a)): an idle mentor (no group in this run, room for one) takes, in a
  group as it stands, the place of a mentor in two or more groups (lead or co-facilitator), the highest
  load ratio first, when it is eligible for every member, apart from none of the group's other mentors,
  keeps the department bound, and its load ratio with the group stays within the run's max load ratio;
  then, with one mentor per group, the fit reassignment's exact flow runs again in the same groups
  (``polish_groups``: the members were placed for their old mentors). An outside-in probe found 140 of
  170 groups of a 1,000-mentee pool with two mentors per group where an idle mentor could have taken
  such a place while 36 eligible mentors with room sat idle.
- **lottery pass**: each seeker left out, in lottery order, takes the place of the latest-drawn
  member (drawn after it) of a group it may enter in that member's place, every rule kept; the
  displaced member goes through the fill, then the lottery pass in its turn. Placed never shrinks.

People under a lock are neither moved nor placed here (``count_locks`` then reports every lock); a
group with a locked member keeps its mentors. Deterministic: fixed orders and a fixed amount of work,
no clock. When placed already equals the proven bound nobody can be added, so the fill is skipped and
only the lottery pass runs (array work per seeker left out).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from services.matching.domain.common import NamedGroup, Prepared
from services.matching.domain.facilitated_fit import polish_groups
from services.matching.domain.facilitated_lottery import lottery_pass
from services.matching.domain.facilitated_prep import BLOCK_CELLS, Eligibility
from services.matching.domain.facilitated_repair import Repair
from services.matching.domain.flow_place import placed_by_flow
from services.matching.domain.levels import past_deadline, run_deadline
from services.matching.domain.load_swaps import rechoose, swap_budget
from services.matching.domain.rules import BoolArray, IntArray

OPEN_TRIED = 8
"""Idle eligible mentors a seeker left out tries to open a group with (each a scan of who could join)."""
FINISH_WORK = 400_000
"""Rule checks (``_Finish.fits`` and partner checks) the fill and the lottery pass may spend in all: a
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
    """The groups as they stand (each with its ``mentors_per_group`` mentors, the lead first), with what
    every rule check needs as arrays: per group its mentors as a row (``grid``: every group's eligibility
    for a person in one lookup), per group and department its people (``counts``), per person its group
    (``where``)."""

    def __init__(self, prep: Prepared, el: Eligibility, free: IntArray, groups: list[NamedGroup]) -> None:
        pol = prep.policy
        self.prep, self.el, self.free = prep, el, free
        self.size_min, self.size_max, self.limit = pol.group_members_min, pol.group_members_max, pol.max_same_department
        self.width = pol.mentors_per_group
        mpos = {m: k for k, m in enumerate(prep.mentor_ids)}
        rows = [[mpos[m] for m in ms] for ms, _ in groups]
        self.grid = np.array(rows, dtype=np.int64).reshape(len(groups), self.width)
        """Per group its mentors as a row, the lead first (one mentor per group unless co-facilitated)."""
        lookups = Repair(prep, el, free, [])  # the chain repair's rule lookups, built once there; the groups are ours
        self.lookups = lookups
        self.dept, self.mentor_dept, self.locked = lookups.dept, lookups.mentor_dept, lookups.locked
        self.apart, self.free_to_pair = lookups.apart, lookups.free_to_pair
        self.members: list[list[str]] = [[] for _ in groups]
        self.depts = [Counter(self.mentor_dept[k] for k in row) for row in self.grid.tolist()]
        self.where = np.full(len(el.seekers), -1, dtype=np.int64)
        """Per eligibility row, its group or -1."""
        self.size = np.zeros(len(groups), dtype=np.int64)
        self.used = np.zeros(len(free), dtype=np.int64)
        """Per mentor, the groups it is a mentor of (lead or co-facilitator)."""
        np.add.at(self.used, self.grid.ravel(), 1)
        self.group_of: dict[str, int] = {}
        self.work = FINISH_WORK
        self.rank = np.array([prep.ranks[pid] for pid in el.seekers], dtype=np.int64)
        self.cap = np.array([max(1, prep.capacity[m]) for m in prep.mentor_ids], dtype=np.float64)
        self.real_cap = np.array([prep.capacity[m] > 0 for m in prep.mentor_ids], dtype=bool)
        self.load = np.array([prep.load[m] for m in prep.mentor_ids], dtype=np.float64)
        self.mentor_rank = np.array([prep.ranks[m] for m in prep.mentor_ids], dtype=np.int64)
        self.code = {d: c for c, d in enumerate(sorted({*self.dept.values(), *self.mentor_dept}))}
        self.dept_code = np.array([self.code[self.dept[pid]] for pid in el.seekers], dtype=np.int64)
        self.mentor_code = np.array([self.code[d] for d in self.mentor_dept], dtype=np.int64)
        self.counts = np.zeros((len(groups), len(self.code)), dtype=np.int64)
        """Per group and department, its people (the mentors included): the department bound as one array
        lookup per group, so a pool where most groups are at the bound for someone costs no rule checks."""
        self.latest = np.full((len(groups), len(self.code)), -1, dtype=np.int64)
        """Per group and department, the rank of its latest-drawn member who may be moved (-1: none)."""
        for g, row in enumerate(self.grid.tolist()):
            for k in row:
                self.counts[g, self.mentor_code[k]] += 1
        self.avail: IntArray | None = None
        """Per mentor and department, the people left out (active, not locked) eligible for the mentor:
        built at the first group opened, kept exact by every move, so that a mentor who cannot reach the
        group minimum for someone is passed over without a scan (``open``)."""
        for g, (_, members) in enumerate(groups):
            for pid in members:
                self._in(g, pid)

    def _available(self) -> IntArray:
        el = self.el
        rows = np.flatnonzero((self.where < 0) & self.free_to_pair)
        out = np.zeros((len(self.mentor_dept), len(self.code)), dtype=np.int64)
        block = max(1, BLOCK_CELLS // max(1, len(self.mentor_dept)))
        for start in range(0, len(rows), block):
            part = rows[start : start + block]
            cells, codes = el.eligible[part], self.dept_code[part]
            for c in np.unique(codes).tolist():
                out[:, c] += np.count_nonzero(cells[codes == c], axis=0)
        return out

    def _left_out(self, pid: str, by: int) -> None:
        """Keep ``avail`` exact: ``pid`` leaves (-1) or joins (+1) the people left out."""
        row = self.el.row[pid]
        if self.avail is not None and self.free_to_pair[row]:
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
        for p in self.members[g]:
            if p not in self.locked:
                c = self.code[self.dept[p]]
                self.latest[g, c] = max(int(self.latest[g, c]), self.prep.ranks[p])

    def _in(self, g: int, pid: str) -> None:
        self._left_out(pid, -1)
        row, dept = self.el.row[pid], self.dept[pid]
        self.members[g].append(pid)
        self.depts[g][dept] += 1
        self.group_of[pid] = g
        self.where[row] = g
        self.size[g] += 1
        self._count(g, dept, 1)
        self._refresh(g)

    def _out(self, g: int, pid: str) -> None:
        self._left_out(pid, 1)
        row, dept = self.el.row[pid], self.dept[pid]
        self.members[g].remove(pid)
        self.depts[g][dept] -= 1
        self.group_of.pop(pid, None)
        self.where[row] = -1
        self.size[g] -= 1
        self._count(g, dept, -1)
        self._refresh(g)

    def _open_group(self, k: int) -> int:
        """A new group of mentor ``k`` alone, no members yet: its index."""
        self.grid = np.vstack([self.grid, np.array([[k]], dtype=np.int64)])
        self.size = np.append(self.size, 0)
        self.members.append([])
        self.depts.append(Counter([self.mentor_dept[k]]))
        self.used[k] += 1
        g = len(self.members) - 1
        self._count(g, self.mentor_dept[k], 1)
        return g

    def fits(self, pid: str, g: int, without: str | None = None) -> bool:
        """``pid`` may join group ``g`` (in the place of ``without``, if given), its mentors' eligibility
        aside (the callers' array lookup): the chain repair's rule, on this finish's groups."""
        return self.lookups.joins(self.members[g], self.depts[g], pid, without)

    def _eligible(self, pid: str) -> BoolArray:
        """Per group, whether every mentor of it is eligible for ``pid`` (one array lookup)."""
        ok: BoolArray = self.el.eligible[self.el.row[pid]][self.grid].all(axis=1)
        return ok

    def positions(self) -> list[tuple[list[int], list[str]]]:
        """The groups as they stand: (mentor positions, members), empty ones left out."""
        return [(row, list(members)) for row, members in zip(self.grid.tolist(), self.members, strict=True) if members]

    def named(self) -> list[NamedGroup]:
        ids = self.prep.mentor_ids
        return [([ids[k] for k in row], members) for row, members in self.positions()]

    # the fill ------------------------------------------------------------------------------------

    def join(self, pid: str) -> bool:
        """``pid`` joins the best-fitting group with room whose mentors are all eligible for it (every rule);
        fit summed over the group's mentors."""
        r = self.el.row[pid]
        ok = self._eligible(pid) & (self.size < self.size_max) & (self.size > 0)
        if self.limit is not None:
            ok &= self.counts[: len(ok), self.code[self.dept[pid]]] < self.limit
        gs = np.flatnonzero(ok)
        if not len(gs):
            return False
        fit = self.el.fit[r][self.grid[gs]].astype(np.int64).sum(axis=1)
        for g in gs[np.lexsort((gs, -fit))].tolist():
            self.work -= 1
            if self.fits(pid, g):
                self._in(g, pid)
                return True
        return False

    def open(self, pid: str) -> bool:
        """``pid`` opens a group with an idle eligible mentor with room and others left out (first drawn
        first, each compatible with everyone chosen), once they reach the group minimum. One mentor per
        group only: co-facilitators who suit each other and the members are the greedy's and the model's."""
        if self.width > 1:
            return False
        el = self.el
        row = el.eligible[el.row[pid]]
        ks = self.may_reach_minimum(pid, np.flatnonzero(row & (self.used < self.free)).astype(np.int64))
        if not len(ks):
            return False
        ratio = (self.load[ks] + self.used[ks] + 1) / self.cap[ks]
        fit = el.fit[el.row[pid]][ks].astype(np.int64)
        for k in ks[np.lexsort((self.mentor_rank[ks], -fit, ratio))][:OPEN_TRIED].tolist():
            chosen = self.gather(pid, k)
            if len(chosen) >= self.size_min:
                g = self._open_group(k)
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
        d = int(self.dept_code[self.el.row[pid]])
        others = self.avail[ks].copy()
        others[:, d] -= 1  # ``pid`` itself
        valid = np.ones(len(ks), dtype=bool)
        if self.limit is not None:  # each department's room left beside the mentor and ``pid``
            room = np.full(others.shape, self.limit, dtype=np.int64)
            room[np.arange(len(ks)), self.mentor_code[ks]] -= 1
            room[:, d] -= 1
            valid = room[:, d] >= 0
            others = np.minimum(others, room)
        reach = 1 + np.minimum(np.clip(others, 0, None).sum(axis=1), self.size_max - 1)
        out: IntArray = ks[valid & (reach >= self.size_min)]
        return out

    def gather(self, pid: str, k: int) -> list[str]:
        """``pid`` and the seekers left out eligible for mentor ``k`` (first drawn first) that a group of
        ``k`` may hold with it: nobody apart, the department bound, up to the group maximum. A department
        at its bound drops out of the scan at once (array work): on a pool one department dominates,
        most of the people scanned are of it."""
        el, limit = self.el, self.limit
        depts = Counter([self.mentor_dept[k], self.dept[pid]])
        if limit is not None and max(depts.values()) > limit:
            return []
        rows = np.flatnonzero(el.eligible[:, k] & (self.where < 0) & self.free_to_pair)
        rows = rows[np.argsort(self.rank[rows], kind="stable")]
        full = [d for d, n in depts.items() if limit is not None and n >= limit]
        if full:
            rows = rows[~np.isin(self.dept_code[rows], [self.code[d] for d in full])]
        chosen = [pid]
        at = 0
        while at < len(rows) and len(chosen) < self.size_max and self.work > 0:
            self.work -= 1
            o = el.seekers[int(rows[at])]
            at += 1
            if o == pid or any(o in self.apart.get(c, ()) for c in chosen):
                continue
            chosen.append(o)
            d = self.dept[o]
            depts[d] += 1
            if limit is not None and depts[d] >= limit:
                rest = rows[at:]
                rows = np.concatenate([rows[:at], rest[self.dept_code[rest] != self.code[d]]])
        return chosen

    def fill(self, pid: str) -> bool:
        return self.join(pid) or self.open(pid)

    # fair load -----------------------------------------------------------------------------------

    def take_over(self) -> int:
        """Idle mentors (no group in this run, room for one) take, in a group as it stands, the place of a
        mentor in two or more groups (lead or co-facilitator), the highest load ratio first (fair load ranks
        above fit): an idle one eligible for every member, apart from none of the group's other mentors,
        within the department bound, whose load ratio with the group stays within the run's max load ratio
        (level (a) comes before (b)), the best fit for the members first. One pass is complete: the idle
        only become fewer, so a place no idle mentor could take stays so. Groups with a locked member keep
        their mentors. Returns how many places changed mentor."""
        el, prep = self.el, self.prep
        ratio = (self.load + self.used) / self.cap
        # level (a) first: a taker's ratio with the group stays within the run's max load ratio
        top = float(ratio[self.real_cap].max(initial=0.0))  # as ``common.max_load_ratio`` counts it
        idle = np.flatnonzero((self.used == 0) & (self.free > 0) & ((self.load + 1) / self.cap <= top + 1e-9))
        if not len(idle):
            return 0
        busy = [int(k) for k in np.flatnonzero(self.used >= 2)]
        busy.sort(key=lambda k: (-ratio[k], self.mentor_rank[k]))
        taken = 0
        for k in busy:
            for g, slot in zip(*np.nonzero(self.grid == k), strict=True):
                idle = idle[self.used[idle] == 0]
                members = self.members[g]
                if self.used[k] < 2 or not len(idle) or not members or any(p in self.locked for p in members):
                    continue
                rows = [el.row[p] for p in members]
                ok = el.eligible[np.ix_(rows, idle)].all(axis=0)
                if self.limit is not None:  # a mentor of another department than ``k`` adds one to its own
                    codes = self.mentor_code[idle]
                    ok &= (codes == self.mentor_code[k]) | (self.counts[g, codes] + 1 <= self.limit)
                others = [prep.mentor_ids[j] for j in self.grid[g].tolist() if j != k]
                options = idle[ok]
                if others:
                    options = np.array(
                        [j for j in options.tolist() if not any(prep.apart(prep.mentor_ids[j], o) for o in others)],
                        dtype=np.int64,
                    )
                if not len(options):
                    continue
                fit = el.fit[np.ix_(rows, options)].astype(np.int64).sum(axis=0)
                self._replace(int(g), int(slot), k, int(options[np.lexsort((self.mentor_rank[options], -fit))[0]]))
                taken += 1
        return taken

    def _replace(self, g: int, slot: int, k: int, new: int) -> None:
        """Mentor ``new`` takes ``k``'s place (``slot``) in group ``g``."""
        self.depts[g][self.mentor_dept[k]] -= 1
        self.depts[g][self.mentor_dept[new]] += 1
        self._count(g, self.mentor_dept[k], -1)
        self._count(g, self.mentor_dept[new], 1)
        self.grid[g, slot] = new
        self.used[k] -= 1
        self.used[new] += 1

    # the lottery pass ----------------------------------------------------------------------------

    def swap(self, u: str) -> str | None:
        """``u`` takes the place of the latest-drawn member drawn after it of a group it may enter in that
        member's place; returns who left, or None. A group at the department bound for ``u`` is a
        candidate only if a member of ``u``'s department was drawn after it (array work)."""
        ranks = self.prep.ranks
        mine = ranks[u]
        latest = self.latest[: len(self.members)]
        top = latest.max(axis=1)
        ok = self._eligible(u) & (top > mine)
        if self.limit is not None:
            c = self.code[self.dept[u]]
            at_bound = self.counts[: len(self.members), c] >= self.limit
            ok &= ~at_bound | (latest[:, c] > mine)
        gs = np.flatnonzero(ok)
        for g in gs[np.lexsort((gs, -top[gs]))].tolist():
            later: list[str] = [p for p in self.members[g] if ranks[p] > mine and p not in self.locked]
            for q in sorted(later, key=ranks.__getitem__, reverse=True):
                self.work -= 1
                if self.work <= 0:
                    return None
                if self.fits(u, g, without=q):
                    self._out(g, q)
                    self._in(g, u)
                    return q
        return None


def _rechosen(
    f: _Finish, lottery: tuple[list[str], int], deadline: float | None, time_limit: float, changed: bool
) -> _Finish:
    """The groups with other mentors leading them (``load_swaps``), if that gains fit and leaves the lottery
    pass (``lottery``: those left out, the bound) nothing to do, so the placed set is the same; fair load's
    takeovers run on them first. Without new loads, only groups the finish ``changed`` since their last
    reassignment are reassigned again (at 20,000 mentees a reassignment that found nothing cost 2 s). Not
    started past the run's deadline (the clock is the safety net, not a budget)."""
    prep, el, free = f.prep, f.el, f.free
    left, bound = lottery
    if past_deadline(prep.started, time_limit):
        return f
    stop_at = run_deadline(prep.started, time_limit)
    budget = swap_budget(len(f.group_of), time_limit)
    groups = rechoose(prep, el, free, f.positions(), budget, deadline, changed, stop_at)
    if groups is None:
        return f
    ids = prep.mentor_ids
    g = _Finish(prep, el, free, [([ids[k] for k in ms], members) for ms, members in groups])
    g.work = f.work
    if g.take_over():
        g = _Finish(prep, el, free, polish_groups(prep, g.positions(), el, ids, g.locked, deadline, flow_only=True))
        g.work = f.work
    _joined(g, left, bound)  # groups the reassignment opened may have room for someone left out
    if not set(f.group_of) <= set(g.group_of) or lottery_pass(g, left, prep.ranks, g.group_of, g.fill, bound):
        return f
    return g


def _flow_placed(f: _Finish, left: list[str], bound: int, deadline: float | None) -> tuple[_Finish, int]:
    """The groups with more of ``left`` placed by ``flow_place`` (moving the placed between groups and
    opening new ones), if it places more; and the number placed."""
    groups = placed_by_flow(f.prep, f.el, f.free, f.positions(), left, f.locked, bound, deadline)
    if groups is None:
        return f, len(f.group_of)
    g = _Finish(f.prep, f.el, f.free, groups)
    g.work = f.work
    return g, len(g.group_of)


def _joined(f: _Finish, left: list[str], bound: int) -> int:
    """Those ``left`` out who can join a group as it is join it, in lottery order; returns placed."""
    placed = len(f.group_of)
    for pid in left:
        if f.work <= 0 or placed >= bound:
            break
        if pid not in f.group_of and f.join(pid):
            placed = len(f.group_of)
    return placed


def finish(
    prep: Prepared,
    el: Eligibility,
    free: IntArray,
    groups: list[NamedGroup],
    bound: int,
    deadline: float | None = None,
    time_limit: float | None = None,
) -> Finished:
    """The fill (unless placed already meets ``bound``), the takeovers of fair load (then, with one mentor
    per group, the fit reassignment again, ``deadline`` its wall-clock safety net), then the lottery pass;
    see the module doc. With the run's ``time_limit``, one mentor per group, the groups are regrouped for
    fit last (``load_swaps``, a budget the limit sets)."""
    f = _Finish(prep, el, free, groups)
    placed = len(f.group_of)
    left = sorted((p for p in el.active if p not in f.group_of and p not in f.locked), key=prep.ranks.__getitem__)
    out = Finished(groups)
    before = placed
    if placed < bound:  # joins first (cheap), then groups opened with idle mentors, then joins again
        for step in (f.join, f.open, f.join):
            for pid in left:
                if f.work <= 0 or placed >= bound:
                    break
                if pid not in f.group_of and step(pid):
                    placed = len(f.group_of)
    if placed < bound and f.width == 1:  # a flow that moves the placed too, with groups opened for the rest
        f, placed = _flow_placed(f, left, bound, deadline)
    out.taken_over = f.take_over()
    if out.taken_over and placed < bound:  # a new mentor may take someone left out
        placed = _joined(f, left, bound)
    if out.taken_over and f.width == 1:  # the members were reassigned for their old mentors: fit again
        work = f.work
        polished = polish_groups(prep, f.positions(), el, prep.mentor_ids, f.locked, deadline, flow_only=True)
        f = _Finish(prep, el, free, polished)
        f.work = work
        if placed < bound:  # the reassignment may open groups (``fit_polish._fewer_extras``) with room
            placed = _joined(f, left, bound)
    out.swapped = lottery_pass(f, left, prep.ranks, f.group_of, f.fill, bound)
    if f.width == 1 and time_limit is not None:  # which mentors lead the groups, for fit (``load_swaps``)
        # the groups as last reassigned unless the lottery pass, or a fill with no takeover after it, moved someone
        changed = out.swapped > 0 or (len(f.group_of) > before and not out.taken_over)
        f = _rechosen(f, (left, bound), deadline, time_limit, changed)
    out.filled = len(f.group_of) - before
    out.out_of_work = f.work <= 0
    out.groups = f.named()
    return out
