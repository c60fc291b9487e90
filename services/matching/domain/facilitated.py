"""Facilitated groups: a lead mentor's numbered slots (groups), mentees and optional co-facilitators.

Every run starts with the same preparation (``_prepare``: eligibility, reasons, candidates, the
greedy with chains that place more, the placement bound, the greedy's fit reassignment), then takes
one of three paths:

- the reassigned greedy (``_reassigned_greedy``), when the CP-SAT model would be too large for the
  time limit (on the largest pools no candidates are even listed: the flows do everything);
- levels searched by CP-SAT (``facilitated_levels.levels_searched``): placed, the lottery, the max load
  ratio, then mentors used and fit, per component; small pools and co-facilitators;
- levels kept (``facilitated_levels.levels_kept``): from SEARCH_MENTEES_MAX mentees (one mentor per
  group) CP-SAT proves placed, the lottery and the max load ratio, and mentors used and fit are the
  standing solution's, its fit from the reassignment flows: every stop of such a run is a count, the
  clock only a safety net.

Every mentor of a group must be eligible for every member.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from services.matching.domain.common import Prepared, Progress, apart_pairs
from services.matching.domain.facilitated_bound import MAX_PATHS, Departments, PlacementBound, Routing, placement_bound
from services.matching.domain.facilitated_fit import polish_groups
from services.matching.domain.facilitated_levels import (
    SEARCH_MENTEES_MAX,
    levels_kept,
    levels_result,
    levels_searched,
    lottery_levels,
    max_load_ratio,
    placed_levels,
)
from services.matching.domain.facilitated_lp import department_rooms, placement_lp_bound
from services.matching.domain.facilitated_prep import (
    Eligibility,
    best_mentors,
    eligibility,
    remember_best,
    slots_reachable,
)
from services.matching.domain.facilitated_repair import MentorGroup, place_more
from services.matching.domain.facilitated_run import FacilitatedRun, polish_deadline, run_result
from services.matching.domain.group_greedy import greedy_facilitated
from services.matching.domain.levels import past_deadline
from services.matching.domain.model import MatchingResult
from services.matching.domain.rules import BoolArray, IntArray, PairRules, Pool

TOP_MENTORS = 8
TOP_CO_MENTORS = 6
ALL_CO_MENTORS_UP_TO = 12
"""Pools with this few mentors consider every mentor as a co-facilitator: exact on small pools."""
FULL_MODEL_LIMIT = 20_000
"""Facilitated groups: while (mentee, eligible mentor slot) variables stay below this, every eligible
mentor is a candidate (the model is exact); above it each mentee keeps its best few, plus the arcs of a
lottery-ordered max flow on the full graph and of the greedy solution."""
SHORTFALL_FOR_LP = 0.01
"""Facilitated groups: the department LP is solved when the greedy places this share of the max flow's
bound fewer or more (the greedy of the benchmark's tight 1,000 pool falls short by 0.2 %, 947 of 949,
which the chains close; on a pool with one department at 80 % by 71 %, 287 of 1,000)."""
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


def solve_facilitated(prep: Prepared, progress: Progress, time_limit: float) -> MatchingResult:
    """Groups anchored on a lead mentor's slots; with ``mentors_per_group`` above 1, co-facilitators
    join a slot. Every mentor of a group must be eligible for every member (mentor-member rules)."""
    run = _prepare(prep, time_limit)
    why = _why_no_model(run)
    if why is not None:
        return _reassigned_greedy(run, why)
    components = placed_levels(run, progress)
    solved = components.solved
    if not solved:  # no component found a solution in its budget
        return _reassigned_greedy(run, None)
    proven = lottery_levels(run, solved)
    tops, standing = max_load_ratio(run, solved)
    if run.search:
        levels_searched(run, solved, tops)
    else:
        levels_kept(run, solved, tops, standing)
    return levels_result(run, components, proven)


# the shared preparation --------------------------------------------------------------------------


def _prepare(prep: Prepared, time_limit: float) -> FacilitatedRun:
    """Eligibility, each seeker's candidate mentors, the greedy, the placement bound, chains that place
    whom the greedy left out, and (one mentor per group) the greedy's fit reassigned."""
    pol = prep.policy
    co_count = pol.mentors_per_group - 1
    mentor_ids = prep.mentor_ids
    mpos = {pid: k for k, pid in enumerate(mentor_ids)}
    free = np.array([prep.free(pid) for pid in mentor_ids], dtype=np.int64)
    el = eligibility(prep, PairRules(Pool.encode(prep.people), pol, np.array(prep.mentors, dtype=np.int64)), free)
    active, eligible_of, fit_of = el.active, el.eligible_of, el.fit_of
    exact = slots_reachable(el, active) <= FULL_MODEL_LIMIT and (
        not co_count or len(mentor_ids) <= ALL_CO_MENTORS_UP_TO
    )
    # a pruned model of this many candidate variables would exceed MODEL_VARS_MAX: no candidates needed
    flows_only = not exact and len(active) * TOP_MENTORS > MODEL_VARS_MAX
    search = bool(co_count) or len(active) < SEARCH_MENTEES_MAX
    cand = _first_candidates(prep, el, active, exact, flows_only)
    seeking = {pid: eligible_of[pid] for pid in active}
    greedy = _greedy(prep, seeking, fit_of, free, time_limit)
    _stage_done(prep, "the greedy", greedy, counting_bound(prep, active, free))
    if flows_only or not search:  # the reassignment's options as on the large pools (+3 fit at 1,000)
        remember_best(el)  # after the greedy, which does not read it: its groups stand 6 s sooner at 50,000
    relaxed_bound = _placed_bound(prep, el, active, free, greedy, cand, time_limit)
    flow_bound, greedy = _departments_bind(prep, el, active, free, seeking, greedy, relaxed_bound, time_limit)
    if not co_count:
        greedy = _chains(prep, el, free, greedy, flow_bound, time_limit, settle=flow_bound < relaxed_bound)
    _stage_done(prep, "the greedy placement", greedy, flow_bound)
    routing = None if co_count else _routing(prep, el, active, free)
    # the fit reassignment after the bound (2 s at 50,000): the proof must not wait behind 25 s of fit
    polished = not co_count and not past_deadline(prep.started, time_limit)
    if polished:  # fit first on the greedy's placement: what stands if the clock stops the solver
        locked = frozenset(p for pair in prep.locked for p in pair)
        better = polish_groups(
            prep, greedy, el, mentor_ids, locked, deadline=polish_deadline(prep, time_limit), rechoose=True
        )
        greedy = [([mpos[m] for m in ms], members) for ms, members in better]
        _stage_done(prep, "the greedy placement, fit reassigned", greedy, flow_bound)
    elif not co_count:
        prep.notes.append("the time limit cut the preparation before the fit reassignment")
    for ms, members in greedy:
        for pid in members:
            cand[pid].add(ms[0])
    seekers = [prep.people[i].participant_id for i in prep.seekers]
    candidates: dict[str, list[tuple[int, int]]] = (
        {} if flows_only else {pid: [(k, int(fit_of[pid][k])) for k in sorted(cand.get(pid, ()))] for pid in seekers}
    )
    mentor_apart = {(min(mpos[a], mpos[b]), max(mpos[a], mpos[b])) for a, b in apart_pairs(prep, mentor_ids)}
    co_options = _co_options(prep, candidates, free, mentor_apart, greedy) if co_count and not flows_only else {}
    return FacilitatedRun(
        prep, time_limit, el, active, eligible_of, fit_of, free, mpos, seekers, exact, flows_only, search, greedy,
        flow_bound, routing, polished, candidates, co_options, mentor_apart, _model_notes(prep, exact, flows_only),
    )  # fmt: skip


def counting_bound(prep: Prepared, active: list[str], free: IntArray) -> int:
    """The placement bound that needs no flow: min(seekers with a mentor, free groups x group maximum)."""
    pol = prep.policy
    return min(len(active), (int(free.sum()) // max(1, pol.mentors_per_group)) * pol.group_members_max)


def _stage_done(prep: Prepared, stage: str, groups: list[MentorGroup], placed_bound: int) -> None:
    ids = prep.mentor_ids
    prep.stage_done(stage, (([ids[k] for k in ms], members) for ms, members in groups), placed_bound)


def _first_candidates(
    prep: Prepared, el: Eligibility, active: list[str], exact: bool, flows_only: bool
) -> dict[str, set[int]]:
    """Each active seeker's candidate mentors before the bound's and the greedy's join: every eligible
    mentor with room (exact), none (flows only), or its TOP_MENTORS best."""
    if exact:
        return {pid: {int(k) for k in np.flatnonzero(el.room(pid))} for pid in active}
    if flows_only:
        return {pid: set() for pid in active}
    local_rank = np.argsort(np.argsort([prep.ranks[pid] for pid in prep.mentor_ids], kind="stable"), kind="stable")
    return best_mentors(el, active, local_rank, TOP_MENTORS)


def _greedy(
    prep: Prepared, seeking: dict[str, BoolArray], fit_of: dict[str, IntArray], free: IntArray, time_limit: float
) -> list[MentorGroup]:
    """One greedy pass filling groups below their minimum first (placing comes first); with
    co-facilitators a second pass for fit, while the clock allows (the time limit counts preparation
    too). With one mentor per group the fit reassignment does far better than that second pass."""
    co_count = prep.policy.mentors_per_group - 1
    passes = [greedy_facilitated(prep, seeking, fit_of, free, fill_first=True)]
    if co_count and not past_deadline(prep.started, time_limit):
        passes.append(greedy_facilitated(prep, seeking, fit_of, free, fill_first=False))
    elif co_count:
        prep.notes.append("the time limit cut the preparation: one greedy pass of two")
    return _better_greedy(passes, fit_of)


def _placed_bound(
    prep: Prepared,
    el: Eligibility,
    active: list[str],
    free: IntArray,
    greedy: list[MentorGroup],
    cand: dict[str, set[int]],
    time_limit: float,
) -> int:
    """The placement bound: the greedy's count when it meets the counting bound, else the max flow on the
    full graph (``_placement_bound``), whose mentors join the candidates; the counting bound, noted, when
    the clock or the flow's path limit stops it."""
    greedy_placed = sum(len(members) for _, members in greedy)
    placed_cap = counting_bound(prep, active, free)
    if greedy_placed >= placed_cap:  # the greedy meets the counting bound: no flow needed to prove it
        return greedy_placed
    if past_deadline(prep.started, time_limit):
        prep.notes.append(
            "placed_bound is the counting bound (min(seekers, free groups x group maximum)): the time limit cut "
            "the preparation before the max flow"
        )
        return placed_cap
    relaxed = _placement_bound(prep, el, active, free, greedy)
    if not relaxed.proven:
        prep.notes.append(
            f"placed_bound is the counting bound (min(seekers, free groups x group maximum)): {MAX_PATHS} "
            "augmenting paths on the full eligibility graph did not reach the maximum placement"
        )
    for r in np.flatnonzero(relaxed.mentor_of >= 0).tolist():
        cand[active[r]].add(int(relaxed.mentor_of[r]))
    return min(relaxed.value if relaxed.proven else placed_cap, placed_cap)


def _departments_bind(
    prep: Prepared,
    el: Eligibility,
    active: list[str],
    free: IntArray,
    seeking: dict[str, BoolArray],
    greedy: list[MentorGroup],
    bound: int,
    time_limit: float,
) -> tuple[int, list[MentorGroup]]:
    """Where the greedy stays far below the max flow's bound (SHORTFALL_FOR_LP): the linear programme that
    also counts group minimums with the department bound (``facilitated_lp``; the smaller of it and the
    class LP, ``facilitated_class_lp``, which knows who may join whom). Where it is lower, the two bind
    together (one department at 80 % of a pool: the flow's bound 1,000, the LPs' 474 and 471, the
    greedy 287, with the chains 471): the greedy that places by department is tried too, and the one
    placing more kept (the chains then start from it). Returns (the bound, the groups). Before the
    chains, so that on a loaded machine the clock does not stop the run before it (it did at 5,000
    behind the chains' wasted search for 3,400 places that do not exist); a small shortfall is the
    chains' to close, and the benchmark's tight pools, which reach the flow's bound, never solve the LP."""
    placed = sum(len(members) for _, members in greedy)
    if placed >= bound - max(1, int(bound * SHORTFALL_FOR_LP)) or past_deadline(prep.started, time_limit):
        return bound, greedy
    lp = placement_lp_bound(prep, el, active, free)
    if lp is None or max(lp, placed) >= bound:
        return bound, greedy
    prep.notes.append(
        f"placed_bound {max(lp, placed):,} is a linear programme's over (mentor, department) counts with the "
        f"group minimum and the department bound, also by classes of people and types of mentors (who may "
        f"join whom; the max flow, which relaxes the minimum, gave {bound:,})"
    )
    bound = max(lp, placed)
    if past_deadline(prep.started, time_limit):
        return bound, greedy
    by_department = greedy_facilitated(prep, seeking, el.fit_of, free, by_department=True)
    return bound, _better_greedy([greedy, by_department], el.fit_of)


def _chains(
    prep: Prepared,
    el: Eligibility,
    free: IntArray,
    greedy: list[MentorGroup],
    bound: int,
    time_limit: float,
    *,
    settle: bool = False,
) -> list[MentorGroup]:
    """One mentor per group: chains of moves place whom the greedy left out, up to the bound. ``settle``
    (the bound is a department LP's): every person left out is searched even once the bound is met, for
    the chains' lottery moves, as when that bound was looser (474 on the one-dept 1,000 pool, where the
    greedy by department and its chains place 471, the class LP's bound): the searches move people between
    groups, and the fit reassignment then reached 3,752 from them against 3,673 without them."""
    if sum(len(members) for _, members in greedy) >= bound and not settle:
        return greedy
    if past_deadline(prep.started, time_limit):
        prep.notes.append("the time limit cut the preparation before the chains that place more")
        return greedy
    return place_more(prep, el, free, greedy, bound, settle=settle)


def _co_options(
    prep: Prepared,
    candidates: dict[str, list[tuple[int, int]]],
    free: IntArray,
    mentor_apart: set[tuple[int, int]],
    greedy: list[MentorGroup],
) -> dict[int, list[int]]:
    """Each lead's possible co-facilitators (``_co_mentor_candidates``), with those of its greedy groups."""
    out = _co_mentor_candidates(prep, candidates, free, mentor_apart)
    for ms, _ in greedy:
        for j in ms[1:]:
            if j not in out[ms[0]]:
                out[ms[0]].append(j)
    return out


def _model_notes(prep: Prepared, exact: bool, flows_only: bool) -> list[str]:
    """The result's first notes: how the model's candidates were drawn, when not every option."""
    notes: list[str] = []
    co_count = prep.policy.mentors_per_group - 1
    if co_count and len(prep.mentor_ids) > ALL_CO_MENTORS_UP_TO:
        notes.append(f"co-facilitators drawn from each lead's {TOP_CO_MENTORS} best-overlapping mentors")
    if not exact and not flows_only:
        notes.append(
            f"candidates pruned to each mentee's {TOP_MENTORS} best mentors, plus the placement bound's and "
            f"the greedy's; placed_bound is proven on the full eligibility graph (a max flow, or a linear programme)"
        )
    return notes


# the reassigned greedy ----------------------------------------------------------------------------


def _why_no_model(run: FacilitatedRun) -> str | None:
    """Why the run returns the reassigned greedy without a model (too large for the limit, or the
    clock ran out while preparing), or None: the levels are solved."""
    prep, time_limit = run.prep, run.time_limit
    if run.flows_only:
        size = len(run.active) * TOP_MENTORS
    else:
        size = _model_size(run.candidates, run.free, prep.policy.group_members_min)
    too_large = run.flows_only or size > max(FULL_MODEL_LIMIT, min(MODEL_VARS_MAX, time_limit * MODEL_VARS_PER_SECOND))
    if not too_large and not past_deadline(prep.started, time_limit):
        return None
    why = (
        f"the CP-SAT model ({'at least ' * run.flows_only}{size:,} mentee-group variables) is too large to build "
        f"and solve within the {time_limit:g} s limit (at most {MODEL_VARS_PER_SECOND:,} per second of it "
        f"and {MODEL_VARS_MAX:,}, or {FULL_MODEL_LIMIT:,}): greedy groups in lottery order"
        if too_large
        else "the clock ran out while preparing the model: greedy groups in lottery order"
    )
    return why + (", fit improved by reassigning mentees between open groups" if run.polished else "")


def _reassigned_greedy(run: FacilitatedRun, why: str | None) -> MatchingResult:
    """The greedy's groups, placed by chains up to the bound and their fit reassigned by flows. ``why``:
    why no model was solved (None: the solver found nothing in its budget)."""
    return run_result(run, run.greedy_by_id(), None, placed_bound=run.flow_bound, fallback=True, why_greedy=why)


# helpers ------------------------------------------------------------------------------------------


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


def _departments(prep: Prepared, active: list[str], free: IntArray) -> Departments | None:
    """The department bound as (mentor, department) capacities for the placement bound, or None."""
    limit = prep.policy.max_same_department
    if limit is None or limit >= prep.policy.group_members_max + prep.policy.mentors_per_group:
        return None
    of, room = department_rooms(prep, active, limit)
    return Departments(of, free[:, None] * np.maximum(0, room))


def _better_greedy(
    options: list[list[tuple[list[int], list[str]]]], fit_of: Mapping[str, IntArray]
) -> list[tuple[list[int], list[str]]]:
    """The greedy solution that places more people, then has more fit (the first on a tie)."""

    def key(groups: list[tuple[list[int], list[str]]]) -> tuple[int, int]:
        placed = sum(len(members) for _, members in groups)
        fit = sum(int(fit_of[pid][k]) for ms, members in groups for pid in members for k in ms)
        return placed, fit

    return max(options, key=key)


def _model_size(candidates: Mapping[str, list[tuple[int, int]]], free: IntArray, size_min: int) -> int:
    """The number of mentee x slot variables the facilitated model would have (before building it)."""
    demand: dict[int, int] = defaultdict(int)
    for options in candidates.values():
        for k, _ in options:
            demand[k] += 1
    slots = {k: min(int(free[k]), n // max(1, size_min)) for k, n in demand.items()}
    return sum(slots[k] for options in candidates.values() for k, _ in options)
