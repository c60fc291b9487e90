"""Facilitated groups with co-facilitators (``mentors_per_group`` above 1): the last steps of every path.

The one-mentor steps (``facilitated_fill``) rest on the chain repair's state, which holds one mentor per
group; these are the same steps where a group has several mentors, each of whom must be eligible for
every member and all of whom count in the department bound:

- **fill**: each seeker left out, in lottery order, joins a group of the result as it stands that takes
  it under every rule (every mentor eligible, nobody apart, the department bound, the size maximum),
  best fit (summed over the group's mentors) first. Opening a group needs a lead and co-facilitators
  who suit each other and the members: that is the greedy's and the model's, not done here.
- **fair load** (level (b) below (a)): an idle mentor (no group in this run, room for one) takes, in a
  group as it stands, the place of a mentor who is in two or more groups (lead or co-facilitator), the
  highest load ratio first, when it is eligible for every member, apart from none of the other
  mentors, keeps the department bound, and its load ratio with the group stays within the run's max
  load ratio. An outside-in probe found 140 of 170 groups of a 1,000-mentee pool (2 mentors per group)
  where an idle mentor could have taken such a place while 36 eligible mentors with room sat idle.
- **lottery pass**: each seeker left out, in lottery order, takes the place of the latest-drawn member
  (drawn after it) of a group it may enter in that member's place, every rule kept; the displaced
  member goes through the fill, then the lottery pass in its turn. Placed never shrinks.

People under a lock (mentors too) are neither moved nor placed here. Deterministic: fixed orders and a
fixed amount of work (``FINISH_WORK`` rule checks), no clock.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from services.matching.domain.common import Prepared, apart_pairs
from services.matching.domain.facilitated_fill import FINISH_WORK, Finished, NamedGroup, lottery_pass
from services.matching.domain.facilitated_prep import Eligibility
from services.matching.domain.rules import IntArray


class _CoFinish:
    def __init__(self, prep: Prepared, el: Eligibility, free: IntArray, groups: list[NamedGroup]) -> None:
        self.prep, self.el, self.free = prep, el, free
        pol = prep.policy
        self.size_max, self.limit = pol.group_members_max, pol.max_same_department
        mpos = {m: k for k, m in enumerate(prep.mentor_ids)}
        self.mentors: list[list[int]] = [[mpos[m] for m in ms] for ms, _ in groups]
        self.grid = np.array(self.mentors, dtype=np.int64).reshape(len(groups), pol.mentors_per_group)
        """Per group its mentors as a row: every group's eligibility for a person in one array lookup
        (a scan of the groups in Python per person left out would grow with groups x people left out)."""
        self.members: list[list[str]] = [list(members) for _, members in groups]
        self.dept = {p.participant_id: p.department for p in prep.people}
        self.depts = [Counter(self.dept[p] for p in [*ms, *members]) for ms, members in groups]
        self.group_of = {pid: g for g, members in enumerate(self.members) for pid in members}
        self.used = np.zeros(len(prep.mentor_ids), dtype=np.int64)
        for ms in self.mentors:
            self.used[ms] += 1
        self.locked = frozenset(p for pair in prep.locked for p in pair)
        self.apart: dict[str, set[str]] = defaultdict(set)
        for a, b in apart_pairs(prep, el.seekers):
            self.apart[a].add(b)
            self.apart[b].add(a)
        self.work = FINISH_WORK

    def _fits(self, pid: str, g: int, without: str | None = None) -> bool:
        """``pid`` may join group ``g`` (in the place of ``without``): every mentor eligible, nobody apart,
        the department bound, the size maximum."""
        self.work -= 1
        members = self.members[g]
        if without is None and len(members) >= self.size_max:
            return False
        if not self.el.eligible[self.el.row[pid]][self.mentors[g]].all():
            return False
        mine = self.apart.get(pid, set())
        if any(o in mine and o != without for o in members):
            return False
        if self.limit is not None:
            d = self.dept[pid]
            same = self.depts[g][d] - (1 if without is not None and self.dept[without] == d else 0)
            if same + 1 > self.limit:
                return False
        return True

    def _move(self, pid: str, g: int, into: bool) -> None:
        if into:
            self.members[g].append(pid)
            self.group_of[pid] = g
        else:
            self.members[g].remove(pid)
            self.group_of.pop(pid, None)
        self.depts[g][self.dept[pid]] += 1 if into else -1

    def _eligible_groups(self, pid: str) -> IntArray:
        """The groups with members whose every mentor is eligible for ``pid`` (one array lookup)."""
        self.work -= 1
        if not len(self.grid):
            return np.zeros(0, dtype=np.int64)
        ok = self.el.eligible[self.el.row[pid]][self.grid].all(axis=1)
        ok &= np.array([bool(members) for members in self.members], dtype=bool)
        out: IntArray = np.flatnonzero(ok)
        return out

    def join(self, pid: str) -> bool:
        """``pid`` joins the best-fitting group with room that takes it under every rule."""
        options = self._eligible_groups(pid)
        if not len(options):
            return False
        fit = self.el.fit[self.el.row[pid]][self.grid[options]].astype(np.int64).sum(axis=1)
        for g in options[np.lexsort((options, -fit))].tolist():
            if self.work <= 0:
                return False
            if self._fits(pid, g):
                self._move(pid, g, True)
                return True
        return False

    def swap(self, u: str) -> str | None:
        """``u`` takes the place of the latest-drawn member drawn after it of a group it may enter in that
        member's place; returns who left, or None."""
        ranks = self.prep.ranks
        mine = ranks[u]
        later_of: dict[int, list[str]] = {
            g: sorted((p for p in self.members[g] if ranks[p] > mine and p not in self.locked), key=ranks.__getitem__)
            for g in map(int, self._eligible_groups(u))
        }
        options = sorted((g for g, later in later_of.items() if later), key=lambda g: (-ranks[later_of[g][-1]], g))
        for g in options:
            for q in reversed(later_of[g]):
                if self.work <= 0:
                    return None
                if self._fits(u, g, without=q):
                    self._move(q, g, False)
                    self._move(u, g, True)
                    return q
        return None

    def take_over(self) -> int:
        """Idle mentors with room take, in a group as it stands, the place of a mentor in two or more groups
        (highest load ratio first), within the run's max load ratio; returns how many places changed."""
        prep, el = self.prep, self.el
        cap = np.array([max(1, prep.capacity[m]) for m in prep.mentor_ids], dtype=np.float64)
        load = np.array([prep.load[m] for m in prep.mentor_ids], dtype=np.float64)
        real = np.array([prep.capacity[m] > 0 for m in prep.mentor_ids], dtype=bool)
        rank = np.array([prep.ranks[m] for m in prep.mentor_ids], dtype=np.int64)
        ratio = (load + self.used) / cap
        top = float(ratio[real].max(initial=0.0))  # as ``common.max_load_ratio`` counts it
        idle = np.flatnonzero((self.used == 0) & (self.free > 0) & ((load + 1) / cap <= top + 1e-9))
        idle = np.array([k for k in idle.tolist() if prep.mentor_ids[k] not in self.locked], dtype=np.int64)
        busy = [int(k) for k in np.flatnonzero(self.used >= 2) if prep.mentor_ids[int(k)] not in self.locked]
        busy.sort(key=lambda k: (-ratio[k], rank[k]))
        taken = 0
        for k in busy:
            for g in [g for g, ms in enumerate(self.mentors) if k in ms]:
                idle = idle[self.used[idle] == 0]
                members = self.members[g]
                if self.used[k] < 2 or not len(idle) or not members or any(p in self.locked for p in members):
                    continue
                self.work -= 1
                rows = [el.row[p] for p in members]
                ok = el.eligible[np.ix_(rows, idle)].all(axis=0)
                others = [prep.mentor_ids[j] for j in self.mentors[g] if j != k]
                options = [int(j) for j in idle[ok] if self._may_replace(g, k, int(j), others)]
                if not options:
                    continue
                fit = el.fit[np.ix_(rows, options)].astype(np.int64).sum(axis=0)
                new = min(range(len(options)), key=lambda i: (-int(fit[i]), rank[options[i]]))
                self._replace(g, k, options[new])
                taken += 1
        return taken

    def _may_replace(self, g: int, k: int, j: int, others: list[str]) -> bool:
        """Mentor ``j`` may take ``k``'s place in group ``g``: apart from none of the other mentors, and
        the department bound holds with it instead of ``k``."""
        new = self.prep.mentor_ids[j]
        if any(self.prep.apart(new, o) for o in others):
            return False
        if self.limit is None:
            return True
        old_dept, new_dept = self.dept[self.prep.mentor_ids[k]], self.dept[new]
        return old_dept == new_dept or self.depts[g][new_dept] + 1 <= self.limit

    def _replace(self, g: int, k: int, j: int) -> None:
        ms = self.mentors[g]
        ms[ms.index(k)] = j
        self.grid[g] = ms
        self.depts[g][self.dept[self.prep.mentor_ids[k]]] -= 1
        self.depts[g][self.dept[self.prep.mentor_ids[j]]] += 1
        self.used[k] -= 1
        self.used[j] += 1

    def groups(self) -> list[NamedGroup]:
        ids = self.prep.mentor_ids
        return [([ids[k] for k in ms], list(members)) for ms, members in zip(self.mentors, self.members, strict=True)]


def finish_co(prep: Prepared, el: Eligibility, free: IntArray, groups: list[NamedGroup], bound: int) -> Finished:
    """The fill (unless placed already meets ``bound``), the takeovers of fair load, then the lottery
    pass, for groups with co-facilitators; see the module doc."""
    f = _CoFinish(prep, el, free, groups)
    ranks = prep.ranks
    left = sorted((p for p in el.active if p not in f.group_of and p not in f.locked), key=ranks.__getitem__)
    out = Finished(groups)
    before = placed = len(f.group_of)
    for pid in left:
        if f.work <= 0 or placed >= bound:
            break
        if f.join(pid):
            placed += 1
    out.taken_over = f.take_over()
    out.swapped = lottery_pass(f, left, ranks, f.group_of, f.join, bound)
    out.filled = len(f.group_of) - before
    out.out_of_work = f.work <= 0
    out.groups = f.groups()
    return out
