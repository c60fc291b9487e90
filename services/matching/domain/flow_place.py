"""Facilitated groups (one mentor per group): people left out placed by a flow, in groups opened for them.

The fill (``facilitated_fill``) places a person left out in a group as it stands, or opens a group with
an idle mentor and gathers its minimum from others left out; neither moves anyone already placed. Where
the department bound binds, that is not enough. On the probe pool ``fac conflicts0.5 dept1 s17 1000``
(at most one of a department per group, 279 mentees of Marketing and 269 of Legal, groups of 3 to 8)
every group an eligible mentor leads already holds someone of the left-out person's department, so the
fill placed 957 of 1,000 while an exact MILP places all 1,000: each left-out person needs a new group,
and its minimum of three must take people of other departments from groups that are mostly at their
minimum themselves, which only a simultaneous reassignment finds.

Here one min-cost flow (``fit_polish``: every open group between its minimum and maximum, the
department bound through (group, department) nodes) takes everyone placed, who must stay placed, and
everyone left out, who is placed where the flow can (more placed first, then the earlier drawn, then
fit), into the open groups plus one new group for each of several mentors with room. A new group must
reach its minimum, so how many to open is tried: as many as the people fill at the minimum, then half
of that, down to none; the trial placing most (then fitter) is kept. Pairs kept apart are repaired as
in the fit reassignment (moves, else the arc is banned and the flow solved again).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np

from services.matching.domain.common import NamedGroup, Prepared
from services.matching.domain.facilitated_fit import numbered, reassignment_of
from services.matching.domain.facilitated_prep import Eligibility
from services.matching.domain.fit_polish import flow_repaired, short_extras
from services.matching.domain.reassignment import Reassignment, Slot
from services.matching.domain.rules import IntArray

SHORT_ROUNDS = 8
"""Flows that look for the new groups people can fill (``_fillable``)."""
PLACE_REPAIRS = 8
"""Flows each trial may take to repair pairs kept apart (as ``facilitated_fit.FLOW_CHOSEN_REPAIRS``)."""


def placed_by_flow(
    prep: Prepared,
    el: Eligibility,
    free: IntArray,
    groups: list[tuple[list[int], list[str]]],
    left: list[str],
    frozen: frozenset[str],
    bound: int,
    deadline: float | None = None,
) -> list[NamedGroup] | None:
    """``groups`` (one mentor each, by position) with people of ``left`` (in lottery order) placed by the
    flow, everyone placed kept; None when no trial places more. ``bound``: the proven placement bound
    (no further trial once it is met); ``deadline``: the wall-clock safety net."""
    mentor_ids = prep.mentor_ids
    assign, order, count = numbered(groups)
    optional = tuple(pid for pid in left if pid not in assign)
    if not optional:
        return None
    new = _new_groups(prep, el, free, count, optional)
    best: dict[str, Slot] | None = None
    best_key = (len(assign), 0)
    size_min, size_max = prep.policy.group_members_min, prep.policy.group_members_max
    wasteful = _wasteful(prep, order, assign, frozen, optional)
    base = reassignment_of(prep, el, mentor_ids, assign, order + new, frozen, [], optional)
    for closing in (frozenset(), wasteful) if wasteful else (frozenset(),):
        state = _State(base, closing)
        fill = (len(assign) + len(optional)) // max(1, size_min) - len(order) + len(closing)
        extra = _fillable(state, new, fill, deadline)
        if (len(order) - len(closing) + len(extra)) * size_max <= len(assign):
            continue  # no room for anyone more (groups of exactly four, all full)
        problem = state.problem(extra)
        got = flow_repaired(problem, deadline, PLACE_REPAIRS)
        if got is not None and (len(got), problem.total(got)) > best_key:
            best, best_key = got, (len(got), problem.total(got))
        if best_key[0] >= bound:
            break
    if best is None:
        return None
    members_of: dict[Slot, list[str]] = defaultdict(list)
    for pid, slot in sorted(best.items()):
        members_of[slot].append(pid)
    slots = order + sorted(set(members_of) - set(order))
    return [([mentor_ids[s[0]]], members_of[s]) for s in slots if members_of[s]]


@dataclass(frozen=True)
class _State:
    """The reassignment over the groups as they stand and every candidate new group (built once: its
    options are arrays over 300,000 arcs at 5,000 mentees), and which groups the flow may leave empty."""

    base: Reassignment
    closing: frozenset[Slot]

    def problem(self, extra: list[Slot]) -> Reassignment:
        return replace(self.base, extra=frozenset(extra), closing=self.closing)


def _wasteful(
    prep: Prepared, order: list[Slot], assign: dict[str, Slot], frozen: frozenset[str], optional: tuple[str, ...]
) -> frozenset[Slot]:
    """Groups whose mentor is of the department of someone left out, where a department bound binds:
    such a group holds one fewer of that department (none, at a bound of one). Groups with someone
    locked in them stay."""
    if prep.policy.max_same_department is None:
        return frozenset()
    short = {prep.by_id[pid].department for pid in optional}
    held = {assign[pid] for pid in frozen if pid in assign}
    return frozenset(s for s in order if prep.by_id[prep.mentor_ids[s[0]]].department in short and s not in held)


def _new_groups(
    prep: Prepared, el: Eligibility, free: IntArray, count: dict[int, int], optional: tuple[str, ...]
) -> list[Slot]:
    """One new group for each mentor with room who may take someone left out (eligible, and the
    department bound leaves that person's department room beside the mentor): idle mentors first (fair
    load), then those who may take more of them, then the mentor's position (deterministic)."""
    rows = np.array([el.row[pid] for pid in optional], dtype=np.int64)
    may = el.eligible[rows]
    limit = prep.policy.max_same_department
    if limit is not None and limit <= 1:
        mentor_dept = np.array([prep.by_id[m].department for m in prep.mentor_ids])
        person_dept = np.array([prep.by_id[pid].department for pid in optional])
        may = may & (person_dept[:, None] != mentor_dept[None, :])
    reach = may.sum(axis=0)
    groups = np.array([count.get(k, 0) for k in range(len(free))], dtype=np.int64)
    room = np.flatnonzero((reach > 0) & (groups < free)).tolist()
    room.sort(key=lambda k: (int(groups[k]), -int(reach[k]), k))
    return [(k, int(groups[k])) for k in room]


def _fillable(state: _State, new: list[Slot], fill: int, deadline: float | None) -> list[Slot]:
    """Of the ``new`` groups, the first ``fill`` the flow can fill to their minimum: those it cannot
    (``short_extras``) give way to the next of ``new`` while fewer are short each round (at most
    SHORT_ROUNDS), then are given up."""
    tried, waiting = new[: max(0, fill)], new[max(0, fill) :]
    before = len(tried) + 1
    for round_ in range(SHORT_ROUNDS):
        if not tried or (deadline is not None and time.perf_counter() > deadline):
            break
        short = short_extras(state.problem(tried))
        if short is None:
            return []
        tried = [s for s in tried if s not in short]
        if not short or len(short) >= before or round_ == SHORT_ROUNDS - 1:
            break
        before = len(short)
        tried, waiting = tried + waiting[: len(short)], waiting[len(short) :]
    return tried
