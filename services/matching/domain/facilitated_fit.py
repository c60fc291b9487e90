"""Facilitated groups (one mentor per group), fit: mentees reassigned between open groups.

The placed set, and which mentor leads how many groups, come from the levels above fit (the solver's
or the greedy's); here only who sits in which group changes (``fit_polish``), plus extra groups a
fit-optimal flow wants within the same max load ratio (``flow_open``). Placed, the lottery and the
max load ratio keep their values; mentors used can only grow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from services.matching.domain.common import Prepared, apart_pairs
from services.matching.domain.facilitated_model import FacilitatedModel
from services.matching.domain.facilitated_prep import Eligibility, top_arcs
from services.matching.domain.fit_polish import POLISH_ROUNDS, improve, moved
from services.matching.domain.flow_open import Departments, extra_groups, fit_loads
from services.matching.domain.levels import Levels
from services.matching.domain.reassignment import Arcs, Reassignment, Slot
from services.matching.domain.rules import IntArray

OPEN_OPTIONS = 60
"""Each mentee's options: the open groups of this many of its best-fitting eligible mentors among
those who lead one. 20 left 1.1 % of fit on the capacity-bound pool of 20,000, 40 0.3 %, and 0.6 % at
50,000 (against a bound over 200 arcs per mentee)."""
POLISH_MOVES = 10_000
"""Large pools: the local search gets POLISH_MOVES / mentees rounds (a deterministic amount of work:
30 rounds took 9 s at 5,000 mentees on the tight benchmark pool)."""


FLOW_CHOSEN_MOST = 5_000
"""Placed mentees up to which the reassignment also starts from the groups a fit-optimal flow chooses
(``flow_chosen``) and keeps whichever of the two is fitter. Why: the greedy's groups stay open in the
reassignment, each with at least its minimum; on a pool where a tenth of the mentors take twenty groups
(probe ``fac skewed-cap 2-4 s18 1000``) the greedy opened 259 groups at 35 mentors in lottery order,
which held 518 people away from their better mentors, and the fit ended 5.9 % below the proven optimum
for the placed set, max load ratio and mentors used. Cost (CPU of the whole run, 2026-12-02): at 5,000
mentees 0.6-0.8 s more (benchmark capacity 5,000: 2.2 -> 3.0 s, and 53,587 -> 53,596 with no eligible
mentor idle instead of 9; probe ``fac 2-6 cap1 s12 5000`` 2.8 -> 3.4 s, no gain); at 20,000 3.5-6.8 s
more for no gain on either benchmark family, so not above 5,000."""
FLOW_CHOSEN_REPAIRS = 8
"""Flows the reassignment into the chosen groups may take to repair broken member-member rules (the
greedy's groups get ``fit_polish.REPAIR_ROUNDS``): where many pairs are kept apart (probe ``fac
conflicts0.5 dept1 s17 1000``) 60 rounds took 0.4 s and still found no grouping, so the chosen groups
are given up sooner there."""


def _allowed(prep: Prepared, el: Eligibility, count: Mapping[int, int], mentor_ids: list[str]) -> IntArray:
    """Groups each mentor may lead in all under the greedy's max load ratio (level (a) of fair load)."""
    cap = np.array([prep.capacity[m] for m in mentor_ids], dtype=np.int64)
    load = np.array([prep.load[m] for m in mentor_ids], dtype=np.int64)
    loads = [
        (prep.load[m] + count.get(mpos, 0)) / c for mpos, m in enumerate(mentor_ids) if (c := prep.capacity[m]) > 0
    ]
    loads += [prep.load[m] / c for m, c in prep.capacity.items() if c > 0]
    ratio = max(loads, default=0.0)
    allowed: IntArray = np.clip(np.minimum(el.free, np.floor(ratio * cap + 1e-9).astype(np.int64) - load), 0, None)
    return allowed


def _departments(prep: Prepared, placed: list[str], mentor_ids: list[str]) -> Departments:
    dept = {pid: prep.by_id[pid].department for pid in placed}
    return dept, [prep.by_id[m].department for m in mentor_ids], prep.policy.max_same_department


def extra_groups_within_ratio(
    prep: Prepared, el: Eligibility, placed: list[str], count: Mapping[int, int], mentor_ids: list[str]
) -> dict[int, int]:
    """Groups worth opening beyond the greedy's (``flow_open``), within the greedy's max load ratio."""
    groups = np.array([count.get(k, 0) for k in range(len(mentor_ids))], dtype=np.int64)
    pol = prep.policy
    sizes = (pol.group_members_min, pol.group_members_max)
    allowed = _allowed(prep, el, count, mentor_ids)
    return extra_groups(el, placed, groups, allowed, sizes, _departments(prep, placed, mentor_ids))


def flow_chosen(
    prep: Prepared,
    el: Eligibility,
    placed: list[str],
    count: Mapping[int, int],
    mentor_ids: list[str],
    used: set[int],
) -> list[Slot] | None:
    """Groups chosen afresh for fit, not the greedy's: a fit-optimal flow of the placed people (each to
    its OPEN_OPTIONS best-fitting eligible mentors) in which every mentor with allowed groups and at least
    a group's minimum of eligible placed people takes at least that minimum (so none of them is left
    idle: level (b) of fair load at its most), within the greedy's max load ratio; when the people cannot
    give each of them a minimum, every mentor of ``used`` (those the groups at hand use) takes one
    instead. The loads become groups by ``_rounded``. None when neither flow exists."""
    pol = prep.policy
    allowed = _allowed(prep, el, count, mentor_ids)
    rows = np.array([el.row[pid] for pid in placed], dtype=np.int64)
    eligible = el.eligible[rows].sum(axis=0)
    usable = (allowed > 0) & (eligible >= pol.group_members_min)
    in_use = np.zeros(len(mentor_ids), dtype=bool)
    in_use[sorted(used)] = True
    departments = _departments(prep, placed, mentor_ids)
    load = None
    for must in (usable, usable & in_use):
        least = np.where(must, pol.group_members_min, 0).astype(np.int64)
        load = fit_loads(el, placed, allowed, pol.group_members_max, departments, least, OPEN_OPTIONS)
        if load is not None:
            break
    if load is None:
        return None
    groups = _rounded(load, allowed, pol.group_members_min, pol.group_members_max)
    return [(int(k), s) for k in np.flatnonzero(groups > 0) for s in range(int(groups[k]))]


def _rounded(load: IntArray, allowed: IntArray, size_min: int, size_max: int) -> IntArray:
    """Groups per mentor for the flow's loads: as many as each load fills at the minimum, then one more
    at the mentors with the most people left over while the groups cannot hold everyone and there are
    people enough for another minimum (groups of exactly four need the loads in fours)."""
    groups = np.minimum(allowed, load // max(1, size_min))
    people = int(load.sum())
    left = load - groups * size_min
    for k in np.lexsort((np.arange(len(load)), -left)):
        if int(groups.sum()) * size_max >= people or people - int(groups.sum()) * size_min < size_min:
            break
        if left[k] > 0 and groups[k] < allowed[k]:
            groups[k] += 1
    return groups


def _open_arcs(
    el: Eligibility,
    assign: Mapping[str, tuple[int, int]],
    slots: list[tuple[int, int]],
    leads: IntArray,
    optional: Sequence[str] = (),
) -> Arcs:
    """Each placed (and ``optional``) mentee's options, as arrays sorted by mentee then group: its own
    group and every open group of its OPEN_OPTIONS best-fitting eligible mentors among ``leads`` (those
    who lead one)."""
    people = sorted({*assign, *optional})
    width = max(1, len(slots))
    slot_index = {s: c for c, s in enumerate(slots)}
    slot_mentor = np.array([s[0] for s in slots], dtype=np.int64)
    mentors = el.eligible.shape[1]
    first = np.searchsorted(slot_mentor, np.arange(mentors, dtype=np.int64)).astype(np.int64)
    count = np.bincount(slot_mentor, minlength=mentors).astype(np.int64)
    who, mentor, _ = top_arcs(el, people, leads, OPEN_OPTIONS)
    reps = count[mentor]
    offset = np.arange(int(reps.sum()), dtype=np.int64) - np.repeat(np.cumsum(reps) - reps, reps)
    where = np.repeat(first[mentor], reps) + offset
    placed = np.array([r for r, pid in enumerate(people) if pid in assign], dtype=np.int64)
    own = np.array([slot_index[assign[people[r]]] for r in placed.tolist()], dtype=np.int64)
    keys = np.sort(np.concatenate([np.repeat(who, reps) * width + where, placed * width + own]))
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys  # np.unique's hash: 1 s
    who, where = keys // width, keys % width
    rows = np.array([el.row[pid] for pid in people], dtype=np.int64)
    fit = el.fit[rows[who], slot_mentor[where]].astype(np.int64)
    return Arcs(people, slots, who, where, fit)


def numbered(groups: list[tuple[list[int], list[str]]]) -> tuple[dict[str, Slot], list[Slot], dict[int, int]]:
    """Groups (one mentor each, by position) as slots numbered per mentor: each member's slot, the
    slots in the groups' order, and the groups per mentor."""
    assign: dict[str, Slot] = {}
    order: list[Slot] = []
    count: dict[int, int] = defaultdict(int)
    for ms, members in groups:
        slot = (ms[0], count[ms[0]])
        count[ms[0]] += 1
        order.append(slot)
        assign.update((pid, slot) for pid in members)
    return assign, order, count


def polish_groups(
    prep: Prepared,
    greedy: list[tuple[list[int], list[str]]],
    el: Eligibility,
    mentor_ids: list[str],
    frozen: frozenset[str] = frozenset(),
    deadline: float | None = None,
    flow_only: bool = False,
    rechoose: bool = False,
) -> list[tuple[list[str], list[str]]]:
    """The greedy's groups (one mentor each) with their mentees reassigned between them for a better fit
    (``fit_polish``: every rule kept, the same open groups, so the same placed set and mentor loads).
    Each mentee may move to the open groups of its OPEN_OPTIONS best-fitting eligible mentors among those
    who lead one (not its best mentors overall, most of whom may lead none). With ``rechoose`` (the
    greedy's groups, opened in lottery order) and up to FLOW_CHOSEN_MOST placed, the same people are also
    reassigned into the groups ``flow_chosen`` opens instead, and that grouping is kept when it is fitter
    and leaves no more mentors idle; later calls start from groups already chosen for fit."""
    assign, slot_of_group, count = numbered(greedy)
    extra: list[Slot] = []
    for k, more in extra_groups_within_ratio(prep, el, sorted(assign), count, mentor_ids).items():
        extra += [(k, count[k] + s) for s in range(more)]
    # no local search above POLISH_MOVES mentees: after the exact flow it found nothing at 20,000 (3 s a round)
    # ``flow_only``: the exact flow without the local search (after a few groups changed mentor, the
    # rounds cost 2 s at 5,000 mentees for little: ``facilitated_fill``)
    rounds = 0 if flow_only else min(POLISH_ROUNDS, POLISH_MOVES // max(1, len(assign)))
    problem = reassignment_of(prep, el, mentor_ids, assign, slot_of_group + extra, frozen, extra)
    better = improve(problem, rounds=rounds, deadline=deadline)
    if problem.total(better) <= problem.total(assign):
        better = assign
    order = slot_of_group + extra
    enough = rechoose and len(assign) <= FLOW_CHOSEN_MOST
    used = {slot[0] for slot in better.values()}
    chosen = flow_chosen(prep, el, sorted(assign), count, mentor_ids, used) if enough else None
    if chosen is not None:
        kept = {assign[pid] for pid in frozen if pid in assign}  # a locked mentee's group stays open
        opened = set(chosen) | kept
        slots = sorted(opened | set(slot_of_group))
        leads = np.array(sorted({s[0] for s in opened}), dtype=np.int64)
        other = replace(  # the same people, departments and apart pairs: only the open groups differ
            problem,
            arcs=_open_arcs(el, assign, slots, leads),
            mentor_dept={s: prep.by_id[mentor_ids[s[0]]].department for s in slots},
            extra=frozenset(opened - set(slot_of_group)),
            closing=frozenset(set(slot_of_group) - opened),
        )
        # the flow first; the local search only for a grouping that already beats the greedy's groups
        regrouped = improve(other, rounds=0, deadline=deadline, repairs=FLOW_CHOSEN_REPAIRS)
        if other.total(regrouped) > problem.total(better) and _mentors_used(regrouped) >= _mentors_used(better):
            better = moved(other, regrouped, rounds, deadline)
            order = sorted(set(better.values()))
    members_of: dict[Slot, list[str]] = defaultdict(list)
    for pid, slot in sorted(better.items()):
        members_of[slot].append(pid)
    return [([mentor_ids[slot[0]]], members_of[slot]) for slot in order if members_of[slot]]


def _mentors_used(assign: Mapping[str, Slot]) -> int:
    return len({slot[0] for slot in assign.values()})


def reassignment_of(
    prep: Prepared,
    el: Eligibility,
    mentor_ids: list[str],
    assign: dict[str, Slot],
    slots: list[Slot],
    frozen: frozenset[str],
    extra: list[Slot],
    optional: tuple[str, ...] = (),
) -> Reassignment:
    """The reassignment of ``assign`` over ``slots`` (its own groups among them), ``extra`` open empty,
    ``optional`` people left out placed where they can be; each mentee's options are the open groups of
    its best-fitting mentors among those who lead one."""
    leads = np.array(sorted({s[0] for s in slots}), dtype=np.int64)
    everyone = sorted({*assign, *optional})
    return Reassignment(
        assign=assign,
        arcs=_open_arcs(el, assign, sorted(slots), leads, optional),
        dept={pid: prep.by_id[pid].department for pid in everyone},
        mentor_dept={s: prep.by_id[mentor_ids[s[0]]].department for s in slots},
        apart=frozenset(frozenset(pair) for pair in apart_pairs(prep, everyone)),
        size_min=prep.policy.group_members_min,
        size_max=prep.policy.group_members_max,
        max_same_department=prep.policy.max_same_department,
        frozen=frozen,
        extra=frozenset(extra),
        may_join=lambda pid, s: int(el.fit[el.row[pid], s[0]]) if el.eligible[el.row[pid], s[0]] else None,
        optional=optional,
    )


def fit_start(
    prep: Prepared,
    levels: Levels,
    fm: FacilitatedModel,
    fit_of: dict[str, IntArray],
    mentor_ids: list[str],
    deadline: float | None = None,
) -> tuple[list[int], int] | None:
    """Before the fit level (one mentor per group): the load levels' solution with its mentees
    reassigned between the same open groups for a better fit (``fit_polish``). The open groups and the
    placed set are those of the solution found, so every higher level keeps its value exactly.
    Returns that start and its fit when it is better than the solution found."""
    if levels.values is None:
        return None
    values = levels.values
    assign: dict[str, tuple[int, int]] = {}
    for slot, members in fm.members_of.items():
        for pid, v in members:
            if values[v.index]:
                assign[pid] = slot
    open_slots = set(assign.values())
    options = {pid: sorted(s for s in fm.x_of[pid] if s in open_slots) for pid in assign}
    fit = {(pid, s): int(fit_of[pid][s[0]]) for pid, opts in options.items() for s in opts}
    locked = {p for pair in prep.locked for p in pair if p in fm.placed}
    problem = Reassignment(
        assign=assign,
        arcs=Arcs.of(sorted(assign), options, fit),
        dept={pid: prep.by_id[pid].department for pid in assign},
        mentor_dept={s: prep.by_id[mentor_ids[s[0]]].department for s in open_slots},
        apart=frozenset(frozenset(pair) for pair in apart_pairs(prep, sorted(assign))),
        size_min=prep.policy.group_members_min,
        size_max=prep.policy.group_members_max,
        max_same_department=prep.policy.max_same_department,
        frozen=frozenset(locked),
    )
    better = improve(problem, deadline=deadline)
    if problem.total(better) <= problem.total(assign):
        return None
    start = list(values)
    for pid, slot in assign.items():
        start[fm.x_of[pid][slot].index] = 0
    for pid, slot in better.items():
        start[fm.x_of[pid][slot].index] = 1
    levels.start_from(start)
    return start, problem.total(better)
