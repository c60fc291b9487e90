"""Facilitated groups: a lead mentor's numbered slots (groups), mentees and optional co-facilitators.

Preparation (eligibility, reasons, candidates, the placement bound, the greedy), then either the
CP-SAT levels per component or, when the model is too large for the time limit, the greedy's groups
with their fit reassigned. From SEARCH_MENTEES_MAX mentees (one mentor per group) the levels below the
max load ratio are not searched: every stop of such a run is a count, the clock only a safety net.
Every mentor of a group must be eligible for every member.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping

import numpy as np
from ortools.sat.python import cp_model

from services.matching.domain.common import (
    Prepared,
    Progress,
    apart_pairs,
    make_group,
)
from services.matching.domain.components import component_runs, facilitated_components
from services.matching.domain.facilitated_bound import (
    MAX_PATHS,
    Departments,
    PlacementBound,
    Routing,
    placement_bound,
)
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
from services.matching.domain.facilitated_prep import (
    Eligibility,
    best_mentors,
    eligibility,
    remember_best,
    room_counts,
    sharing_matrix,
    slots_reachable,
)
from services.matching.domain.facilitated_repair import place_more
from services.matching.domain.group_greedy import greedy_facilitated
from services.matching.domain.group_result import Outcome, group_result, proven_most, quota_of, unplaced_seekers
from services.matching.domain.levels import (
    CombinedLevels,
    Levels,
    lottery_level,
    run_deadline,
)
from services.matching.domain.load_levels import idle_under_shared_ratio, load_terms, min_max_ratio, settle_ratio
from services.matching.domain.model import MatchingResult
from services.matching.domain.rules import (
    IntArray,
    PairRules,
    Pool,
)

TOP_MENTORS = 8
TOP_CO_MENTORS = 6
ALL_CO_MENTORS_UP_TO = 12
"""Pools with this few mentors consider every mentor as a co-facilitator: exact on small pools."""
FULL_MODEL_LIMIT = 20_000
"""Facilitated groups: while (mentee, eligible mentor slot) variables stay below this, every eligible
mentor is a candidate (the model is exact); above it each mentee keeps its best few, plus the arcs of a
lottery-ordered max flow on the full graph and of the greedy solution."""


def _co_mentor_candidates(
    prep: Prepared, candidates: dict[str, list[tuple[int, int]]], free: IntArray, mentor_apart: set[tuple[int, int]]
) -> dict[int, list[int]]:
    """For each lead mentor, the mentors who may co-facilitate its groups: free, not apart from the
    lead, ranked by how many of the lead's candidate mentees they could also serve (then lottery)."""
    shared: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for cands in candidates.values():
        ks = [k for k, _ in cands]
        for a in ks:
            for b in ks:
                if a != b:
                    shared[a][b] += 1
    everyone = len(prep.mentors) <= ALL_CO_MENTORS_UP_TO
    out: dict[int, list[int]] = {}
    for lead in range(len(prep.mentors)):
        pool = range(len(prep.mentors)) if everyone else shared[lead].keys()
        options = [j for j in pool if j != lead and free[j] > 0 and (min(lead, j), max(lead, j)) not in mentor_apart]
        options.sort(key=lambda j: (-shared[lead].get(j, 0), prep.ranks[prep.mentor_ids[j]]))
        out[lead] = options if everyone else options[:TOP_CO_MENTORS]
    return out


def _placement_bound(
    prep: Prepared, el: Eligibility, active: list[str], free: IntArray, greedy: list[tuple[list[int], list[str]]]
) -> PlacementBound:
    """The maximum placement with group minimums and the rules between members relaxed, on the full
    graph (``facilitated_bound``): an upper bound on the number placed. One mentor per group: a mentor
    takes free groups x group maximum, and of each department its free groups x the room the department
    bound leaves it in a group; with co-facilitators, each mentee needs a lead of its own (the bound
    stays an upper bound: every lead of a grouping is an eligible mentor with room, and its
    co-facilitators only take room)."""
    lead_of = {pid: ms[0] for ms, members in greedy for pid in members}
    greedy_mentor = np.array([lead_of.get(pid, -1) for pid in active], dtype=np.int64)
    cost = np.array([0 if pid in lead_of else 1 + prep.seeker_rank[pid] for pid in active], dtype=np.int64)
    caps = free * prep.policy.group_members_max
    plain = placement_bound(el, active, caps, cost, greedy_mentor)
    departments = _departments(prep, active, free)
    if departments is None or (plain.proven and plain.value <= len(lead_of)):
        return plain  # the greedy meets it: departments cannot lower it (0.5 s against 1.3 s at 20,000)
    return placement_bound(el, active, caps, cost, greedy_mentor, departments)


def _routing(prep: Prepared, el: Eligibility, active: list[str], free: IntArray) -> Routing:
    """The placement bound's relaxation, for ruling people out in the lottery walk."""
    departments = _departments(prep, active, free)
    codes = {} if departments is None else dict(zip(active, departments.of.tolist(), strict=True))
    return Routing(el, free * prep.policy.group_members_max, departments, codes)


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


def _departments(prep: Prepared, active: list[str], free: IntArray) -> Departments | None:
    """The department bound as (mentor, department) capacities for the placement bound, or None."""
    limit = prep.policy.max_same_department
    if limit is None or limit >= prep.policy.group_members_max + prep.policy.mentors_per_group:
        return None
    names = sorted({prep.by_id[pid].department for pid in active})
    code = {name: c for c, name in enumerate(names)}
    of = np.array([code[prep.by_id[pid].department] for pid in active], dtype=np.int64)
    own = np.array([code.get(prep.by_id[m].department, -1) for m in prep.mentor_ids], dtype=np.int64)
    room = limit - (own[:, None] == np.arange(len(names))[None, :]).astype(np.int64)
    return Departments(of, free[:, None] * np.maximum(0, room))


POLISH_SLACK = 0.07
"""The fit reassignment of the standing solution may start up to this share of the limit after the
solves' deadline (85 % + 7 %): the rest is for building and validating the result."""
MODEL_VARS_PER_SECOND = 4_000
"""Facilitated groups: the largest CP-SAT model (mentee x group-slot variables) tried, per second of the
time limit. Building the model in Python costs about 20-40 us a variable on this 2-core machine, and the
levels need the rest of the limit; above it the run returns the greedy with its fit reassigned (a
deterministic decision: it depends on the input and the limit, never on the clock). Models up to
FULL_MODEL_LIMIT variables are always tried (they build in well under a second)."""


MODEL_VARS_MAX = 30_000
"""Facilitated groups: no CP-SAT model above this many variables, whatever the limit. At 20,000 mentees
(160,000 candidate variables, 60 s) the model took its whole budget to build and solve and improved
nothing on the greedy's placement with its fit reassigned by flows; at 5,000 (40,000, 10 s) its levels
ended where the flows start (same placed, proven by the flow bound, same fit gap) after 6 s more, and on a
loaded machine the clock stopped them before any level. The flows do the large pools."""


def _better_greedy(
    options: list[list[tuple[list[int], list[str]]]], fit_of: Mapping[str, IntArray]
) -> list[tuple[list[int], list[str]]]:
    """The greedy solution that places more people, then has more fit (the first on a tie)."""

    def key(groups: list[tuple[list[int], list[str]]]) -> tuple[int, int]:
        placed = sum(len(members) for _, members in groups)
        fit = sum(int(fit_of[pid][k]) for ms, members in groups for pid in members for k in ms)
        return placed, fit

    return max(options, key=key)


SEARCH_MENTEES_MAX = 500
"""One mentor per group: from this many mentees with somewhere to go, CP-SAT does not search the levels
below the max load ratio (mentors used, fit); the run keeps the levels CP-SAT or a flow proves cheaply
(placed, when the greedy with its chains meets the max-flow bound; the lottery walk; the max load
ratio) and takes fit from the reassignment flows, which do better here: at 1,000 mentees the two
searches cost 2-3 s of CPU (presolve and a first batch of LP workers each) for +1 mentor used per
component and +6 fit, ran into the 3 s limit's wall clock and so depended on the machine's load, while
the flows alone reach 9,207 of a 9,207 bound (capacity) and 7,998 of 8,032 (tight) in about 1 s.
A deterministic rule on the input, never on the clock; small pools (and every test's) are searched."""


def _same_groups(a: list[tuple[list[int], list[str]]], b: list[tuple[list[int], list[str]]]) -> bool:
    """The same groups (mentors, members), in any order."""

    def key(groups: list[tuple[list[int], list[str]]]) -> set[tuple[tuple[int, ...], frozenset[str]]]:
        return {(tuple(ms), frozenset(members)) for ms, members in groups}

    return len(a) == len(b) and key(a) == key(b)


def _model_size(candidates: Mapping[str, list[tuple[int, int]]], free: IntArray, size_min: int) -> int:
    """The number of mentee x slot variables the facilitated model would have (before building it)."""
    demand: dict[int, int] = defaultdict(int)
    for options in candidates.values():
        for k, _ in options:
            demand[k] += 1
    slots = {k: min(int(free[k]), n // max(1, size_min)) for k, n in demand.items()}
    return sum(slots[k] for options in candidates.values() for k, _ in options)


def _past_deadline(prep: Prepared, time_limit: float) -> bool:
    """Past the run's wall-clock deadline for solving (preparation included): skip optional work."""
    return time.perf_counter() > run_deadline(prep.started, time_limit)


def _polish_deadline(prep: Prepared, time_limit: float) -> float:
    """The fit reassignment stops here (wall clock): the rest of the limit builds and checks the result."""
    return run_deadline(prep.started, time_limit) + time_limit * POLISH_SLACK


def solve_facilitated(prep: Prepared, progress: Progress, time_limit: float) -> MatchingResult:
    """Groups anchored on a lead mentor's slots; with ``mentors_per_group`` above 1, co-facilitators
    join a slot. Every mentor of a group must be eligible for every member (mentor-member rules)."""
    pol = prep.policy
    co_count = pol.mentors_per_group - 1
    pool = Pool.encode(prep.people)
    mentors = np.array(prep.mentors, dtype=np.int64)
    mentor_ids = prep.mentor_ids
    mpos = {pid: k for k, pid in enumerate(mentor_ids)}
    free = np.array([prep.free(pid) for pid in mentor_ids], dtype=np.int64)
    rules = PairRules(pool, pol, mentors)
    seekers = [prep.people[i].participant_id for i in prep.seekers]
    local_rank = np.argsort(np.argsort([prep.ranks[pid] for pid in mentor_ids], kind="stable"), kind="stable")
    el = eligibility(prep, rules, free)
    eligible_of, fit_of, reasons = el.eligible_of, el.fit_of, el.reasons
    active = el.active
    room = dict(zip(active, room_counts(el, active).tolist(), strict=True))  # eligible mentors with room
    free_slots = slots_reachable(el, active)
    exact = free_slots <= FULL_MODEL_LIMIT and (not co_count or len(mentor_ids) <= ALL_CO_MENTORS_UP_TO)
    # a pruned model of this many candidate variables would exceed MODEL_VARS_MAX: no candidates needed
    flows_only = not exact and len(active) * TOP_MENTORS > MODEL_VARS_MAX
    search = bool(co_count) or len(active) < SEARCH_MENTEES_MAX
    if not search and not flows_only:  # the reassignment's options as on the large pools (+3 fit at 1,000)
        remember_best(el)
    if exact:
        cand = {pid: {int(k) for k in np.flatnonzero(el.room(pid))} for pid in active}
    elif flows_only:
        cand = {pid: set() for pid in active}
        remember_best(el)
    else:
        cand = best_mentors(el, active, local_rank, TOP_MENTORS)
    # one greedy pass filling groups below their minimum first (placing comes first); with
    # co-facilitators a second pass for fit, while the clock allows (the time limit counts preparation
    # too). With one mentor per group the fit reassignment below does far better than that second pass.
    seeking = {pid: eligible_of[pid] for pid in active}
    passes = [greedy_facilitated(prep, seeking, fit_of, free, fill_first=True)]
    if co_count and not _past_deadline(prep, time_limit):
        passes.append(greedy_facilitated(prep, seeking, fit_of, free, fill_first=False))
    elif co_count:
        prep.notes.append("the time limit cut the preparation: one greedy pass of two")
    greedy = _better_greedy(passes, fit_of)
    greedy_placed = sum(len(g_members) for _, g_members in greedy)
    placed_cap = min(len(active), (int(free.sum()) // max(1, pol.mentors_per_group)) * pol.group_members_max)
    if greedy_placed >= placed_cap:  # the greedy meets the counting bound: no flow needed to prove it
        flow_bound = greedy_placed
    elif _past_deadline(prep, time_limit):
        flow_bound = placed_cap
        prep.notes.append(
            "placed_bound is the counting bound (min(seekers, free groups x group maximum)): the time limit cut "
            "the preparation before the max flow"
        )
    else:
        relaxed = _placement_bound(prep, el, active, free, greedy)
        flow_bound = min(relaxed.value if relaxed.proven else placed_cap, placed_cap)
        if not relaxed.proven:
            prep.notes.append(
                f"placed_bound is the counting bound (min(seekers, free groups x group maximum)): {MAX_PATHS} "
                "augmenting paths on the full eligibility graph did not reach the maximum placement"
            )
        for r in np.flatnonzero(relaxed.mentor_of >= 0).tolist():
            cand[active[r]].add(int(relaxed.mentor_of[r]))
    if not co_count and greedy_placed < flow_bound:  # chains of moves place whom the greedy left out
        if _past_deadline(prep, time_limit):
            prep.notes.append("the time limit cut the preparation before the chains that place more")
        else:
            greedy = place_more(prep, el, free, greedy, flow_bound)
    routing = None if co_count else _routing(prep, el, active, free)
    # the fit reassignment after the bound (2 s at 50,000): the proof must not wait behind 25 s of fit
    polished = not co_count and not _past_deadline(prep, time_limit)
    if polished:  # fit first on the greedy's placement: what stands if the clock stops the solver
        better = polish_groups(prep, greedy, el, mentor_ids, deadline=_polish_deadline(prep, time_limit))
        greedy = [([mpos[m] for m in ms], members) for ms, members in better]
    elif not co_count:
        prep.notes.append("the time limit cut the preparation before the fit reassignment")
    for ms, g_members in greedy:
        for pid in g_members:
            cand[pid].add(ms[0])
    candidates: dict[str, list[tuple[int, int]]] = (
        {} if flows_only else {pid: [(k, int(fit_of[pid][k])) for k in sorted(cand.get(pid, ()))] for pid in seekers}
    )

    mentor_apart = {(min(mpos[a], mpos[b]), max(mpos[a], mpos[b])) for a, b in apart_pairs(prep, mentor_ids)}
    co_options = _co_mentor_candidates(prep, candidates, free, mentor_apart) if co_count and not flows_only else {}
    for ms, _ in greedy if co_count and not flows_only else []:
        for j in ms[1:]:
            if j not in co_options[ms[0]]:
                co_options[ms[0]].append(j)

    dept_of = {pid: prep.by_id[pid].department for pid in seekers}
    mentor_dept = [prep.by_id[m].department for m in mentor_ids]

    def build(part: list[str]) -> FacilitatedModel:
        """The CP-SAT model of one component (every seeker when there is one): one call per rule."""
        in_part = set(part)
        fm = FacilitatedModel()
        demand: dict[int, int] = defaultdict(int)
        for pid in part:
            for k, _ in candidates[pid]:
                demand[k] += 1
        add_slots(fm, demand, free, pol.group_members_min, lambda k: len(co_options.get(k, [])) >= co_count)
        if co_count:
            add_co_facilitators(fm, co_options, co_count, mentor_apart)
        add_assignment(fm, {pid: candidates[pid] for pid in part})
        add_group_size(fm, pol.group_members_min, pol.group_members_max)
        if co_count:
            add_co_eligibility(fm, eligible_of, fit_of)
        if pol.max_same_department is not None:
            add_department_bound(fm, pol.max_same_department, dept_of, mentor_dept)
        add_apart(fm, apart_pairs(prep, part))
        # another component's lock is its own; two mentors' locks are noted once, below
        applied, lock_notes = add_locks(fm, [(a, b) for a, b in prep.locked if a in in_part or b in in_part], mpos)
        prep.locks_applied += applied
        prep.notes.extend(lock_notes)
        add_load_slots(fm, free, mentor_ids, bool(co_count))
        hint_from_greedy(fm, [(ms, members) for ms, members in greedy if members[0] in in_part])
        return fm

    notes: list[str] = []
    if co_count and len(mentor_ids) > ALL_CO_MENTORS_UP_TO:
        notes.append(f"co-facilitators drawn from each lead's {TOP_CO_MENTORS} best-overlapping mentors")
    if not exact and not flows_only:
        notes.append(
            f"candidates pruned to each mentee's {TOP_MENTORS} best mentors, plus the placement bound's and "
            f"the greedy's; placed_bound is the max-flow bound on the full eligibility graph"
        )

    def finish(
        chosen_groups: list[tuple[list[str], list[str]]], levels: Levels | CombinedLevels | None, **kw: object
    ) -> MatchingResult:
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
            prep, seekers, placed_ids, reasons, shares_a_mentor,
            "placed people who shared an eligible mentor with room", no_group, ahead_of,
        )  # fmt: skip
        return group_result(prep, Outcome(groups, gone, levels, notes=notes, **kw))  # type: ignore[arg-type]

    greedy_spec = [([mentor_ids[k] for k in ms], g_members) for ms, g_members in greedy]
    size = len(active) * TOP_MENTORS if flows_only else _model_size(candidates, free, pol.group_members_min)
    too_large = flows_only or size > max(FULL_MODEL_LIMIT, min(MODEL_VARS_MAX, time_limit * MODEL_VARS_PER_SECOND))
    if too_large or _past_deadline(prep, time_limit):
        why = (
            f"the CP-SAT model ({'at least ' * flows_only}{size:,} mentee-group variables) is too large to build "
            f"and solve within the {time_limit:g} s limit (at most {MODEL_VARS_PER_SECOND:,} per second of it "
            f"and {MODEL_VARS_MAX:,}, or "
            f"{FULL_MODEL_LIMIT:,}): "
            "greedy groups in lottery order"
            if too_large
            else "the clock ran out while preparing the model: greedy groups in lottery order"
        ) + (", fit improved by reassigning mentees between open groups" if polished else "")
        return finish(greedy_spec, None, placed_bound=flow_bound, fallback=True, why_greedy=why)
    for a, b in prep.locked:
        if a in mpos and b in mpos:
            prep.notes.append(f"lock {a}/{b} not applied: two mentors; lock a mentor with a mentee instead")
    parts = facilitated_components(prep, seekers, candidates, co_options, mentor_ids)
    if len(parts) <= 1:
        parts = [seekers]
    built = [build(part) for part in parts]
    hinted = add_placed_cuts(built, parts, greedy, flow_bound)
    hint_meets_bound = sum(hinted) >= flow_bound
    runs = component_runs(prep, progress, time_limit, [len(part) for part in parts], [fm.model for fm in built])
    for levels, fm in zip(runs, built, strict=True):
        levels.hint(fm.hint)
        levels.adopt_hint()
    # level 1 in every component before any other level: if the clock stops the run, every component
    # has its most-placed solution or, failing that, its share of the greedy's groups
    firsts = [
        placed_by_hint(levels, fm, count, hint_meets_bound)
        for levels, fm, count in zip(runs, built, hinted, strict=True)
    ]
    quotas = [quota_of(levels, total, fm.placed) for levels, fm, total in zip(runs, built, firsts, strict=True)]
    solved = [(levels, fm, q) for levels, fm, q in zip(runs, built, quotas, strict=True) if q is not None]
    if not solved:
        return finish(greedy_spec, None, placed_bound=flow_bound, fallback=True)
    proven = True
    for levels, fm, quota in solved:
        by_lottery = sorted((p for p in fm.placed if fm.x_of[p]), key=lambda p: prep.ranks[p])  # with a place to go
        _, part_proven = lottery_level(levels, fm.placed, by_lottery, quota, rule_out=_rule_out(levels, fm, routing))
        proven = proven and part_proven
    tops: list[tuple[Levels, cp_model.IntVar, cp_model.LinearExprT, bool]] = []
    standing: list[int] = []  # mentors used in each component's standing solution
    for levels, fm, _ in solved:
        load = load_terms(levels.model, prep, fm.opened)
        if load is not None:
            top, used = load
            found = min_max_ratio(levels, prep, fm, mentor_ids, top).found
            tops.append((levels, top, used, found))
            standing.append(sum(levels.value(ys[0]) for ys in fm.opened.values() if ys))
    idle_under_shared_ratio(tops, None if search else standing)
    if not search:
        notes.append(
            f"from {SEARCH_MENTEES_MAX:,} mentees CP-SAT does not search mentors used and fit: mentors used is "
            "the standing solution's (not proven the most), fit comes from reassigning mentees between open "
            "groups (flows and moves, a fixed amount of work)"
        )
    for levels, fm, _ in solved if search else []:
        # the reassignment runs even when the clock has stopped the solver (then it improves the stage that
        # stands: deterministic given that stage), unless the limit itself is about to pass
        in_time = time.perf_counter() < run_deadline(prep.started, time_limit) + time_limit * POLISH_SLACK
        stop = _polish_deadline(prep, time_limit)
        start = fit_start(prep, levels, fm, fit_of, mentor_ids, stop) if not co_count and in_time else None
        outcome = levels.optimise("fit", sum(fm.fit_terms), maximize=True)
        if start is not None and outcome.found and outcome.value < start[1]:  # the solver lost the hint
            levels.start_from(start[0])
            outcome.value = float(start[1])
        settle_ratio(levels, prep, fm.opened)
    for levels, fm, _ in [] if search else solved:
        settle_ratio(levels, prep, fm.opened)

    chosen_groups: list[tuple[list[str], list[str]]] = []
    for levels, fm, _ in solved:
        for (k, slot), members in sorted(fm.members_of.items()):
            chosen = [pid for pid, v in members if levels.value(v)]
            if chosen:
                co_ids = [mentor_ids[j] for j, c in fm.co.get((k, slot), []) if levels.value(c)]
                chosen_groups.append(([mentor_ids[k], *co_ids], chosen))
    unsolved = {pid for fm, quota in zip(built, quotas, strict=True) if quota is None for pid in fm.placed}
    if unsolved:
        chosen_groups += [([mentor_ids[k] for k in ms], g) for ms, g in greedy if g[0] in unsolved]
        notes.append(
            f"{len(runs) - len(solved)} of {len(runs)} components got no solution before the clock stopped the "
            "solver: their groups are the greedy's (lottery order, every rule)"
        )
        proven = False
    in_time = time.perf_counter() < run_deadline(prep.started, time_limit) + time_limit * POLISH_SLACK
    positions = [([mpos[m] for m in ms], members) for ms, members in chosen_groups]
    # the levels kept the reassigned greedy's groups (no search below the load ratio, or none that moved
    # anyone): a second pass over the same groups finds nothing (0.3-0.5 s of CPU at 1,000 mentees)
    unchanged = polished and _same_groups(positions, greedy)
    if (
        not co_count and in_time and not unchanged
    ):  # the same placed set and open groups, fit over every eligible open group
        locked = frozenset(p for pair in prep.locked for p in pair)
        chosen_groups = polish_groups(prep, positions, el, mentor_ids, locked, _polish_deadline(prep, time_limit))
    bound = flow_bound
    if exact and not unsolved:
        bound = min(bound, sum(proven_most(t, flow_bound) for t in firsts))
    kept = [levels for levels, _, _ in solved]
    combined: Levels | CombinedLevels = kept[0] if len(kept) == 1 else CombinedLevels(kept)
    if len(runs) > 1:
        notes.append(f"solved as {len(runs)} independent components of the candidate graph (exact)")
    return finish(chosen_groups, combined, placed_bound=bound, proven_lottery=proven, exact=exact and not unsolved)
