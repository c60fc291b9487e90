"""Facilitated groups: what every path of a run reads (``FacilitatedRun``), its clock, and its result.

The preparation (``facilitated._prepare``) makes a ``FacilitatedRun``; the reassigned greedy and the
CP-SAT levels (``facilitated_levels``) read it and end in ``run_result``: the groups, and a true reason
for each seeker left out (lost the lottery: placed people drawn ahead shared one of its eligible mentors
with room; or no valid group could be formed with them).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from services.matching.domain.common import NamedGroup, Prepared, make_group
from services.matching.domain.facilitated_bound import Routing
from services.matching.domain.facilitated_fill import finish
from services.matching.domain.facilitated_prep import Eligibility, room_counts, sharing_matrix
from services.matching.domain.facilitated_repair import MentorGroup
from services.matching.domain.group_result import Outcome, group_result, unplaced_seekers
from services.matching.domain.levels import CombinedLevels, Levels, run_deadline
from services.matching.domain.model import MatchingResult
from services.matching.domain.rules import BoolArray, IntArray

POLISH_SLACK = 0.07
"""The fit reassignment of the standing solution may start up to this share of the limit after the
solves' deadline (85 % + 7 %): the rest is for building and validating the result."""


@dataclass
class FacilitatedRun:
    """The preparation's products, which every path reads."""

    prep: Prepared
    time_limit: float
    el: Eligibility
    active: list[str]
    """Seekers with an eligible mentor with room (``Eligibility.active``, read once, as the next two)."""
    eligible_of: dict[str, BoolArray]
    fit_of: dict[str, IntArray]
    free: IntArray
    """Groups each mentor may still lead (by mentor position)."""
    mpos: dict[str, int]
    """Mentor id -> position."""
    seekers: list[str]
    exact: bool
    """Every eligible mentor is a candidate: the model's bounds hold on the full problem."""
    flows_only: bool
    """No candidates are listed: the model would be too large whatever the limit."""
    search: bool
    """CP-SAT searches mentors used and fit (small pools, co-facilitators)."""
    greedy: list[MentorGroup]
    """The greedy's groups, with chains that place more and (one mentor per group) fit reassigned."""
    flow_bound: int
    """The proven placement bound (or the counting bound, noted)."""
    routing: Routing | None
    """The placement bound's relaxation, for the lottery walk (one mentor per group)."""
    polished: bool
    """The greedy's fit was reassigned (one mentor per group, and in time)."""
    candidates: dict[str, list[tuple[int, int]]]
    """Each seeker's candidate mentors with their fit (empty when ``flows_only``)."""
    co_options: dict[int, list[int]]
    mentor_apart: set[tuple[int, int]]
    notes: list[str]
    """The result's notes, in the order the run adds them."""

    @property
    def co_count(self) -> int:
        return self.prep.policy.mentors_per_group - 1

    @functools.cached_property
    def room(self) -> dict[str, int]:
        """Each seeker with an eligible mentor with room, and how many it has."""
        return dict(zip(self.active, room_counts(self.el, self.active).tolist(), strict=True))

    @functools.cached_property
    def dept_of(self) -> dict[str, str]:
        return {pid: self.prep.by_id[pid].department for pid in self.seekers}

    @functools.cached_property
    def mentor_dept(self) -> list[str]:
        return [self.prep.by_id[m].department for m in self.prep.mentor_ids]

    def greedy_by_id(self) -> list[NamedGroup]:
        return [([self.prep.mentor_ids[k] for k in ms], members) for ms, members in self.greedy]

    def polish_deadline(self) -> float:
        return polish_deadline(self.prep, self.time_limit)


def polish_deadline(prep: Prepared, time_limit: float) -> float:
    """The fit reassignment stops here (wall clock): the rest of the limit builds and checks the result."""
    return run_deadline(prep.started, time_limit) + time_limit * POLISH_SLACK


def run_result(
    run: FacilitatedRun,
    chosen_groups: list[NamedGroup],
    levels: Levels | CombinedLevels | None,
    *,
    placed_bound: int,
    proven_lottery: bool = True,
    exact: bool = True,
    fallback: bool = False,
    why_greedy: str | None = None,
) -> MatchingResult:
    """The run's groups, each seeker left out with its reason, and the levels' statistics."""
    prep, pol, el, room = run.prep, run.prep.policy, run.el, run.room
    prep.stage_done("the solver's groups", chosen_groups, placed_bound)
    # the fill, fair load's takeovers and the lottery pass, on every path (``facilitated_fill``)
    finished = finish(prep, el, run.free, chosen_groups, placed_bound, run.polish_deadline(), run.time_limit)
    chosen_groups = finished.groups
    prep.stage_done("the finished groups", chosen_groups, placed_bound)
    note = finished.note()
    if note:
        run.notes.append(note)
    prep.locks_applied = count_locks(prep, chosen_groups)
    groups = [make_group(prep, ms, members) for ms, members in chosen_groups]
    placed_ids = {pid for _, members in chosen_groups for pid in members}

    with_room = sorted(p for p in placed_ids if p in room)
    left = sorted(p for p in room if p not in placed_ids)
    shared = sharing_matrix(el, with_room, left)
    column = {p: c for c, p in enumerate(left)}

    placed_rank = np.array([prep.ranks[p] for p in with_room], dtype=np.int64)

    def ahead_of(pid: str) -> int:
        """Placed people drawn ahead of ``pid`` who shared an eligible mentor with room with it."""
        if pid not in column:
            return 0
        return int((shared[:, column[pid]] & (placed_rank < prep.ranks[pid])).sum())

    def shares_a_mentor(pid: str) -> Callable[[str], bool]:
        """The placed people who had an eligible mentor with room in common with ``pid``."""
        if pid not in column:
            return set[str]().__contains__
        return {with_room[int(r)] for r in np.flatnonzero(shared[:, column[pid]])}.__contains__

    def no_group(pid: str) -> str:
        return (
            f"no group of {pol.group_members_min}-{pol.group_members_max} compatible members could be formed "
            f"with its {room[pid]} eligible mentors with room (reporting lines, conflicts, "
            f"department bound or too few eligible people); nobody drawn ahead took its place"
        )

    gone = unplaced_seekers(
        prep, run.seekers, placed_ids, el.reasons, shares_a_mentor,
        "placed people who shared an eligible mentor with room", no_group, ahead_of,
    )  # fmt: skip
    outcome = Outcome(
        groups, gone, levels, placed_bound=placed_bound, proven_lottery=proven_lottery, exact=exact,
        fallback=fallback, notes=run.notes, why_greedy=why_greedy, locks_counted=True,
    )  # fmt: skip
    return group_result(prep, outcome)


def count_locks(prep: Prepared, chosen_groups: list[NamedGroup]) -> int:
    """The locks that hold in the final groups, whatever path made them: a mentor and a mentee in one
    group; two mentees in one group, or neither placed. Each other lock gets a note (once) saying why
    it is not applied, and is not counted."""
    where: dict[str, set[int]] = defaultdict(set)  # a mentor may lead several groups
    for g, (ms, members) in enumerate(chosen_groups):
        for pid in [*ms, *members]:
            where[pid].add(g)
    mentors = set(prep.mentor_ids)
    held = 0
    for a, b in prep.locked:
        if a in mentors and b in mentors:
            continue  # noted where the model is built: a lock between two mentors is never applied
        if where.get(a, set()) & where.get(b, set()) or (a not in where and b not in where and not {a, b} & mentors):
            held += 1
            continue
        if any(note.startswith((f"lock {a}/{b} ", f"lock {b}/{a} ")) for note in prep.notes):
            continue
        mentee = b if a in mentors else a
        why = (
            "the mentee is not placed" if mentee not in where
            else "no group within every rule held both: the lottery placed them apart"
        )  # fmt: skip
        prep.notes.append(f"lock {a}/{b} not applied: {why}")
    return held
