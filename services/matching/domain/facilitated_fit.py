"""Facilitated groups (one mentor per group), fit: mentees reassigned between open groups.

The placed set, and which mentor leads how many groups, come from the levels above fit (the solver's
or the greedy's); here only who sits in which group changes (``fit_polish``), plus extra groups a
fit-optimal flow wants within the same max load ratio (``flow_open``). Placed, the lottery and the
max load ratio keep their values; mentors used can only grow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from services.matching.domain.common import Prepared, apart_pairs
from services.matching.domain.facilitated_model import FacilitatedModel
from services.matching.domain.facilitated_prep import Eligibility, top_arcs
from services.matching.domain.fit_polish import POLISH_ROUNDS, improve
from services.matching.domain.flow_open import extra_groups
from services.matching.domain.levels import Levels
from services.matching.domain.reassignment import Arcs, Reassignment
from services.matching.domain.rules import IntArray

OPEN_OPTIONS = 60
"""Each mentee's options: the open groups of this many of its best-fitting eligible mentors among
those who lead one. 20 left 1.1 % of fit on the capacity-bound pool of 20,000, 40 0.3 %, and 0.6 % at
50,000 (against a bound over 200 arcs per mentee)."""
POLISH_MOVES = 10_000
"""Large pools: the local search gets POLISH_MOVES / mentees rounds (a deterministic amount of work:
30 rounds took 9 s at 5,000 mentees on the tight benchmark pool)."""


def extra_groups_within_ratio(
    prep: Prepared, el: Eligibility, placed: list[str], count: Mapping[int, int], mentor_ids: list[str]
) -> dict[int, int]:
    """Groups worth opening beyond the greedy's (``flow_open``), within the greedy's max load ratio."""
    cap = np.array([prep.capacity[m] for m in mentor_ids], dtype=np.int64)
    load = np.array([prep.load[m] for m in mentor_ids], dtype=np.int64)
    groups = np.array([count.get(k, 0) for k in range(len(mentor_ids))], dtype=np.int64)
    loads = [
        (prep.load[m] + count.get(mpos, 0)) / c for mpos, m in enumerate(mentor_ids) if (c := prep.capacity[m]) > 0
    ]
    loads += [prep.load[m] / c for m, c in prep.capacity.items() if c > 0]
    ratio = max(loads, default=0.0)
    allowed = np.clip(np.minimum(el.free, np.floor(ratio * cap + 1e-9).astype(np.int64) - load), 0, None)
    pol = prep.policy
    dept = {pid: prep.by_id[pid].department for pid in placed}
    mentor_dept = [prep.by_id[m].department for m in mentor_ids]
    sizes = (pol.group_members_min, pol.group_members_max)
    return extra_groups(el, placed, groups, allowed, sizes, (dept, mentor_dept, pol.max_same_department))


def _open_arcs(
    el: Eligibility, assign: Mapping[str, tuple[int, int]], slots: list[tuple[int, int]], leads: IntArray
) -> Arcs:
    """Each placed mentee's options, as arrays sorted by mentee then group: its own group and every open
    group of its OPEN_OPTIONS best-fitting eligible mentors among ``leads`` (those who lead one)."""
    people = sorted(assign)
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
    own = np.array([slot_index[assign[pid]] for pid in people], dtype=np.int64)
    keys = np.sort(np.concatenate([np.repeat(who, reps) * width + where, np.arange(len(people)) * width + own]))
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys  # np.unique's hash: 1 s
    who, where = keys // width, keys % width
    rows = np.array([el.row[pid] for pid in people], dtype=np.int64)
    fit = el.fit[rows[who], slot_mentor[where]].astype(np.int64)
    return Arcs(people, slots, who, where, fit)


def polish_groups(
    prep: Prepared,
    greedy: list[tuple[list[int], list[str]]],
    el: Eligibility,
    mentor_ids: list[str],
    frozen: frozenset[str] = frozenset(),
    deadline: float | None = None,
    flow_only: bool = False,
) -> list[tuple[list[str], list[str]]]:
    """The greedy's groups (one mentor each) with their mentees reassigned between them for a better fit
    (``fit_polish``: every rule kept, the same open groups, so the same placed set and mentor loads).
    Each mentee may move to the open groups of its OPEN_OPTIONS best-fitting eligible mentors among those
    who lead one (not its best mentors overall, most of whom may lead none)."""
    assign: dict[str, tuple[int, int]] = {}
    slot_of_group: list[tuple[int, int]] = []
    count: dict[int, int] = defaultdict(int)
    for ms, members in greedy:
        slot = (ms[0], count[ms[0]])
        count[ms[0]] += 1
        slot_of_group.append(slot)
        for pid in members:
            assign[pid] = slot
    extra: list[tuple[int, int]] = []
    for k, more in extra_groups_within_ratio(prep, el, sorted(assign), count, mentor_ids).items():
        extra += [(k, count[k] + s) for s in range(more)]
    slot_of_group += extra
    open_by_mentor: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for slot in slot_of_group:
        open_by_mentor[slot[0]].append(slot)
    leads = np.array(sorted(open_by_mentor), dtype=np.int64)
    # no local search above POLISH_MOVES mentees: after the exact flow it found nothing at 20,000 (3 s a round)
    # ``flow_only``: the exact flow without the local search (after a few groups changed mentor, the
    # rounds cost 2 s at 5,000 mentees for little: ``facilitated_fill``)
    rounds = 0 if flow_only else min(POLISH_ROUNDS, POLISH_MOVES // max(1, len(assign)))
    problem = Reassignment(
        assign=assign,
        arcs=_open_arcs(el, assign, sorted(slot_of_group), leads),
        dept={pid: prep.by_id[pid].department for pid in assign},
        mentor_dept={s: prep.by_id[mentor_ids[s[0]]].department for s in slot_of_group},
        apart=frozenset(frozenset(pair) for pair in apart_pairs(prep, sorted(assign))),
        size_min=prep.policy.group_members_min,
        size_max=prep.policy.group_members_max,
        max_same_department=prep.policy.max_same_department,
        frozen=frozen,
        extra=frozenset(extra),
        may_join=lambda pid, s: int(el.fit[el.row[pid], s[0]]) if el.eligible[el.row[pid], s[0]] else None,
    )
    better = improve(problem, rounds=rounds, deadline=deadline)
    if problem.total(better) <= problem.total(assign):
        better = assign
    members_of: dict[tuple[int, int], list[str]] = defaultdict(list)
    for pid, slot in sorted(better.items()):
        members_of[slot].append(pid)
    return [([mentor_ids[slot[0]]], members_of[slot]) for slot in slot_of_group if members_of[slot]]


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
