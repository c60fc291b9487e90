"""Facilitated groups (one mentor per group), fit: which mentors lead the groups.

The fit reassignment (``fit_polish``) moves mentees between the open groups it is given; which mentor
leads how many groups comes from the greedy, the chains and fair load's takeovers, in lottery order,
and fit never chose it. On the benchmark's one-dept pool (1,000 mentees) the reassignment was within
0.5 % of the best fit for the run's own mentor loads, and 2.5 % below the proven optimum for the placed
set (``bench/facilitated_fit_exact.py``): the optimum leads the same number of groups with 13 other
mentors.

Here the load vector ``g`` (groups per mentor) is searched by *swaps of one group*: mentor ``a`` leads
one group fewer, mentor ``b`` one more. A swap keeps the number of groups, never lets a mentor pass its
allowed groups (the run's max load ratio: level (a) of fair load) and never lowers the number of
mentors used (level (b): ``b`` idle may replace ``a`` idle, never the reverse), and the placed set is
not touched. Each swap is valued exactly by a min-cost flow of the placed people over the new loads
(``LoadFlow``: each mentor's people between its groups x minimum and its groups x maximum, of each
department at most its groups x the room the bound leaves), which relaxes only the rules between
members (reporting lines, conflicts, excluded pairs): a mentor's people can always be dealt into its
groups within the size and department bounds (by department, round-robin), so without those rules the
flow's value is the best fit at those loads. The search takes the first swap that gains, in the order
of a cheap estimate (what ``b``'s best group would gain over its members' places, less what closing one
of ``a``'s groups loses), and stops when a pass over its candidates gains nothing or its budget of flows
(a count, never the clock) is spent. The caller then realises the loads with the reassignment, which
keeps every rule, and keeps them only if the real fit is higher.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow

from services.matching.domain.common import Prepared
from services.matching.domain.facilitated_fit import polish_groups
from services.matching.domain.facilitated_prep import Eligibility, top_arcs
from services.matching.domain.rules import BoolArray, IntArray

SWAP_OPTIONS = 20
"""Each placed person's arcs in the load flow: its best-fitting eligible mentors with allowed groups
(plus its own mentor). The realisation reads 60 (``facilitated_fit.OPEN_OPTIONS``); with 40 here a
flow cost twice as much for the same swaps found on the one-dept and 4-4 pools of 1,000."""
SWAP_WORK_PER_SECOND = 25_000_000
"""The search's budget: flows of ``arcs ** 1.5`` work each (a flow's cost grew about so: 3 ms at 9,400
arcs, 12 ms at 20,000 and 45 ms at 56,000 on the benchmark machine) up to this much per second of the
time limit: about a tenth of the limit in flows."""
SEARCH_FLOWS_LEAST = 25
"""A smaller budget does not search: a search pays for building its flow and for the reassignment of
the loads it finds (one-dept 5,000 would get 18 flows, about 1 s, for +16 of flow value); the groups'
own loads are then reassigned by the flow alone, and only when the finish moved someone."""
NO_GAIN = -(10**9)
"""Below any real gain: a person not eligible for the mentor, a mentor no group can be formed for."""
TRIED_GIVERS = 6
TRIED_TAKERS = 8
"""Per pass, the swaps valued: the ``TRIED_GIVERS`` mentors whose group costs least to close against the
``TRIED_TAKERS`` whose new group gains most."""


@dataclass(frozen=True)
class Shape:
    """The policy's group shape: sizes, each person's department, each mentor's, the department bound."""

    size_min: int
    size_max: int
    dept: Mapping[str, str]
    mentor_dept: Sequence[str]
    limit: int | None


class LoadFlow:
    """The best fit of ``people`` for a load vector, as a min-cost flow built once (module doc): source
    -> person -> (mentor, department) -> mentor -> sink; a mentor's node must receive its groups x
    minimum, and passes at most its groups x (maximum - minimum) more to the sink."""

    def __init__(self, el: Eligibility, people: list[str], own: Mapping[str, int], allowed: IntArray, shape: Shape):
        self.people = people
        leads = np.flatnonzero(allowed > 0).astype(np.int64)
        who, mentor, fit = top_arcs(el, people, leads, SWAP_OPTIONS)
        rows = np.array([el.row[pid] for pid in people], dtype=np.int64)
        mine = np.array([own[pid] for pid in people], dtype=np.int64)
        key = np.unique(np.concatenate([who * len(allowed) + mentor, np.arange(len(people)) * len(allowed) + mine]))
        who, mentor = key // len(allowed), key % len(allowed)
        fit = el.fit[rows[who], mentor].astype(np.int64)
        names = {d: i for i, d in enumerate(sorted({*shape.dept.values(), *shape.mentor_dept}))}
        person_dept = np.array([names[shape.dept[pid]] for pid in people], dtype=np.int64)
        of_mentor = np.array([names[d] for d in shape.mentor_dept], dtype=np.int64)
        if shape.limit is None:
            room = np.full(len(who), shape.size_max, dtype=np.int64)
        else:
            room = shape.limit - (person_dept[who] == of_mentor[mentor]).astype(np.int64)
        keep = room > 0
        who, mentor, fit, room = who[keep], mentor[keep], fit[keep], room[keep]
        self.who, self.mentor, self.fit = who, mentor, fit
        n, m = len(people), len(allowed)
        self.n, self.m, self.shape = n, m, shape
        nodes, node_of = np.unique(mentor * len(names) + person_dept[who], return_inverse=True)
        self.node_room = np.zeros(len(nodes), dtype=np.int64)
        self.node_room[node_of] = room
        self.node_mentor = nodes // len(names)
        f = min_cost_flow.SimpleMinCostFlow()
        self.mentor_node = 2 + n + np.arange(m, dtype=np.int64)
        dept_node = 2 + n + m + np.arange(len(nodes), dtype=np.int64)
        f.add_arcs_with_capacity_and_unit_cost(
            np.zeros(n, dtype=np.int64), 2 + np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64),
            np.zeros(n, dtype=np.int64),
        )  # fmt: skip
        self.first = f.num_arcs()
        f.add_arcs_with_capacity_and_unit_cost(2 + who, dept_node[node_of], np.ones(len(who), dtype=np.int64), -fit)
        self.dept_arcs = f.add_arcs_with_capacity_and_unit_cost(
            dept_node, self.mentor_node[self.node_mentor], np.zeros(len(nodes), dtype=np.int64),
            np.zeros(len(nodes), dtype=np.int64),
        )  # fmt: skip
        self.sink_arcs = f.add_arcs_with_capacity_and_unit_cost(
            self.mentor_node, np.ones(m, dtype=np.int64), np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
        )
        self.slack_node = 2 + n + m + len(nodes)
        self.slack_arcs = f.add_arcs_with_capacity_and_unit_cost(
            np.full(m, self.slack_node, dtype=np.int64), self.mentor_node, np.zeros(m, dtype=np.int64),
            np.zeros(m, dtype=np.int64),
        )  # fmt: skip
        self.flow = f
        self.flows = 0
        """Flows solved: the search's budget counts them."""

    def value(self, groups: IntArray, spare: BoolArray | None = None) -> int | None:
        """The best fit at ``groups`` per mentor (None: the people cannot fill them). With ``spare`` (a
        relaxation: one group more than the people can fill), a group minimum's worth of places may stay
        empty, in the groups of the mentors ``spare`` marks: ``givers`` then says whose."""
        n, shape, f = self.n, self.shape, self.flow
        need = int(groups.sum()) * shape.size_min
        slack = 0 if spare is None else shape.size_min
        if need > n + slack or n > int(groups.sum()) * shape.size_max:
            return None
        self.flows += 1
        f.set_arc_capacities(self.dept_arcs, groups[self.node_mentor] * self.node_room)
        f.set_arc_capacities(self.sink_arcs, groups * (shape.size_max - shape.size_min))
        marked = np.zeros(self.m, dtype=np.int64) if spare is None else spare.astype(np.int64) * shape.size_min
        f.set_arc_capacities(self.slack_arcs, marked)
        f.set_nodes_supplies(
            np.array([0, 1, self.slack_node, *self.mentor_node.tolist()], dtype=np.int64),
            np.array([n, -(n + slack - need), slack, *(-groups * shape.size_min).tolist()], dtype=np.int64),
        )
        if f.solve() != f.OPTIMAL:
            return None
        return -int(f.optimal_cost())

    def givers(self) -> list[int]:
        """After a relaxed ``value``: the mentors whose places stayed empty, the most first."""
        empty = self.flow.flows(self.slack_arcs)
        return sorted(np.flatnonzero(empty > 0).tolist(), key=lambda k: (-int(empty[k]), k))

    def placed_fit(self) -> tuple[IntArray, IntArray]:
        """After a feasible ``value``: each person's mentor and fit in that flow."""
        flows = self.flow.flows(self.first + np.arange(len(self.who), dtype=np.int64))
        used = np.flatnonzero(flows > 0)
        mentor = np.full(self.n, -1, dtype=np.int64)
        fit = np.zeros(self.n, dtype=np.int64)
        mentor[self.who[used]] = self.mentor[used]
        fit[self.who[used]] = self.fit[used]
        return mentor, fit


@dataclass
class Search:
    """The swap search over ``flow``'s loads (module doc); ``allowed`` per mentor, ``el`` for the estimate."""

    flow: LoadFlow
    el: Eligibility
    allowed: IntArray
    budget: int
    stop_at: float | None = None
    """A wall-clock safety net, not a budget: past it the search is abandoned (``run`` returns None), so
    the groups are those of the stage before it, never a half-searched one."""

    def run(self, groups: IntArray) -> tuple[IntArray, int] | None:
        """The best loads found and their flow value; None when the first flow fails or the clock passed
        ``stop_at``."""
        g = groups.copy()
        best = self.flow.value(g)
        if best is None:
            return None
        used_least = int((g > 0).sum())
        rows = np.array([self.el.row[pid] for pid in self.flow.people], dtype=np.int64)
        fit = self.el.fit[rows].astype(np.int64)
        ok = self.el.eligible[rows]
        while self.flow.flows < self.budget:  # the flow's last solve is at ``g``: the estimates read it
            gained = self._one_swap(g, best, used_least, self._takers(g, fit, ok), self._givers(g, fit, ok))
            if gained is None:
                break
            best = gained
        if self.stop_at is not None and time.perf_counter() > self.stop_at:
            return None
        return g, best

    def _one_swap(self, g: IntArray, best: int, used_least: int, takers: list[int], givers: list[int]) -> int | None:
        """Applies to ``g`` the first swap that gains (takers in the given order; each one's givers those the
        relaxed flow leaves places empty with, then ``givers`` in order, TRIED_GIVERS in all) and returns its
        value; None when none does within the budget. A taker whose relaxed flow does not gain is passed
        over: that flow bounds every swap into it."""
        for b in takers:
            if self.flow.flows >= self.budget or self._stopped():
                return None
            spare = (g > 0) & self._rooms_kept(g, b)
            g[b] += 1
            spare[b] = False
            relaxed = self.flow.value(g, spare)
            if relaxed is not None and relaxed > best:
                first = self.flow.givers()
                tried = first + [a for a in givers if spare[a] and a not in first]
                for a in tried[:TRIED_GIVERS]:
                    if self.flow.flows >= self.budget or self._stopped():
                        break
                    if int((g > 0).sum()) - (g[a] == 1) < used_least:
                        continue
                    g[a] -= 1
                    value = self.flow.value(g)
                    if value is not None and value > best:
                        return value
                    g[a] += 1
            g[b] -= 1
        return None

    def _stopped(self) -> bool:
        return self.stop_at is not None and time.perf_counter() > self.stop_at

    def _takers(self, g: IntArray, fit: IntArray, ok: BoolArray) -> list[int]:
        """Mentors who may lead one more group, the best estimate first, TRIED_TAKERS of them: what each
        one's best new group (its ``size_min`` people who gain most over their present places, within the
        department rooms) would gain, reading each mentor's 4 x ``size_min`` best gains."""
        shape = self.flow.shape
        _, now = self.flow.placed_fit()
        columns = np.flatnonzero(g < self.allowed)
        if not len(columns):
            return []
        gain = np.where(ok[:, columns], fit[:, columns] - now[:, None], NO_GAIN)
        top = min(len(gain), shape.size_min * 4)
        # a unique key (the gain, then the lower row) so that which rows make the cut never depends on how
        # numpy's CPU-specific partition kernel orders equal gains (bench.probes.any_cpu)
        key = gain * (len(gain) + 1) + (len(gain) - np.arange(len(gain), dtype=np.int64))[:, None]
        best = np.argpartition(-key, top - 1, axis=0)[:top] if top < len(gain) else np.arange(len(gain))[:, None]
        best = np.broadcast_to(best, (top, len(columns)))
        takers = []
        for c, b in enumerate(columns.tolist()):
            rows = sorted(best[:, c].tolist(), key=lambda r: (-int(gain[r, c]), r))
            takers.append((self._take(b, [(r, int(gain[r, c])) for r in rows]), b))
        takers.sort(key=lambda t: (-t[0], t[1]))
        return [b for value, b in takers[:TRIED_TAKERS] if value > NO_GAIN]

    def _givers(self, g: IntArray, fit: IntArray, ok: BoolArray) -> list[int]:
        """Mentors leading a group, the cheapest to close first by an estimate: what its ``size_min`` people
        who lose least would lose, each against its best other mentor leading a group (rooms ignored)."""
        mentor, now = self.flow.placed_fit()
        alt = np.where(ok & (g > 0)[None, :], fit, NO_GAIN)
        alt[np.arange(len(mentor)), mentor] = NO_GAIN
        loss = now - alt.max(axis=1, initial=NO_GAIN)
        order = np.lexsort((loss, mentor))
        size_min = self.flow.shape.size_min
        cost: dict[int, list[int]] = {}
        for r in order.tolist():
            k = int(mentor[r])
            if k >= 0 and len(cost.setdefault(k, [])) < size_min:
                cost[k].append(int(loss[r]))
        return sorted(cost, key=lambda k: (sum(cost[k]), k))

    def _take(self, b: int, ranked: list[tuple[int, int]]) -> int:
        """The gain of ``b``'s best new group from people ranked by gain (department rooms kept)."""
        shape = self.flow.shape
        counts: dict[str, int] = {}
        total, taken = 0, 0
        for r, gain in ranked:
            if gain <= NO_GAIN or taken == shape.size_min:
                break
            d = shape.dept[self.flow.people[r]]
            if counts.get(d, 0) < self._room(b, d):
                counts[d] = counts.get(d, 0) + 1
                total += gain
                taken += 1
        return total if taken == shape.size_min else NO_GAIN

    def _rooms_kept(self, g: IntArray, b: int) -> BoolArray:
        """The mentors who may give a group to ``b`` and leave each department room for its people: a
        group of ``b`` has one place less than any other for ``b``'s department (the bound less one)
        and one more for the giver's, so where ``b``'s department fills every room its groups leave,
        only a mentor of that department may give."""
        shape = self.flow.shape
        same = np.array([d == shape.mentor_dept[b] for d in shape.mentor_dept], dtype=bool)
        if shape.limit is None:
            return np.ones(len(g), dtype=bool)
        d = shape.mentor_dept[b]
        people = sum(1 for pid in self.flow.people if shape.dept[pid] == d)
        room = int((g * np.where(same, shape.limit - 1, shape.limit)).sum())
        return same if room - people < 1 else np.ones(len(g), dtype=bool)

    def _room(self, k: int, d: str) -> int:
        shape = self.flow.shape
        if shape.limit is None:
            return shape.size_max
        return shape.limit - (d == shape.mentor_dept[k])


def swap_budget(placed: int, time_limit: float) -> int:
    """Flows the search may solve: a count fixed by the pool's size and the configured limit."""
    arcs = max(1, placed * SWAP_OPTIONS)
    return int(SWAP_WORK_PER_SECOND * time_limit / arcs**1.5)


Positions = list[tuple[list[int], list[str]]]
"""Groups as (mentor positions, members): one mentor per group here."""


def rechoose(
    prep: Prepared,
    el: Eligibility,
    free: IntArray,
    groups: Positions,
    budget: int,
    deadline: float | None = None,
    changed: bool = True,
    stop_at: float | None = None,
) -> Positions | None:
    """The groups regrouped for fit, when that gains and keeps every rule; else None. The placed set is the
    same. With a ``budget`` of at least ``SEARCH_FLOWS_LEAST`` flows, the swap search (module doc) first
    chooses the loads, and its flow's people, dealt into the groups, are the reassignment's start. Without
    new loads, the groups are reassigned again (the flow alone) only when ``changed`` since their last
    reassignment. ``stop_at`` (the search) and ``deadline`` (the reassignment) are wall-clock safety nets:
    past either, the groups stay as they were (an earlier stage, not a half-done one)."""
    pol = prep.policy
    if pol.mentors_per_group != 1 or prep.locked or not groups:
        return None
    start = _searched(prep, el, free, groups, (budget, stop_at)) if budget >= SEARCH_FLOWS_LEAST else None
    if start is None and not changed:
        return None
    position = {pid: k for k, pid in enumerate(prep.mentor_ids)}
    regrouped = [
        ([position[ms[0]]], members)
        for ms, members in polish_groups(
            prep, start or groups, el, prep.mentor_ids, deadline=deadline, flow_only=start is None
        )
    ]
    if deadline is not None and time.perf_counter() > deadline:
        return None
    if not valid(prep, regrouped) or total_fit(el, regrouped) <= total_fit(el, groups):
        return None
    return regrouped


def loads_of(groups: Positions, mentors: int) -> tuple[IntArray, dict[str, int]]:
    """The groups each mentor leads, and each member's mentor (groups of one mentor each)."""
    g = np.zeros(mentors, dtype=np.int64)
    own: dict[str, int] = {}
    for (k,), members in groups:
        g[k] += 1
        own.update((pid, k) for pid in members)
    return g, own


def _searched(
    prep: Prepared, el: Eligibility, free: IntArray, groups: Positions, budget: tuple[int, float | None]
) -> Positions | None:
    """The swap search's loads with its flow's people dealt into them, or None when it found no better
    loads. Each mentor's allowed groups: the run's max load ratio (``take_over``'s reading), its room."""
    pol = prep.policy
    g, own = loads_of(groups, len(prep.mentor_ids))
    cap = np.array([prep.capacity[pid] for pid in prep.mentor_ids], dtype=np.int64)
    load = np.array([prep.load[pid] for pid in prep.mentor_ids], dtype=np.int64)
    real = cap > 0
    top = float(((load + g)[real] / cap[real]).max(initial=0.0))
    allowed = np.maximum(np.clip(np.minimum(free, np.floor(top * cap + 1e-9).astype(np.int64) - load), 0, None), g)
    people = sorted(own)
    shape = Shape(
        pol.group_members_min, pol.group_members_max, {pid: prep.by_id[pid].department for pid in people},
        [prep.by_id[pid].department for pid in prep.mentor_ids], pol.max_same_department,
    )  # fmt: skip
    flow = LoadFlow(el, people, own, allowed, shape)
    found = Search(flow, el, allowed, *budget).run(g)
    if found is None or bool((found[0] == g).all()):
        return None
    flow.value(found[0])
    mentor, _ = flow.placed_fit()
    return deal(people, mentor, found[0], shape)


def deal(people: list[str], mentor: IntArray, groups: IntArray, shape: Shape) -> Positions:
    """Each mentor's people dealt into its groups: sorted by department, the t-th to group t mod g, so each
    group holds the floor or ceiling of the mean size and of each department's mean."""
    of: dict[int, list[str]] = {}
    for r in np.argsort(mentor, kind="stable").tolist():
        of.setdefault(int(mentor[r]), []).append(people[r])
    out: Positions = []
    for k, members in sorted(of.items()):
        members.sort(key=lambda pid: (shape.dept[pid], pid))
        count = int(groups[k])
        out += [([k], members[j::count]) for j in range(count)]
    return out


def valid(prep: Prepared, groups: Positions) -> bool:
    """Sizes, and no two members kept apart (the flow and the reassignment keep every other rule)."""
    pol = prep.policy
    for _, members in groups:
        if not pol.group_members_min <= len(members) <= pol.group_members_max:
            return False
        if any(prep.apart(a, b) for i, a in enumerate(members) for b in members[i + 1 :]):
            return False
    return True


def total_fit(el: Eligibility, groups: Positions) -> int:
    """Mentor-member fit, summed."""
    return sum(int(el.fit[el.row[pid], ms[0]]) for ms, members in groups for pid in members)
