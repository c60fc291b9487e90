"""Facilitated groups, the CP-SAT levels per component: placed, the lottery, the max load ratio, then
mentors used and fit either searched (``levels_searched``: small pools, co-facilitators) or kept from the
standing solution (``levels_kept``: from SEARCH_MENTEES_MAX mentees, one mentor per group, where the fit
reassignment flows do better and every stop of the run is a count).

Level 1 runs in every component before any other level: if the clock stops the run, every component
has its most-placed solution or, failing that, its share of the greedy's groups.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from ortools.sat.python import cp_model

from services.matching.domain.common import NamedGroup, Prepared, Progress, apart_pairs
from services.matching.domain.components import component_runs, facilitated_components
from services.matching.domain.facilitated_bound import Routing
from services.matching.domain.facilitated_fit import fit_start, polish_groups
from services.matching.domain.facilitated_model import (
    FacilitatedModel,
    add_apart,
    add_assignment,
    add_co_eligibility,
    add_co_facilitators,
    add_department_bound,
    add_group_size,
    add_load_slots,
    add_locks,
    add_slots,
    hint_from_greedy,
)
from services.matching.domain.facilitated_placed import add_placed_cuts, placed_by_hint
from services.matching.domain.facilitated_repair import MentorGroup
from services.matching.domain.facilitated_run import FacilitatedRun, run_result
from services.matching.domain.group_result import proven_most, quota_of
from services.matching.domain.levels import CombinedLevels, LevelOutcome, Levels, lottery_level
from services.matching.domain.load_levels import idle_under_shared_ratio, load_terms, min_max_ratio, settle_ratio
from services.matching.domain.model import MatchingResult

SEARCH_MENTEES_MAX = 500
"""One mentor per group: from this many mentees with somewhere to go, CP-SAT does not search the levels
below the max load ratio (mentors used, fit); the run keeps the levels CP-SAT or a flow proves cheaply
(placed, when the greedy with its chains meets the max-flow bound; the lottery walk; the max load
ratio) and takes fit from the reassignment flows, which do better here: at 1,000 mentees the two
searches cost 2-3 s of CPU (presolve and a first batch of LP workers each) for +1 mentor used per
component and +6 fit, ran into the 3 s limit's wall clock and so depended on the machine's load, while
the flows alone reach 9,207 of a 9,207 bound (capacity) and 7,998 of 8,032 (tight) in about 1 s.
A deterministic rule on the input, never on the clock; small pools (and every test's) are searched."""
Solved = tuple[Levels, FacilitatedModel, int]
"""A component whose level 1 found a solution: its levels, its model, how many it places."""
Top = tuple[Levels, cp_model.IntVar, cp_model.LinearExprT, bool]
"""A component's max load ratio variable, mentors-used expression, and whether its ratio level found one."""


@dataclass
class Components:
    """Each independent component's model and levels, after level 1 (placed)."""

    built: list[FacilitatedModel]
    runs: list[Levels]
    firsts: list[LevelOutcome]
    quotas: list[int | None]
    """How many each component's level 1 placed (None: no solution, its groups are the greedy's)."""

    @property
    def solved(self) -> list[Solved]:
        parts = zip(self.runs, self.built, self.quotas, strict=True)
        return [(levels, fm, q) for levels, fm, q in parts if q is not None]


def _note_mentor_locks(prep: Prepared) -> None:
    """Locks of two mentors are not applied (a group has one lead): noted once, not per component."""
    mentors = set(prep.mentor_ids)
    for a, b in prep.locked:
        if a in mentors and b in mentors:
            prep.notes.append(f"lock {a}/{b} not applied: two mentors; lock a mentor with a mentee instead")


def _build(run: FacilitatedRun, part: list[str]) -> FacilitatedModel:
    """The CP-SAT model of one component (every seeker when there is one): one call per rule."""
    prep, pol, co_count, candidates = run.prep, run.prep.policy, run.co_count, run.candidates
    in_part = set(part)
    fm = FacilitatedModel()
    demand: dict[int, int] = defaultdict(int)
    for pid in part:
        for k, _ in candidates[pid]:
            demand[k] += 1
    add_slots(fm, demand, run.free, pol.group_members_min, lambda k: len(run.co_options.get(k, [])) >= co_count)
    if co_count:
        add_co_facilitators(fm, run.co_options, co_count, run.mentor_apart)
    add_assignment(fm, {pid: candidates[pid] for pid in part})
    add_group_size(fm, pol.group_members_min, pol.group_members_max)
    if co_count:
        add_co_eligibility(fm, run.eligible_of, run.fit_of)
    if pol.max_same_department is not None:
        add_department_bound(fm, pol.max_same_department, run.dept_of, run.mentor_dept)
    add_apart(fm, apart_pairs(prep, part))
    # another component's lock is its own; two mentors' locks are noted once (``_note_mentor_locks``)
    applied, lock_notes = add_locks(fm, [(a, b) for a, b in prep.locked if a in in_part or b in in_part], run.mpos)
    prep.locks_applied += applied
    prep.notes.extend(lock_notes)
    add_load_slots(fm, run.free, prep.mentor_ids, bool(co_count))
    hint_from_greedy(fm, [(ms, members) for ms, members in run.greedy if members[0] in in_part])
    return fm


def placed_levels(run: FacilitatedRun, progress: Progress) -> Components:
    """Level 1 (placed) in every component before any other level: if the clock stops the run, every
    component has its most-placed solution or, failing that, its share of the greedy's groups."""
    prep = run.prep
    _note_mentor_locks(prep)
    parts = facilitated_components(prep, run.seekers, run.candidates, run.co_options, prep.mentor_ids)
    if len(parts) <= 1:
        parts = [run.seekers]
    built = [_build(run, part) for part in parts]
    hinted = add_placed_cuts(built, parts, run.greedy, run.flow_bound)
    hint_meets_bound = sum(hinted) >= run.flow_bound
    runs = component_runs(prep, progress, run.time_limit, [len(part) for part in parts], [fm.model for fm in built])
    for levels, fm in zip(runs, built, strict=True):
        levels.hint(fm.hint)
        levels.adopt_hint()
    firsts = [
        placed_by_hint(levels, fm, count, hint_meets_bound)
        for levels, fm, count in zip(runs, built, hinted, strict=True)
    ]
    quotas = [quota_of(levels, total, fm.placed) for levels, fm, total in zip(runs, built, firsts, strict=True)]
    return Components(built, runs, firsts, quotas)


def lottery_levels(run: FacilitatedRun, solved: list[Solved]) -> bool:
    """The lottery walk in each component; whether every walk was proven."""
    proven = True
    for levels, fm, quota in solved:
        by_lottery = sorted((p for p in fm.placed if fm.x_of[p]), key=lambda p: run.prep.ranks[p])  # with a place to go
        rule_out = _rule_out(levels, fm, run.routing)
        _, part_proven = lottery_level(levels, fm.placed, by_lottery, quota, rule_out=rule_out)
        proven = proven and part_proven
    return proven


def max_load_ratio(run: FacilitatedRun, solved: list[Solved]) -> tuple[list[Top], list[int]]:
    """Each component's least max load ratio, and the mentors used in its solution then (the standing
    solution's count, kept when CP-SAT does not search mentors used)."""
    tops: list[Top] = []
    standing: list[int] = []
    for levels, fm, _ in solved:
        load = load_terms(levels.model, run.prep, fm.opened)
        if load is not None:
            top, used = load
            found = min_max_ratio(levels, run.prep, fm, run.prep.mentor_ids, top).found
            tops.append((levels, top, used, found))
            standing.append(sum(levels.value(ys[0]) for ys in fm.opened.values() if ys))
    return tops, standing


def levels_searched(run: FacilitatedRun, solved: list[Solved], tops: list[Top]) -> None:
    """Mentors used and fit searched by CP-SAT in each component, fit started (one mentor per group)
    from the load levels' solution with its mentees reassigned (``fit_start``)."""
    prep = run.prep
    idle_under_shared_ratio(tops, None)
    for levels, fm, _ in solved:
        # the reassignment runs even when the clock has stopped the solver (then it improves the stage that
        # stands: deterministic given that stage), unless the limit itself is about to pass
        stop = run.polish_deadline()
        in_time = time.perf_counter() < stop
        start = fit_start(prep, levels, fm, run.fit_of, prep.mentor_ids, stop) if not run.co_count and in_time else None
        outcome = levels.optimise("fit", sum(fm.fit_terms), maximize=True)
        if start is not None and outcome.found and outcome.value < start[1]:  # the solver lost the hint
            levels.start_from(start[0])
            outcome.value = float(start[1])
        settle_ratio(levels, prep, fm.opened)


def levels_kept(run: FacilitatedRun, solved: list[Solved], tops: list[Top], standing: list[int]) -> None:
    """Mentors used and fit kept from each component's standing solution (the reassigned greedy's
    groups, as level 1 kept them): the fit reassignment after the levels is the fit search."""
    idle_under_shared_ratio(tops, standing)
    run.notes.append(
        f"from {SEARCH_MENTEES_MAX:,} mentees CP-SAT does not search mentors used and fit: mentors used is "
        "the standing solution's (not proven the most), fit comes from reassigning mentees between open "
        "groups (flows and moves, a fixed amount of work)"
    )
    for levels, fm, _ in solved:
        settle_ratio(levels, run.prep, fm.opened)


def levels_result(run: FacilitatedRun, components: Components, proven: bool) -> MatchingResult:
    """The components' groups (the greedy's where a component found nothing), fit reassigned once more
    (``_reassign_chosen``), with the bounds the levels proved."""
    mentor_ids, notes, solved = run.prep.mentor_ids, run.notes, components.solved
    chosen_groups = _solved_groups(mentor_ids, solved)
    quotas = zip(components.built, components.quotas, strict=True)
    unsolved = {pid for fm, quota in quotas if quota is None for pid in fm.placed}
    if unsolved:
        chosen_groups += [([mentor_ids[k] for k in ms], g) for ms, g in run.greedy if g[0] in unsolved]
        notes.append(
            f"{len(components.runs) - len(solved)} of {len(components.runs)} components got no solution before "
            "the clock stopped the solver: their groups are the greedy's (lottery order, every rule)"
        )
        proven = False
    chosen_groups = _reassign_chosen(run, chosen_groups)
    bound = run.flow_bound
    if run.exact and not unsolved:
        bound = min(bound, sum(proven_most(t, run.flow_bound) for t in components.firsts))
    kept = [levels for levels, _, _ in solved]
    combined: Levels | CombinedLevels = kept[0] if len(kept) == 1 else CombinedLevels(kept)
    if len(components.runs) > 1:
        notes.append(f"solved as {len(components.runs)} independent components of the candidate graph (exact)")
    exact = run.exact and not unsolved
    return run_result(run, chosen_groups, combined, placed_bound=bound, proven_lottery=proven, exact=exact)


def _solved_groups(mentor_ids: list[str], solved: list[Solved]) -> list[NamedGroup]:
    """The groups of each component's standing solution (its open slots with members), by ids."""
    out: list[NamedGroup] = []
    for levels, fm, _ in solved:
        for (k, slot), members in sorted(fm.members_of.items()):
            chosen = [pid for pid, v in members if levels.value(v)]
            if chosen:
                co_ids = [mentor_ids[j] for j, c in fm.co.get((k, slot), []) if levels.value(c)]
                out.append(([mentor_ids[k], *co_ids], chosen))
    return out


def _reassign_chosen(run: FacilitatedRun, chosen_groups: list[NamedGroup]) -> list[NamedGroup]:
    """One mentor per group, in time: the same placed set and open groups, fit over every eligible open
    group (``polish_groups``). Not when the levels kept the reassigned greedy's groups (no search below
    the load ratio, or none that moved anyone): a second pass finds nothing (0.3-0.5 s of CPU at 1,000)."""
    prep, stop = run.prep, run.polish_deadline()
    in_time = time.perf_counter() < stop
    positions = [([run.mpos[m] for m in ms], members) for ms, members in chosen_groups]
    unchanged = run.polished and _same_groups(positions, run.greedy)
    if run.co_count or not in_time or unchanged:
        return chosen_groups
    locked = frozenset(p for pair in prep.locked for p in pair)
    return polish_groups(prep, positions, run.el, prep.mentor_ids, locked, stop)


def _rule_out(levels: Levels, fm: FacilitatedModel, routing: Routing | None) -> Callable[[list[str], str], bool] | None:
    """The lottery walk's test: ``person`` cannot be routed together with the people taken so far, each
    at its lead in the walk's current solution (which places them all, so it is a valid routing)."""
    if routing is None:
        return None

    def rule_out(taken: list[str], person: str) -> bool:
        values = levels.values
        if values is None:
            return False
        wanted = set(taken)
        lead = {pid: k for (pid, k, _), v in fm.x.items() if pid in wanted and values[v.index]}
        return len(lead) == len(wanted) and routing.excludes(lead, person)

    return rule_out


def _same_groups(a: list[MentorGroup], b: list[MentorGroup]) -> bool:
    """The same groups (mentors, members), in any order."""

    def key(groups: list[MentorGroup]) -> set[tuple[tuple[int, ...], frozenset[str]]]:
        return {(tuple(ms), frozenset(members)) for ms, members in groups}

    return len(a) == len(b) and key(a) == key(b)
