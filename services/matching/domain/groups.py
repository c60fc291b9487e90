"""Group forms with CP-SAT: facilitated groups (a mentor and several mentees), peer groups (peers
only) and team mentoring (an intact team and its mentors). Levels, in order: most placed; who is
placed by lottery; lowest maximum mentor load ratio, then fewest idle mentors; best fit.

Interpretation of the group rules (documented in docs/matching.md):
- facilitated groups: language, time zone and seniority are mentor-member rules (the mentor runs the
  sessions); reporting lines, declared conflicts and the department bound hold for every member pair;
- peer groups: every rule holds for every pair; a group shares one language (a group language is
  chosen) and its members' time zones and levels fit in one window of the policy's width;
- teams: the mentors must be eligible for every team member; a team is placed whole or not at all.
  An intact team's own reporting lines are expected (its manager may be a member) and do not keep it
  out; a declared conflict or an exclude override *inside* a team does: the matcher cannot split a
  team, so that team is not placed and is told why.

Every form is seeded with a greedy solution (CP-SAT hints) and falls back to it when the solver finds
nothing in its budget, so a run always returns a rule-respecting result with an honest status.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from ortools.graph.python import max_flow
from ortools.sat.python import cp_model

from contracts.events import UnmatchedReason
from contracts.policy import Form, SeniorityRule
from services.matching.domain.common import (
    Prepared,
    Progress,
    loads_after,
    make_group,
    max_load_ratio,
    unplaced,
)
from services.matching.domain.fit_polish import Reassignment, improve
from services.matching.domain.group_greedy import greedy_facilitated, greedy_peers, greedy_teams
from services.matching.domain.levels import (
    SHARES,
    CombinedLevels,
    LevelOutcome,
    Levels,
    lottery_level,
    run_deadline,
)
from services.matching.domain.lottery import lottery_key
from services.matching.domain.model import Group, MatchingResult, Stats, Unplaced
from services.matching.domain.rules import (
    BoolArray,
    IntArray,
    PairRules,
    Pool,
    describe_exclusions,
    first_failing_counts,
)

RATIO_SCALE = 1000
TOP_MENTORS = 8
TOP_PARTNERS = 3
TOP_CO_MENTORS = 6
ALL_CO_MENTORS_UP_TO = 12
"""Pools with this few mentors consider every mentor as a co-facilitator: exact on small pools."""
FULL_MODEL_LIMIT = 20_000
"""Facilitated groups: while (mentee, eligible mentor slot) variables stay below this, every eligible
mentor is a candidate (the model is exact); above it each mentee keeps its best few, plus the arcs of a
lottery-ordered max flow on the full graph and of the greedy solution."""
PEER_DENSE_LIMIT = 6_000
"""Peer groups: while peers x groups stays below this, every peer may join every group (exact)."""
PEER_PARTNERS = 6


def _apart_pairs(prep: Prepared, ids: list[str]) -> list[tuple[str, str]]:
    """Pairs that may never share a group: reporting lines, declared conflicts, excluded overrides."""
    depth = prep.policy.reporting_line_depth
    wanted = set(ids)
    pairs: set[tuple[str, str]] = set()
    for pid in ids:
        p = prep.by_id[pid]
        for manager in p.manager_chain[:depth] if depth > 0 else []:
            if manager in wanted:
                pairs.add((min(pid, manager), max(pid, manager)))
        for other in p.conflicts_with:
            if other in wanted and other != pid:
                pairs.add((min(pid, other), max(pid, other)))
    for pair in prep.excluded:
        a, b = sorted(pair)
        if a in wanted and b in wanted:
            pairs.add((a, b))
    return sorted(pairs)


@dataclass
class _Outcome:
    groups: list[Group]
    gone: list[Unplaced]
    levels: Levels | CombinedLevels | None
    placed_bound: int
    proven_lottery: bool = True
    exact: bool = True
    """The model held every eligible option (no pruning): its bounds are bounds on the full problem."""
    fallback: bool = False
    baseline: bool = False
    """The greedy asked for as a baseline (benchmarks), not a fallback."""
    fit_is_model_objective: bool = True
    """The fit level's objective is exactly the reported total fit (false for peer groups)."""
    notes: list[str] = field(default_factory=list)
    why_greedy: str | None = None
    """Why a fallback is the greedy's (default: the solver found nothing in its budget)."""


def _quota(
    levels: Levels, total: LevelOutcome, placed: Mapping[str, cp_model.IntVar], weights: Mapping[str, int] | None = None
) -> int | None:
    """How many level 1 placed: its value, or, when its solve found nothing (the clock, or presolve
    eating a tiny budget), the count in the solution that stands (the adopted greedy hint); None if none."""
    if total.found:
        return int(total.value)
    if levels.values is None:
        return None
    weight = weights or {}
    return sum(levels.values[v.index] * weight.get(p, 1) for p, v in placed.items())


def _proven_most(outcome: LevelOutcome, otherwise: int) -> int:
    """A maximisation level's proven upper bound: its value when optimal, else its solver bound, else
    ``otherwise`` (a level that only kept the standing solution proves nothing)."""
    if outcome.status == "OPTIMAL":
        return int(outcome.value)
    if math.isnan(outcome.bound):
        return otherwise
    return math.floor(outcome.bound + 1e-6)


def _level_value(outcome: LevelOutcome) -> float:
    """A level's reported value: the max load ratio as a ratio (its level works in 1/RATIO_SCALE)."""
    if outcome.name == "max_load_ratio":
        return round(outcome.value / RATIO_SCALE, 6)
    return outcome.value


def _result(prep: Prepared, o: _Outcome) -> MatchingResult:
    load = loads_after(prep, o.groups)
    fit = float(sum(g.fit for g in o.groups))
    placed = sum(len([m for m in g.members if m.role.value != "mentor"]) for g in o.groups)
    notes = [*prep.notes, *o.notes]
    fit_bound: float | None = None
    gap: float | None = None
    levels = o.levels
    if (o.fallback or o.baseline) and (prep.locks_applied or prep.locked):
        n = prep.locks_applied or len(prep.locked)
        notes.append(f"the greedy does not apply locks: {n} lock(s) not applied, not counted")
        prep.locks_applied = 0
    if o.baseline:
        status = "GREEDY"
    elif o.fallback or levels is None:
        status = "GREEDY"  # the published contract (SolverStats.status) names a fallback GREEDY
        nothing = "the solver found no solution within its budget: this is the greedy solution (lottery order)"
        notes.append(o.why_greedy or nothing)
    else:
        kept = levels.keeps_lottery
        proven = levels.all_optimal and o.proven_lottery and kept and o.exact and placed >= o.placed_bound
        status = "OPTIMAL" if proven and not levels.wall_guard_hit else "FEASIBLE"
        last = next((x for x in levels.outcomes if x.name == "fit" and x.found), None)
        if last is not None and o.fit_is_model_objective and not math.isnan(last.bound):
            fit_bound = max(fit, last.bound)
            gap = round((fit_bound - fit) / fit_bound, 6) if fit_bound else 0.0
            if not o.exact:
                notes.append("fit bound and gap are proven on the candidate model (pruned options), not the full graph")
        if not kept:
            notes.append("no solution keeping every lottery decision was found in budget: the last one found stands")
        elif not o.proven_lottery:
            notes.append("the lottery walk ran out of budget: the decisions after it are the solver's, not proven")
        if levels.wall_guard_hit:
            notes.append(
                f"the wall-clock limit stopped the solver at level {levels.stopped_at}: the result is the last "
                "level completed within its deterministic budget (the same input and seed give these groups "
                "whenever the clock stops there; a less busy machine may complete more levels)"
            )
        ratio = next((x for x in levels.outcomes if x.name == "max_load_ratio" and x.found), None)
        if ratio is not None and ratio.status == "OPTIMAL":
            notes.append(f"max load ratio {_level_value(ratio):g}: proven the least")
        elif ratio is not None:
            low = round(ratio.bound / RATIO_SCALE, 6)
            notes.append(f"max load ratio {_level_value(ratio):g}: not proven the least (lower bound {low:g})")
        unknown = [x.name for x in levels.outcomes if not x.found]
        if unknown:
            notes.append(f"levels {', '.join(unknown)} found nothing better in budget: the previous solution stands")
    stats = Stats(
        method="greedy" if o.baseline else "cp_sat",
        status=status,
        seed=prep.seed,
        placed_count=placed,
        unplaced_count=len(o.gone),
        placed_bound=max(placed, o.placed_bound),
        total_fit=fit,
        fit_bound=fit_bound,
        gap=gap,
        max_load_ratio=max_load_ratio(prep, load),
        load=load,
        wall_time_seconds=round(time.perf_counter() - prep.started, 3),
        overrides_applied=prep.overrides_applied,
        levels={x.name: _level_value(x) for x in (levels.outcomes if levels else []) if x.found},
        notes=notes,
    )
    return MatchingResult(
        program_id=prep.inp.program_id,
        form=prep.inp.form,
        seed=prep.seed,
        groups=sorted(o.groups, key=lambda g: g.group_id),
        unplaced=sorted(o.gone, key=lambda u: u.participant_id),
        lottery=prep.ranks,
        stats=stats,
    )


@dataclass
class _FacilitatedModel:
    model: cp_model.CpModel
    placed: dict[str, cp_model.IntVar]
    x_of: dict[str, dict[tuple[int, int], cp_model.IntVar]]
    members_of: dict[tuple[int, int], list[tuple[str, cp_model.IntVar]]]
    co: dict[tuple[int, int], list[tuple[int, cp_model.IntVar]]]
    opened: dict[str, list[cp_model.IntVar]]
    fit_terms: Sequence[cp_model.LinearExprT]
    hint: dict[cp_model.IntVar, int]


def _components(
    prep: Prepared,
    seekers: list[str],
    candidates: dict[str, list[tuple[int, int]]],
    co_options: dict[int, list[int]],
    mentor_ids: list[str],
) -> list[list[str]]:
    """Seekers split into independent components of the candidate graph (mentee - candidate mentor,
    lead - co-facilitator, mentee - mentee lock). No variable or constraint links two components, and
    every level's objective is a sum (or, for the max load ratio, a max) over them, so solving them
    apart is exact. Seekers with no candidate belong to none. Canonical order: by first seeker id."""
    parent: dict[object, object] = {}

    def find(a: object) -> object:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: object, b: object) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    for pid in seekers:
        for k, _ in candidates[pid]:
            union(pid, ("mentor", k))
            for j in co_options.get(k, []):
                union(("mentor", k), ("mentor", j))
    for a, b in prep.locked:
        if a in candidates and b in candidates and candidates[a] and candidates[b]:
            union(a, b)
    groups: dict[object, list[str]] = defaultdict(list)
    for pid in seekers:
        if candidates[pid]:
            groups[find(pid)].append(pid)
    return sorted(groups.values(), key=lambda part: part[0])


def _part_progress(progress: Progress, n: int, parts: int) -> Progress:
    def report(message: str, fraction: float) -> None:
        progress(f"component {n + 1} of {parts}: {message}", fraction)

    return report


def _load_terms(
    model: cp_model.CpModel, prep: Prepared, opened: dict[str, list[cp_model.IntVar]]
) -> tuple[cp_model.IntVar, cp_model.LinearExprT] | None:
    """The max load ratio variable and the number of mentors used (given at least one group), or None.

    ``opened[m]`` are mentor m's group slots in order (slot s+1 opens only after slot s), so "mentor m
    has a group in this run" is its first slot. Fair load (docs/matching.md) is: nobody above the least
    achievable max load ratio, then as few eligible mentors idle as possible. Neither term rewards
    fewer or larger groups: the ratio caps each mentor, and the mentors-used count only grows when a
    group moves to an idle mentor (the old sum of load^2 / capacity fell with every group *not* opened).
    """
    if not opened:
        return None
    top = model.new_int_var(0, RATIO_SCALE * 50, "max_load_ratio")
    for mentor, slots in opened.items():
        cap, load = prep.capacity[mentor], prep.load[mentor]
        model.add((load + sum(slots)) * RATIO_SCALE <= top * cap)
    used = sum(slots[0] for slots in opened.values() if slots)
    return top, used


def _ratio_of(prep: Prepared, mentor: str, groups: int) -> int:
    """The scaled load ratio a mentor reaches with ``groups`` more groups (as the model's ``top`` sees it)."""
    return -(-(prep.load[mentor] + groups) * RATIO_SCALE // prep.capacity[mentor])


def _ratio_floor(prep: Prepared, opened: dict[str, list[cp_model.IntVar]]) -> int:
    """The least ``top`` any solution can have: every mentor's load from before this run."""
    return max((_ratio_of(prep, m, 0) for m in opened), default=0)


def _ratio_thresholds(prep: Prepared, opened: dict[str, list[cp_model.IntVar]]) -> list[int]:
    """Every value the max load ratio can take (it is some mentor's (load + n) / capacity), ascending."""
    low = _ratio_floor(prep, opened)
    values = {_ratio_of(prep, m, n) for m, slots in opened.items() for n in range(1, len(slots) + 1)}
    return sorted({low} | {v for v in values if v > low})


def _allowed_groups(prep: Prepared, mentor: str, slots: int, threshold: int) -> int:
    """How many groups a mentor may take (lead or co-facilitate) with its ratio at most ``threshold``."""
    n = (threshold * prep.capacity[mentor]) // RATIO_SCALE - prep.load[mentor]
    return max(0, min(slots, n))


def _ratio_is_flow_feasible(
    prep: Prepared, fm: _FacilitatedModel, mentor_ids: list[str], must: list[str], threshold: int
) -> bool:
    """A necessary condition for "max load ratio <= threshold": the people the lottery placed fit
    (max flow, mentee -> candidate lead -> sink, lead capacity = its allowed groups x group maximum),
    and the mentors' allowed groups cover the groups that many people need (with co-facilitators,
    ``mentors_per_group`` mentors each). It relaxes group minimums and member-member rules."""
    pol = prep.policy
    allowed = {m: _allowed_groups(prep, m, len(slots), threshold) for m, slots in fm.opened.items()}
    need = -(-len(must) // pol.group_members_max) if must else 0
    if sum(allowed.values()) < need * pol.mentors_per_group:
        return False
    lead_slots: dict[int, int] = defaultdict(int)
    for pid in must:
        for k, s in fm.x_of[pid]:
            lead_slots[k] = max(lead_slots[k], s + 1)
    leads = sorted(lead_slots)
    if not must:
        return True
    flow = max_flow.SimpleMaxFlow()
    source, sink, first_lead = 0, 1, 2 + len(must)
    lead_node = {k: first_lead + i for i, k in enumerate(leads)}
    for r, pid in enumerate(must):
        flow.add_arc_with_capacity(source, 2 + r, 1)
        for k in sorted({k for k, _ in fm.x_of[pid]}):
            flow.add_arc_with_capacity(2 + r, lead_node[k], 1)
    for k in leads:
        groups = min(lead_slots[k], allowed.get(mentor_ids[k], 0))
        flow.add_arc_with_capacity(lead_node[k], sink, groups * pol.group_members_max)
    if flow.solve(source, sink) != flow.OPTIMAL:
        raise RuntimeError("load ratio bound flow failed")
    return int(flow.optimal_flow()) >= len(must)


def _settle_ratio(levels: Levels, prep: Prepared, opened: dict[str, list[cp_model.IntVar]]) -> None:
    """After the last level: the max load ratio level reports what the solution that stands achieves
    (exact, scaled by RATIO_SCALE); the mentors-used level may have lowered it below an unproven level value."""
    outcome = next((o for o in levels.outcomes if o.name == "max_load_ratio" and o.found), None)
    if outcome is None or levels.values is None or not opened:
        return
    exact = max((prep.load[m] + sum(levels.value(y) for y in ys)) / prep.capacity[m] for m, ys in opened.items())
    outcome.value = exact * RATIO_SCALE
    outcome.bound = min(outcome.bound, outcome.value)


def _achieved_ratio(prep: Prepared, levels: Levels, opened: dict[str, list[cp_model.IntVar]]) -> int:
    """The scaled max load ratio of the solution that stands (over this model's mentors)."""
    return max((_ratio_of(prep, m, sum(levels.value(y) for y in ys)) for m, ys in opened.items()), default=0)


def _min_max_ratio(
    levels: Levels,
    prep: Prepared,
    fm: _FacilitatedModel,
    mentor_ids: list[str],
    top: cp_model.IntVar,
) -> LevelOutcome:
    """Level 3a: the least max load ratio, searched over its possible values instead of by one
    minimisation (whose bound CP-SAT barely raises: the ratio is a max over many mentors).

    The value is one of the few thresholds (load + n) / capacity. A max flow over the people the lottery
    placed gives the least threshold that can hold (valid for every solution, so ``top >= it`` is added);
    from it upwards, each threshold is one feasibility check ("every mentor within it"): the first
    feasible one is the minimum, proven, when every check below it was infeasible. Checks share the
    level's deterministic budget; if it runs out, the best solution found stands with the bound reached.
    The caller adds the (common) cap on ``top``."""
    share = SHARES["max_load_ratio"]
    levels._level = "max_load_ratio"
    levels.progress("solving level max_load_ratio", levels._done_share)
    budget = levels.budget(share)
    spent_before = levels.deterministic_used
    must = sorted(
        pid for pid, v in fm.placed.items() if levels.fixed.get(v.index) == 1
    )  # people the lottery decided in
    thresholds = _ratio_thresholds(prep, fm.opened)
    best = _achieved_ratio(prep, levels, fm.opened)
    lo, hi = 0, len(thresholds) - 1  # the flow test is monotone in the threshold: binary search
    while lo < hi:
        mid = (lo + hi) // 2
        if _ratio_is_flow_feasible(prep, fm, mentor_ids, must, thresholds[mid]):
            hi = mid
        else:
            lo = mid + 1
    bound = min(thresholds[lo], best)
    levels.model.add(top >= bound)  # redundant, valid for every solution: helps every later solve
    proven = best <= bound
    position = lo
    while not proven and position < len(thresholds) and thresholds[position] < best:
        left = budget - (levels.deterministic_used - spent_before)
        if left <= 0.01:
            break
        threshold = thresholds[position]
        within = levels.model.new_bool_var(f"ratio_within_{threshold}")
        levels.model.add(top <= threshold).only_enforce_if(within)
        answer = levels.feasible_with([within], left / 2)
        if answer is None:
            break
        if answer:
            best = min(best, _achieved_ratio(prep, levels, fm.opened))
            proven = True
            break
        bound = thresholds[position + 1] if position + 1 < len(thresholds) else best
        position += 1
    proven = proven or best <= bound
    levels.model.add(top >= min(bound, best))  # every threshold below was proven infeasible
    left = budget - (levels.deterministic_used - spent_before)
    if not proven and left > 0.01:  # a check ran out undecided: minimise from the best found instead
        levels.model.minimize(top)
        if levels._solve(left):
            best = min(best, _achieved_ratio(prep, levels, fm.opened))
            bound = max(bound, math.ceil(levels.solver.best_objective_bound - 1e-6))
        levels.model.clear_objective()  # type: ignore[no-untyped-call]
        proven = best <= bound
    # the bound as an exact ratio (scaled): the least ratio a mentor can reach whose rounded-up value is >= it
    reachable = [(prep.load[m] + n) / prep.capacity[m] for m, ys in fm.opened.items() for n in range(len(ys) + 1)]
    exact_bound = min((r * RATIO_SCALE for r in reachable if math.ceil(r * RATIO_SCALE - 1e-9) >= bound), default=0.0)
    outcome = LevelOutcome(
        "max_load_ratio", float(best), float(best) if proven else exact_bound, "OPTIMAL" if proven else "FEASIBLE"
    )
    levels.outcomes.append(outcome)
    levels._report("max_load_ratio", share)
    return outcome


def _lost_lottery(
    prep: Prepared, pid: str, placed_ids: set[str], competes: Callable[[str], bool], what: str
) -> Unplaced | None:
    """LOST_LOTTERY when placed people drawn ahead competed for the same places; None otherwise."""
    ahead = sum(1 for p in placed_ids if prep.ranks[p] < prep.ranks[pid] and competes(p))
    if not ahead:
        return None
    return unplaced(
        pid,
        UnmatchedReason.LOST_LOTTERY,
        f"lost the lottery to {ahead} equally eligible people drawn ahead ({what}); "
        f"this one ranked {prep.seeker_rank[pid] + 1} of {len(prep.seeker_rank)}",
    )


def _idle_under_shared_ratio(tops: list[tuple[Levels, cp_model.IntVar, cp_model.LinearExprT, bool]]) -> None:
    """Components are solved apart but the maximum load ratio is one figure for the run: the largest of
    the components' minima (each found by its own load level) caps every component, which then uses as
    many of its mentors as it can under that cap (fewest idle). Exact, since each component's minimum is
    reachable within the cap and the mentors-used count is a sum over components."""
    ratio = max((int(levels.outcomes[-1].value) for levels, _, _, found in tops if found), default=0)
    for levels, top, used, found in tops:
        if found:
            levels.model.add(top <= ratio)
        levels.optimise("mentors_used", used, maximize=True)


def _unplaced_seekers(
    prep: Prepared,
    seekers: Iterable[str],
    placed_ids: set[str],
    reasons: Mapping[str, Unplaced],
    competes_with: Callable[[str], Callable[[str], bool]],
    what: str,
    no_group: Callable[[str], str],
) -> list[Unplaced]:
    """Why each seeker left out is out: its own eligibility reason; else the lottery, when placed people
    drawn ahead competed for its places; else no group of the allowed size could take it."""
    gone = []
    for pid in seekers:
        if pid in placed_ids:
            continue
        if pid in reasons:
            gone.append(reasons[pid])
            continue
        lost = _lost_lottery(prep, pid, placed_ids, competes_with(pid), what)
        gone.append(lost or unplaced(pid, UnmatchedReason.GROUP_SIZE, no_group(pid)))
    return gone


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


def _flow_bound(
    prep: Prepared, active: list[str], with_room: dict[str, BoolArray], caps: IntArray
) -> tuple[int, list[tuple[str, int]]]:
    """Max flow mentee -> eligible mentor with room -> sink (``caps`` per mentor).

    It relaxes group minimums and member-member rules, so its value bounds the number placed on the
    *full* eligibility graph; its arcs (one way to use every mentor) join the candidates. A plain max
    flow (push-relabel): the lottery-ordered min-cost version took 4-8 s at 5,000 mentees.
    """
    n, m = len(active), len(caps)
    if n == 0 or m == 0:
        return 0, []
    f = max_flow.SimpleMaxFlow()
    source, sink, mb, tb = 0, 1, 2, 2 + n
    tails = [np.full(int(with_room[p].sum()), r, dtype=np.int64) for r, p in enumerate(active)]
    heads = [np.flatnonzero(with_room[p]).astype(np.int64) for p in active]
    tail = np.concatenate(tails) if tails else np.zeros(0, dtype=np.int64)
    head = np.concatenate(heads) if heads else np.zeros(0, dtype=np.int64)
    f.add_arcs_with_capacity(np.zeros(n, dtype=np.int64), mb + np.arange(n, dtype=np.int64), np.ones(n, dtype=np.int64))
    first = f.num_arcs()
    f.add_arcs_with_capacity(mb + tail, tb + head, np.ones(len(tail), dtype=np.int64))
    f.add_arcs_with_capacity(
        tb + np.arange(m, dtype=np.int64), np.full(m, sink, dtype=np.int64), caps.astype(np.int64)
    )
    if f.solve(source, sink) != f.OPTIMAL:
        raise RuntimeError("placement bound flow failed")
    flows = f.flows(first + np.arange(len(tail), dtype=np.int64))
    used = np.flatnonzero(flows > 0)
    return int(f.optimal_flow()), [(active[int(tail[a])], int(head[a])) for a in used]


MODEL_VARS_PER_SECOND = 4_000
"""Facilitated groups: the largest CP-SAT model (mentee x group-slot variables) tried, per second of the
time limit. Building the model in Python costs about 20-40 us a variable on this 2-core machine, and the
levels need the rest of the limit; above it the run returns the greedy with its fit reassigned (a
deterministic decision: it depends on the input and the limit, never on the clock). Models up to
FULL_MODEL_LIMIT variables are always tried (they build in well under a second)."""


def _model_size(candidates: Mapping[str, list[tuple[int, int]]], free: IntArray, size_min: int) -> int:
    """The number of mentee x slot variables the facilitated model would have (before building it)."""
    demand: dict[int, int] = defaultdict(int)
    for options in candidates.values():
        for k, _ in options:
            demand[k] += 1
    slots = {k: min(int(free[k]), n // max(1, size_min)) for k, n in demand.items()}
    return sum(slots[k] for options in candidates.values() for k, _ in options)


def _polish_greedy(
    prep: Prepared,
    greedy: list[tuple[list[int], list[str]]],
    candidates: Mapping[str, list[tuple[int, int]]],
    mentor_ids: list[str],
) -> list[tuple[list[str], list[str]]]:
    """The greedy's groups (one mentor each) with their mentees reassigned between them for a better fit
    (``fit_polish``: every rule kept, the same open groups, so the same placed set and mentor loads)."""
    assign: dict[str, tuple[int, int]] = {}
    slot_of_group: list[tuple[int, int]] = []
    count: dict[int, int] = defaultdict(int)
    for ms, members in greedy:
        slot = (ms[0], count[ms[0]])
        count[ms[0]] += 1
        slot_of_group.append(slot)
        for pid in members:
            assign[pid] = slot
    open_by_mentor: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for slot in slot_of_group:
        open_by_mentor[slot[0]].append(slot)
    options = {pid: sorted(s for k, _ in candidates[pid] for s in open_by_mentor.get(k, [])) for pid in assign}
    fit_of = {pid: dict(candidates[pid]) for pid in assign}
    problem = Reassignment(
        assign=assign,
        options=options,
        fit={(pid, s): fit_of[pid][s[0]] for pid, opts in options.items() for s in opts},
        dept={pid: prep.by_id[pid].department for pid in assign},
        mentor_dept={s: prep.by_id[mentor_ids[s[0]]].department for s in slot_of_group},
        apart=frozenset(frozenset(pair) for pair in _apart_pairs(prep, sorted(assign))),
        size_min=prep.policy.group_members_min,
        size_max=prep.policy.group_members_max,
        max_same_department=prep.policy.max_same_department,
    )
    better = improve(problem)
    if problem.total(better) <= problem.total(assign):
        better = assign
    members_of: dict[tuple[int, int], list[str]] = defaultdict(list)
    for pid, slot in sorted(better.items()):
        members_of[slot].append(pid)
    return [([mentor_ids[slot[0]]], members_of[slot]) for slot in slot_of_group if members_of[slot]]


def _fit_start(
    prep: Prepared, levels: Levels, fm: _FacilitatedModel, fit_of: dict[str, IntArray], mentor_ids: list[str]
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
        options=options,
        fit=fit,
        dept={pid: prep.by_id[pid].department for pid in assign},
        mentor_dept={s: prep.by_id[mentor_ids[s[0]]].department for s in open_slots},
        apart=frozenset(frozenset(pair) for pair in _apart_pairs(prep, sorted(assign))),
        size_min=prep.policy.group_members_min,
        size_max=prep.policy.group_members_max,
        max_same_department=prep.policy.max_same_department,
        frozen=frozenset(locked),
    )
    better = improve(problem)
    if problem.total(better) <= problem.total(assign):
        return None
    start = list(values)
    for pid, slot in assign.items():
        start[fm.x_of[pid][slot].index] = 0
    for pid, slot in better.items():
        start[fm.x_of[pid][slot].index] = 1
    levels.start_from(start)
    return start, problem.total(better)


def _facilitated(prep: Prepared, progress: Progress, time_limit: float) -> MatchingResult:
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
    eligible_of: dict[str, BoolArray] = {}
    fit_of: dict[str, IntArray] = {}
    reasons: dict[str, Unplaced] = {}
    local_rank = np.argsort(np.argsort([prep.ranks[pid] for pid in mentor_ids], kind="stable"), kind="stable")
    for row, i in enumerate(prep.seekers):
        pid = seekers[row]
        failing = rules.failing(i)
        eligible = np.ones(len(mentors), dtype=bool)
        for mask in failing.values():
            eligible &= ~mask
        prep.drop_excluded_mentors(pid, eligible)
        with_room = eligible & (free > 0)
        if not eligible.any():
            text = f"no eligible mentor: {describe_exclusions(first_failing_counts(failing), pol)}"
            reasons[pid] = unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, text)
        elif not with_room.any():
            text = f"capacity exhausted: all {int(eligible.sum())} eligible mentors are full"
            reasons[pid] = unplaced(pid, UnmatchedReason.CAPACITY_EXHAUSTED, text)
        elif int(eligible.sum()) < pol.mentors_per_group:
            text = f"only {int(eligible.sum())} eligible mentors; the policy wants {pol.mentors_per_group} per group"
            reasons[pid] = unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, text)
        eligible_of[pid] = eligible
        fit_of[pid] = rules.fit(i)
    active = [pid for pid in seekers if pid not in reasons]
    room = {pid: eligible_of[pid] & (free > 0) for pid in active}
    exact = sum(int(free[room[pid]].sum()) for pid in active) <= FULL_MODEL_LIMIT and (
        not co_count or len(mentor_ids) <= ALL_CO_MENTORS_UP_TO
    )
    cand: dict[str, set[int]] = {}
    for pid in active:
        pos = np.flatnonzero(room[pid])
        if exact or len(pos) <= TOP_MENTORS:
            cand[pid] = {int(k) for k in pos}
        else:  # best fit first, ties by the mentors' own lottery order (a unique key)
            order_key = fit_of[pid][pos] * (len(mentor_ids) + 1) + (len(mentor_ids) - local_rank[pos])
            cand[pid] = {int(k) for k in pos[np.argsort(-order_key, kind="stable")[:TOP_MENTORS]]}
    greedy = greedy_facilitated(prep, {pid: eligible_of[pid] for pid in active}, fit_of, free)
    greedy_placed = sum(len(g_members) for _, g_members in greedy)
    placed_cap = min(len(active), (int(free.sum()) // max(1, pol.mentors_per_group)) * pol.group_members_max)
    if greedy_placed >= placed_cap:  # the greedy meets the counting bound: no flow needed to prove it
        flow_bound = greedy_placed
    else:
        flow_value, flow_arcs = _flow_bound(prep, active, room, free * pol.group_members_max)
        flow_bound = min(flow_value, placed_cap)
        for pid, k in flow_arcs:
            cand[pid].add(k)
    for ms, g_members in greedy:
        for pid in g_members:
            cand[pid].add(ms[0])
    candidates: dict[str, list[tuple[int, int]]] = {
        pid: [(k, int(fit_of[pid][k])) for k in sorted(cand.get(pid, ()))] for pid in seekers
    }

    mentor_apart = {(min(mpos[a], mpos[b]), max(mpos[a], mpos[b])) for a, b in _apart_pairs(prep, mentor_ids)}
    co_options = _co_mentor_candidates(prep, candidates, free, mentor_apart) if co_count else {}
    for ms, _ in greedy:
        for j in ms[1:]:
            if j not in co_options[ms[0]]:
                co_options[ms[0]].append(j)

    def build(part: list[str]) -> _FacilitatedModel:
        """The CP-SAT model of one component (every seeker when there is one)."""
        in_part = set(part)
        model = cp_model.CpModel()
        demand: dict[int, int] = defaultdict(int)
        for pid in part:
            for k, _ in candidates[pid]:
                demand[k] += 1
        slots: dict[int, list[cp_model.IntVar]] = {}
        for k, n in sorted(demand.items()):
            count = min(int(free[k]), n // pol.group_members_min)
            if co_count and len(co_options.get(k, [])) < co_count:
                count = 0
            if count > 0:
                slots[k] = [model.new_bool_var(f"open_{k}_{s}") for s in range(count)]
                for s in range(count - 1):
                    model.add(slots[k][s] >= slots[k][s + 1])  # symmetry: slots open in order
        co: dict[tuple[int, int], list[tuple[int, cp_model.IntVar]]] = {}
        for k, ys in slots.items():
            for s, y in enumerate(ys):
                if co_count:
                    helpers = [(j, model.new_bool_var(f"co_{k}_{s}_{j}")) for j in co_options[k]]
                    model.add(sum(v for _, v in helpers) == co_count * y)
                    co[(k, s)] = helpers
                    for (j1, v1), (j2, v2) in itertools.combinations(helpers, 2):
                        if (min(j1, j2), max(j1, j2)) in mentor_apart:
                            model.add_bool_or([~v1, ~v2])
        x: dict[tuple[str, int, int], cp_model.IntVar] = {}
        x_of: dict[str, dict[tuple[int, int], cp_model.IntVar]] = defaultdict(dict)
        placed: dict[str, cp_model.IntVar] = {}
        members_of: dict[tuple[int, int], list[tuple[str, cp_model.IntVar]]] = defaultdict(list)
        fit_terms = []
        for pid in part:
            mine = []
            for k, f in candidates[pid]:
                for s, y in enumerate(slots.get(k, [])):
                    var = model.new_bool_var(f"x_{pid}_{k}_{s}")
                    model.add_implication(var, y)
                    x[(pid, k, s)] = var
                    x_of[pid][(k, s)] = var
                    members_of[(k, s)].append((pid, var))
                    mine.append(var)
                    if f:
                        fit_terms.append(var * f)
            placed[pid] = model.new_bool_var(f"placed_{pid}")
            model.add(sum(mine) == placed[pid])
        for (k, s), members in members_of.items():
            y = slots[k][s]
            model.add(sum(v for _, v in members) >= pol.group_members_min * y)
            model.add(sum(v for _, v in members) <= pol.group_members_max * y)
            for j, c in co.get((k, s), []):
                for pid, v in members:
                    if not eligible_of[pid][j]:
                        model.add_bool_or([~v, ~c])  # a co-facilitator must be eligible for every member
                    elif fit_of[pid][j] > 0:
                        both = model.new_bool_var(f"cofit_{pid}_{k}_{s}_{j}")
                        model.add_implication(both, v)
                        model.add_implication(both, c)
                        model.add_bool_or([~v, ~c, both])  # exactly v AND c: solutions carry their true fit
                        fit_terms.append(both * int(fit_of[pid][j]))
            if pol.max_same_department is not None:
                mentor_dept = prep.by_id[mentor_ids[k]].department
                by_dept: dict[str, list[cp_model.IntVar]] = defaultdict(list)
                for pid, v in members:
                    by_dept[prep.by_id[pid].department].append(v)
                for j, c in co.get((k, s), []):
                    by_dept[prep.by_id[mentor_ids[j]].department].append(c)
                for dept, vs in by_dept.items():
                    room_left = pol.max_same_department - (1 if dept == mentor_dept else 0)
                    model.add(sum(vs) <= max(0, room_left))
        for a, b in _apart_pairs(prep, part):
            for shared_slot, va_ in x_of[a].items():
                vb_ = x_of[b].get(shared_slot)
                if vb_ is not None:
                    model.add_bool_or([~va_, ~vb_])
        for a, b in prep.locked:
            if a not in in_part and b not in in_part:
                continue  # another component's lock (or two mentors': noted once below)
            if (a in placed) != (b in placed):  # mentor + mentee: the mentee must sit in one of that mentor's slots
                mentee, mentor = (a, b) if a in placed else (b, a)
                k = mpos.get(mentor, -1)
                options = [v for (kk, _s), v in x_of[mentee].items() if kk == k]
                if options:
                    model.add(sum(options) == 1)
                    prep.locks_applied += 1
                else:
                    prep.notes.append(f"lock {mentor}/{mentee} not applied: not an eligible pair with room")
            elif a in placed and b in placed:  # two mentees: in one group together, or neither placed
                for slot_key in set(x_of[a]) | set(x_of[b]):
                    va, vb = x_of[a].get(slot_key), x_of[b].get(slot_key)
                    if va is not None and vb is not None:
                        model.add(va == vb)
                    elif va is not None:
                        model.add(va == 0)
                    elif vb is not None:
                        model.add(vb == 0)
                model.add(placed[a] == placed[b])
                prep.locks_applied += 1

        # each mentor's groups, led or co-facilitated, within free capacity; ordered slots for the load levels
        taken: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        for k, ys in slots.items():
            taken[k] += ys
        for helpers in co.values():
            for j, c in helpers:
                taken[j].append(c)
        opened: dict[str, list[cp_model.IntVar]] = {}
        for k, vs in sorted(taken.items()):
            if not co_count:
                opened[mentor_ids[k]] = vs  # lead slots are already ordered
                continue
            model.add(sum(vs) <= int(free[k]))
            count = min(len(vs), int(free[k]))
            ys = [model.new_bool_var(f"load_{k}_{s}") for s in range(count)]
            for s in range(count - 1):
                model.add(ys[s] >= ys[s + 1])
            model.add(sum(ys) == sum(vs))
            opened[mentor_ids[k]] = ys

        hint: dict[cp_model.IntVar, int] = {v: 0 for v in placed.values()}
        hint.update({v: 0 for v in x.values()})
        hint.update({y: 0 for ys in slots.values() for y in ys})
        hint.update({c: 0 for helpers in co.values() for _, c in helpers})
        next_slot: dict[int, int] = defaultdict(int)
        for ms, g_members in greedy:
            if g_members[0] not in in_part:
                continue
            k = ms[0]
            s = next_slot[k]
            next_slot[k] += 1
            if s < len(slots.get(k, [])):
                hint[slots[k][s]] = 1
                for pid in g_members:
                    if (pid, k, s) in x:
                        hint[x[(pid, k, s)]] = 1
                        hint[placed[pid]] = 1
                for j, c in co.get((k, s), []):
                    hint[c] = int(j in ms[1:])
        return _FacilitatedModel(model, placed, x_of, members_of, co, opened, fit_terms, hint)

    notes: list[str] = []
    if co_count and len(mentor_ids) > ALL_CO_MENTORS_UP_TO:
        notes.append(f"co-facilitators drawn from each lead's {TOP_CO_MENTORS} best-overlapping mentors")
    if not exact:
        notes.append(
            f"candidates pruned to each mentee's {TOP_MENTORS} best mentors, plus a lottery-ordered max flow's "
            f"and the greedy's; placed_bound is the max-flow bound on the full eligibility graph"
        )

    def finish(
        chosen_groups: list[tuple[list[str], list[str]]], levels: Levels | CombinedLevels | None, **kw: object
    ) -> MatchingResult:
        groups = [make_group(prep, ms, members) for ms, members in chosen_groups]
        placed_ids = {pid for _, members in chosen_groups for pid in members}

        def shares_a_mentor(pid: str) -> Callable[[str], bool]:
            mine = room[pid]
            return lambda p: p in room and bool((room[p] & mine).any())

        def no_group(pid: str) -> str:
            return (
                f"no group of {pol.group_members_min}-{pol.group_members_max} compatible members could be formed "
                f"with its {int(room[pid].sum())} eligible mentors with room (reporting lines, conflicts, "
                f"department bound or too few eligible people); nobody drawn ahead took its place"
            )

        gone = _unplaced_seekers(
            prep, seekers, placed_ids, reasons, shares_a_mentor,
            "placed people who shared an eligible mentor with room", no_group,
        )  # fmt: skip
        return _result(prep, _Outcome(groups, gone, levels, notes=notes, **kw))  # type: ignore[arg-type]

    greedy_spec = [([mentor_ids[k] for k in ms], g_members) for ms, g_members in greedy]
    size = _model_size(candidates, free, pol.group_members_min)
    too_large = size > max(FULL_MODEL_LIMIT, time_limit * MODEL_VARS_PER_SECOND)
    if too_large or time.perf_counter() > run_deadline(prep.started, time_limit):
        polished = greedy_spec if co_count or not too_large else _polish_greedy(prep, greedy, candidates, mentor_ids)
        why = (
            f"the CP-SAT model ({size:,} mentee-group variables) is too large to build and solve within the "
            f"{time_limit:g} s limit (at most {MODEL_VARS_PER_SECOND:,} per second of it, or {FULL_MODEL_LIMIT:,}): "
            "greedy groups in "
            "lottery order, fit improved by reassigning mentees between its open groups"
            if too_large
            else "the clock ran out while preparing the model: greedy groups in lottery order"
        )
        return finish(polished, None, placed_bound=flow_bound, fallback=True, why_greedy=why)
    for a, b in prep.locked:
        if a in mpos and b in mpos:
            prep.notes.append(f"lock {a}/{b} not applied: two mentors; lock a mentor with a mentee instead")
    parts = _components(prep, seekers, candidates, co_options, mentor_ids)
    if len(parts) <= 1:
        parts = [seekers]
    built = [build(part) for part in parts]
    runs = _component_runs(prep, progress, time_limit, [len(part) for part in parts], [fm.model for fm in built])
    for levels, fm in zip(runs, built, strict=True):
        levels.hint(fm.hint)
        levels.adopt_hint()
    # level 1 in every component before any other level: if the clock stops the run, every component
    # has its most-placed solution or, failing that, its share of the greedy's groups
    firsts = [
        levels.optimise("placed", sum(fm.placed.values()), maximize=True)
        for levels, fm in zip(runs, built, strict=True)
    ]
    quotas = [_quota(levels, total, fm.placed) for levels, fm, total in zip(runs, built, firsts, strict=True)]
    solved = [(levels, fm, q) for levels, fm, q in zip(runs, built, quotas, strict=True) if q is not None]
    if not solved:
        return finish(greedy_spec, None, placed_bound=flow_bound, fallback=True)
    proven = True
    for levels, fm, quota in solved:
        by_lottery = sorted((p for p in fm.placed if fm.x_of[p]), key=lambda p: prep.ranks[p])  # with a place to go
        _, part_proven = lottery_level(levels, fm.placed, by_lottery, quota)
        proven = proven and part_proven
    tops: list[tuple[Levels, cp_model.IntVar, cp_model.LinearExprT, bool]] = []
    for levels, fm, _ in solved:
        load = _load_terms(levels.model, prep, fm.opened)
        if load is not None:
            top, used = load
            found = _min_max_ratio(levels, prep, fm, mentor_ids, top).found
            tops.append((levels, top, used, found))
    _idle_under_shared_ratio(tops)
    for levels, fm, _ in solved:
        start = _fit_start(prep, levels, fm, fit_of, mentor_ids) if not co_count else None
        outcome = levels.optimise("fit", sum(fm.fit_terms), maximize=True)
        if start is not None and outcome.found and outcome.value < start[1]:  # the solver lost the hint
            levels.start_from(start[0])
            outcome.value = float(start[1])
        _settle_ratio(levels, prep, fm.opened)

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
    bound = flow_bound
    if exact and not unsolved:
        bound = min(bound, sum(_proven_most(t, flow_bound) for t in firsts))
    kept = [levels for levels, _, _ in solved]
    combined: Levels | CombinedLevels = kept[0] if len(kept) == 1 else CombinedLevels(kept)
    if len(runs) > 1:
        notes.append(f"solved as {len(runs)} independent components of the candidate graph (exact)")
    return finish(chosen_groups, combined, placed_bound=bound, proven_lottery=proven, exact=exact and not unsolved)


MIN_PART_SHARE = 0.05
"""Peer groups and teams: components smaller than this share of the people are solved together, in
bundles of at least this share, so a pool of many tiny components stays a few models whose budgets
add up to the configured limit (solving independent components in one model is exact too)."""
PART_FLOOR_S = 0.2
"""The least deterministic budget of one component's model (a share of the limit, never below this)."""


def _part_limit(size: int, weight: int, parts: int, time_limit: float) -> float:
    """One component's budget: its share of the people, at least PART_FLOOR_S (never above the limit)."""
    if parts <= 1:
        return time_limit
    return max(time_limit * size / weight, min(time_limit, PART_FLOOR_S))


def _bundle(parts: list[list[str]], weight: Callable[[str], int] = lambda _: 1) -> list[list[str]]:
    """Components in canonical order; the small ones (below MIN_PART_SHARE of the people) merged in that
    order into bundles of at least that share. Deterministic: depends on the components only."""
    size = {id(part): sum(weight(x) for x in part) for part in parts}
    least = math.ceil(sum(size.values()) * MIN_PART_SHARE)
    out: list[list[str]] = []
    small: list[str] = []
    small_size = 0
    for part in parts:
        if size[id(part)] >= least:
            out.append(part)
            continue
        small += part
        small_size += size[id(part)]
        if small_size >= least:
            out.append(small)
            small, small_size = [], 0
    if small:
        out.append(small)
    return sorted(out, key=lambda part: part[0])


def _component_runs(
    prep: Prepared, progress: Progress, time_limit: float, sizes: list[int], models: list[cp_model.CpModel]
) -> list[Levels]:
    """One ``Levels`` per component's model: a budget share by size, one wall-clock guard for the run."""
    deadline = run_deadline(prep.started, time_limit)
    weight = max(1, sum(sizes))
    runs = []
    for n, (size, model) in enumerate(zip(sizes, models, strict=True)):
        report = progress if len(models) == 1 else _part_progress(progress, n, len(models))
        limit = _part_limit(size, weight, len(models), time_limit)
        runs.append(Levels(model, prep.seed, limit, report, deadline=deadline))
    return runs


def _connected(nodes: list[str], neighbours: Callable[[str], list[str]]) -> list[list[str]]:
    """Connected components of a graph over ``nodes`` (each in ``nodes`` order), in order of their first node."""
    seen: set[str] = set()
    index = {pid: i for i, pid in enumerate(nodes)}
    out = []
    for start in nodes:
        if start in seen:
            continue
        seen.add(start)
        stack, part = [start], []
        while stack:
            a = stack.pop()
            part.append(a)
            for b in neighbours(a):
                if b in index and b not in seen:
                    seen.add(b)
                    stack.append(b)
        out.append(sorted(part, key=index.__getitem__))
    return out


@dataclass
class _PeerModel:
    model: cp_model.CpModel
    x: dict[tuple[str, int], cp_model.IntVar]
    placed: dict[str, cp_model.IntVar]
    in_group: dict[int, list[str]]
    fit_terms: Sequence[cp_model.LinearExprT]
    hint: dict[cp_model.IntVar, int]
    dense: bool
    has_pairs: bool
    allowed: dict[str, list[int]]
    """The groups each peer may join (empty: no place to go, e.g. no greedy group near it when pruned)."""


def _peer_components(
    peers: list[str], active: list[str], compat: BoolArray, locks: list[tuple[str, str]], row_of: dict[str, int]
) -> list[list[str]]:
    """Peers split into independent components, then bundled (``_bundle``). Two peers may share a
    group only if they are compatible (every rule holds for every pair of a peer group), so peers with
    no path of compatible pairs never meet: no variable or constraint links two components, placed and
    fit are sums over them, and each lottery decision depends on its own component only. Locked peers
    are joined (a lock with a peer who cannot be placed keeps the other out). Peers with no place to go
    and no lock belong to none."""
    wanted = set(active) | {p for pair in locks for p in pair}
    nodes = [pid for pid in peers if pid in wanted]
    is_active = set(active)
    mask = np.zeros(len(peers), dtype=bool)
    mask[[row_of[p] for p in active]] = True
    linked = (compat | compat.T) & mask  # the rules are symmetric; this makes sure
    locked: dict[str, list[str]] = defaultdict(list)
    for a, b in locks:
        locked[a].append(b)
        locked[b].append(a)

    def neighbours(pid: str) -> list[str]:
        near = [peers[int(j)] for j in np.flatnonzero(linked[row_of[pid]])] if pid in is_active else []
        return near + locked.get(pid, [])

    return _bundle(_connected(nodes, neighbours))


def _peer_groups(prep: Prepared, progress: Progress, time_limit: float, greedy_only: bool = False) -> MatchingResult:
    pol = prep.policy
    pool = Pool.encode(prep.people)
    peers = [prep.people[i].participant_id for i in prep.seekers]
    n = len(peers)
    row_of = {pid: r for r, pid in enumerate(peers)}
    rules = PairRules(pool, pol, np.array(prep.seekers, dtype=np.int64))
    compat = np.zeros((n, n), dtype=bool)
    fitm = np.zeros((n, n), dtype=np.int64)
    reasons: dict[str, Unplaced] = {}
    need = pol.group_members_min - 1
    for r, i in enumerate(prep.seekers):
        failing = rules.failing(i)
        if pol.seniority_rule is not SeniorityRule.PEERS_WITHIN:
            failing.pop("seniority", None)  # mentor/mentee seniority has no meaning between peers
        ok = np.ones(n, dtype=bool)
        for mask in failing.values():
            ok &= ~mask
        ok[r] = False
        compat[r] = ok
        fitm[r] = rules.fit(i)
        fitm[r, r] = 0
        if int(ok.sum()) < need:
            text = (
                f"only {int(ok.sum())} compatible peers, a group needs {pol.group_members_min}: "
                f"{describe_exclusions(first_failing_counts(failing), pol)}"
            )
            reasons[peers[r]] = unplaced(peers[r], UnmatchedReason.NO_ELIGIBLE_PARTNER, text)
    for pair in prep.excluded:
        a, b = sorted(pair)
        if a in row_of and b in row_of:
            compat[row_of[a], row_of[b]] = compat[row_of[b], row_of[a]] = False
    active = [pid for pid in peers if pid not in reasons]
    greedy = greedy_peers(prep, peers, compat, fitm)
    notes: list[str] = []

    def finish(chosen_groups: list[list[str]], levels: Levels | CombinedLevels | None, **kw: object) -> MatchingResult:
        groups = [make_group(prep, [], members) for members in chosen_groups]
        placed_ids = {pid for members in chosen_groups for pid in members}

        def compatible_with(pid: str) -> Callable[[str], bool]:
            r = row_of[pid]
            return lambda p: bool(compat[r, row_of[p]])

        def no_group(pid: str) -> str:
            return (
                f"no group of {pol.group_members_min}-{pol.group_members_max} mutually compatible peers with a "
                f"common language could include it ({int(compat[row_of[pid]].sum())} compatible peers)"
            )

        gone = _unplaced_seekers(
            prep, peers, placed_ids, reasons, compatible_with, "placed peers compatible with this one", no_group
        )
        return _result(prep, _Outcome(groups, gone, levels, notes=notes, **kw))  # type: ignore[arg-type]

    if greedy_only:
        return finish(greedy, None, placed_bound=len(active), fallback=True, baseline=True)
    lock_pairs: list[tuple[str, str]] = []
    for a, b in prep.locked:
        if a in row_of and b in row_of:
            lock_pairs.append((a, b))
            prep.locks_applied += 1
        else:
            prep.notes.append(f"lock {a}/{b} not applied: both must be peers in the pool")

    def build(part: list[str]) -> _PeerModel:
        """The CP-SAT model of one component: its own numbered groups, the same rules."""
        size = len(part)
        in_part = set(part)
        part_greedy = [members for members in greedy if members[0] in in_part]
        dense = size * max(1, size // pol.group_members_min) <= PEER_DENSE_LIMIT
        allowed: dict[str, list[int]] = {}
        if dense:
            n_groups = max(len(part_greedy), size // pol.group_members_min)
            # groups are interchangeable: number them by their first member (in ``part`` order), so the
            # r-th peer may only join groups 0..r (without it, 15 peers took 9 s to prove their fit)
            index = {pid: r for r, pid in enumerate(part)}
            part_greedy = sorted(part_greedy, key=lambda members: min(index[m] for m in members))
            allowed = {pid: list(range(min(n_groups, index[pid] + 1))) if pid not in reasons else [] for pid in part}
        else:  # each peer may join its greedy group or the greedy groups of its best compatible partners
            n_groups = len(part_greedy)
            local = {pid: g for g, members in enumerate(part_greedy) for pid in members}
            for pid in part:
                r = row_of[pid]
                partners = np.flatnonzero(compat[r])
                partners = partners[np.argsort(-fitm[r, partners], kind="stable")]
                groups_ok = {local[pid]} if pid in local else set()
                for q in partners:
                    if len(groups_ok) > PEER_PARTNERS:
                        break
                    if peers[int(q)] in local:
                        groups_ok.add(local[peers[int(q)]])
                allowed[pid] = sorted(groups_ok) if pid not in reasons else []
        model = cp_model.CpModel()
        x = {(pid, g): model.new_bool_var(f"x_{pid}_{g}") for pid in part for g in allowed[pid]}
        in_group: dict[int, list[str]] = defaultdict(list)
        for pid, g in x:
            in_group[g].append(pid)
        y = [model.new_bool_var(f"open_{g}") for g in range(n_groups)]
        placed = {pid: model.new_bool_var(f"placed_{pid}") for pid in part}
        if dense:
            for g in range(n_groups - 1):
                model.add(y[g] >= y[g + 1])
        for pid in part:
            model.add(sum(x[(pid, g)] for g in allowed[pid]) == placed[pid])
        for g in range(n_groups):
            ids = in_group[g]
            member_vars = [x[(pid, g)] for pid in ids]
            model.add(sum(member_vars) >= pol.group_members_min * y[g])
            model.add(sum(member_vars) <= pol.group_members_max * y[g])
            for pid in ids:
                model.add_implication(x[(pid, g)], y[g])
            if not ids:
                continue
            if pol.require_shared_language:
                languages = sorted({lang for pid in ids for lang in prep.by_id[pid].languages})
                speaks = {lang: model.new_bool_var(f"lang_{g}_{lang}") for lang in languages}
                model.add(sum(speaks.values()) <= 1)
                for pid in ids:
                    spoken = [speaks[lang] for lang in prep.by_id[pid].languages]
                    model.add(sum(spoken) >= 1).only_enforce_if(x[(pid, g)])
            for attr, width in (("tz", pol.max_timezone_distance_hours), ("level", pol.max_peer_level_spread)):
                if width is None or (attr == "level" and pol.seniority_rule is not SeniorityRule.PEERS_WITHIN):
                    continue
                values = {
                    pid: (prep.by_id[pid].utc_offset_minutes if attr == "tz" else prep.by_id[pid].level) for pid in ids
                }
                span = int(width * 60) if attr == "tz" else int(width)
                low = model.new_int_var(min(values.values()) - span, max(values.values()), f"{attr}_low_{g}")
                for pid, v in values.items():
                    model.add(low <= v).only_enforce_if(x[(pid, g)])
                    model.add(low + span >= v).only_enforce_if(x[(pid, g)])
            if pol.max_same_department is not None:
                by_dept: dict[str, list[cp_model.IntVar]] = defaultdict(list)
                for pid in ids:
                    by_dept[prep.by_id[pid].department].append(x[(pid, g)])
                for vs in by_dept.values():
                    if len(vs) > pol.max_same_department:
                        model.add(sum(vs) <= pol.max_same_department)
        for a, b in _apart_pairs(prep, part):
            for g in set(allowed[a]) & set(allowed[b]):
                model.add_bool_or([~x[(a, g)], ~x[(b, g)]])
        for a, b in lock_pairs:
            if a not in in_part:
                continue  # another component's lock (both ends are always in one component)
            for g in set(allowed[a]) | set(allowed[b]):  # together in one group, or neither placed
                va, vb = x.get((a, g)), x.get((b, g))
                if va is not None and vb is not None:
                    model.add(va == vb)
                else:
                    only = va if va is not None else vb
                    if only is not None:
                        model.add(only == 0)
            model.add(placed[a] == placed[b])
        # fit between peers: pair variables for each peer's best few compatible partners (same component)
        fit_terms = []
        pair_vars: dict[tuple[str, str, int], cp_model.IntVar] = {}
        pair_set: dict[tuple[str, str], int] = {}
        for pid in part:
            r = row_of[pid]
            options = np.flatnonzero(compat[r] & (fitm[r] > 0))
            for j in options[np.argsort(-fitm[r, options], kind="stable")][:TOP_PARTNERS]:
                a, b = sorted((pid, peers[int(j)]))
                pair_set[(a, b)] = int(fitm[r, int(j)])
        for (a, b), f in sorted(pair_set.items()):
            for g in sorted(set(allowed.get(a, [])) & set(allowed.get(b, []))):
                both = model.new_bool_var(f"pair_{a}_{b}_{g}")
                model.add_implication(both, x[(a, g)])
                model.add_implication(both, x[(b, g)])
                # both == x_a AND x_b exactly: any solution (e.g. the previous level's) carries its true fit
                model.add_bool_or([~x[(a, g)], ~x[(b, g)], both])
                fit_terms.append(both * f)
                pair_vars[(a, b, g)] = both
        hint: dict[cp_model.IntVar, int] = {v: 0 for v in x.values()}
        home_of = {pid: g for g, g_members in enumerate(part_greedy) for pid in g_members}
        for (a, b, g), both in pair_vars.items():
            hint[both] = int(home_of.get(a) == g and home_of.get(b) == g)
        hint.update({v: 0 for v in placed.values()})
        hint.update({v: 0 for v in y})
        for g, g_members in enumerate(part_greedy):
            hint[y[g]] = 1
            for pid in g_members:
                if (pid, g) in x:
                    hint[x[(pid, g)]] = 1
                    hint[placed[pid]] = 1
        return _PeerModel(model, x, placed, in_group, fit_terms, hint, dense, bool(pair_set), allowed)

    parts = _peer_components(peers, active, compat, lock_pairs, row_of)
    built = [build(part) for part in parts]
    if any(pm.has_pairs for pm in built):
        notes.append(
            "peer-group fit is optimised on each peer's best partners only, so no bound on the reported fit "
            "(every pair of a group) is proven: fit_bound and gap are left empty"
        )
    if not all(pm.dense for pm in built):
        notes.append(f"each peer may join its greedy group or its {PEER_PARTNERS} best partners' (pruned model)")
    runs = _component_runs(prep, progress, time_limit, [len(part) for part in parts], [pm.model for pm in built])
    for levels, pm in zip(runs, built, strict=True):
        levels.hint(pm.hint)
        levels.adopt_hint()
    # level 1 in every component before any other level (see _facilitated)
    firsts = [
        levels.optimise("placed", sum(pm.placed.values()), maximize=True)
        for levels, pm in zip(runs, built, strict=True)
    ]
    quotas = [_quota(levels, total, pm.placed) for levels, pm, total in zip(runs, built, firsts, strict=True)]
    solved = [(levels, pm, total, q) for levels, pm, total, q in zip(runs, built, firsts, quotas, strict=True)]
    solved = [entry for entry in solved if entry[3] is not None]
    if runs and not solved:
        return finish(greedy, None, placed_bound=len(active), fallback=True)
    proven = True
    for levels, pm, _, quota in solved:
        order = sorted((p for p in pm.placed if pm.allowed[p]), key=lambda p: prep.ranks[p])  # with a place to go
        _, part_proven = lottery_level(levels, pm.placed, order, int(quota or 0))
        proven = proven and part_proven
    for levels, pm, _, _ in solved:
        levels.optimise("fit", sum(pm.fit_terms) if pm.fit_terms else 0, maximize=True)
    chosen_groups = []
    bound = 0
    for levels, pm, total, _ in solved:
        for g in sorted(pm.in_group):
            chosen = [pid for pid in pm.in_group[g] if levels.value(pm.x[(pid, g)])]
            if chosen:
                chosen_groups.append(chosen)
        part_active = sum(1 for pid in pm.placed if pid not in reasons)
        if pm.dense:
            part_active = min(part_active, _proven_most(total, part_active))
        bound += part_active
    unsolved = {pid for pm, q in zip(built, quotas, strict=True) if q is None for pid in pm.placed}
    if unsolved:
        chosen_groups += [members for members in greedy if members[0] in unsolved]
        bound += sum(1 for pid in unsolved if pid not in reasons)
        notes.append(
            f"{len(runs) - len(solved)} of {len(runs)} components got no solution before the clock stopped the "
            "solver: their groups are the greedy's (lottery order, every rule)"
        )
        proven = False
    kept = [levels for levels, _, _, _ in solved]
    combined: Levels | CombinedLevels = kept[0] if len(kept) == 1 else CombinedLevels(kept)
    if len(runs) > 1:
        notes.append(f"solved as {len(runs)} models over independent components of the compatibility graph (exact)")
    exact = all(pm.dense for pm in built)
    return finish(
        chosen_groups, combined, placed_bound=bound, proven_lottery=proven, exact=exact, fit_is_model_objective=False
    )


@dataclass
class _TeamModel:
    model: cp_model.CpModel
    placed: dict[str, cp_model.IntVar]
    z: dict[tuple[str, int], cp_model.IntVar]
    opened: dict[str, list[cp_model.IntVar]]
    fit_terms: Sequence[cp_model.LinearExprT]
    hint: dict[cp_model.IntVar, int]


def _team_components(teams: list[str], eligible: dict[str, BoolArray], sizes: dict[str, int]) -> list[list[str]]:
    """Teams split into independent components, then bundled (``_bundle``): two teams are linked when
    they share an eligible mentor with room. A team's variables are its own mentors' assignments; a
    mentor's capacity, load slots and reporting-line exclusions (with another mentor of the same team)
    and a lock (a mentor eligible for the team) stay inside one component, so no variable or constraint
    links two of them."""
    by_mentor: dict[int, list[str]] = defaultdict(list)
    for team in teams:
        for k in map(int, np.flatnonzero(eligible[team])):
            by_mentor[k].append(team)

    def neighbours(team: str) -> list[str]:
        return [t for k in map(int, np.flatnonzero(eligible[team])) for t in by_mentor[k]]

    return _bundle(_connected(teams, neighbours), weight=sizes.__getitem__)


def _teams(prep: Prepared, progress: Progress, time_limit: float) -> MatchingResult:
    pol = prep.policy
    pool = Pool.encode(prep.people)
    mentors = np.array(prep.mentors, dtype=np.int64)
    mentor_ids = prep.mentor_ids
    mpos = {pid: k for k, pid in enumerate(mentor_ids)}
    free = np.array([prep.free(pid) for pid in mentor_ids], dtype=np.int64)
    rules = PairRules(pool, pol, mentors)
    teams: dict[str, list[int]] = defaultdict(list)
    gone: list[Unplaced] = []
    for i in prep.seekers:
        p = prep.people[i]
        if p.team_id is None:
            gone.append(unplaced(p.participant_id, UnmatchedReason.OTHER, "team mentoring needs a team_id"))
        else:
            teams[p.team_id].append(i)
    sizes: dict[str, int] = {}
    members_of: dict[str, list[str]] = {}
    team_of: dict[str, str] = {}
    eligible_of: dict[str, BoolArray] = {}
    fit_of: dict[str, IntArray] = {}
    for team, rows in sorted(teams.items()):
        ids = [prep.people[i].participant_id for i in rows]
        members_of[team] = ids
        for pid in ids:
            team_of[pid] = team
        if not pol.group_members_min <= len(rows) <= pol.group_members_max:
            bounds = f"{pol.group_members_min}-{pol.group_members_max}"
            for pid in ids:
                gone.append(
                    unplaced(pid, UnmatchedReason.GROUP_SIZE, f"team {team} has {len(rows)} members, not {bounds}")
                )
            continue
        clash = next(
            (
                (a, b)
                for a, b in itertools.combinations(sorted(ids), 2)
                if b in prep.by_id[a].conflicts_with
                or a in prep.by_id[b].conflicts_with
                or frozenset((a, b)) in prep.excluded
            ),
            None,
        )
        if clash is not None:
            text = (
                f"team {team} cannot be placed: its members {clash[0]} and {clash[1]} have a declared conflict or an "
                f"exclude override, and an intact team is never split; resolve it or take one of them out of the pool"
            )
            gone += [unplaced(pid, UnmatchedReason.OTHER, text) for pid in ids]
            continue
        eligible = np.ones(len(mentors), dtype=bool)
        fit = np.zeros(len(mentors), dtype=np.int64)
        counts: dict[str, int] = defaultdict(int)
        for i in rows:
            failing = rules.failing(i)
            for rule, n in first_failing_counts(failing).items():
                counts[rule] = max(counts[rule], n)
            for mask in failing.values():
                eligible &= ~mask
            prep.drop_excluded_mentors(prep.people[i].participant_id, eligible)
            fit += rules.fit(i)
        with_room = eligible & (free > 0)
        if int(eligible.sum()) < pol.mentors_per_group:
            text = f"no {pol.mentors_per_group} mentors eligible for every member: {describe_exclusions(counts, pol)}"
            gone += [unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, text) for pid in ids]
            continue
        if int(with_room.sum()) < pol.mentors_per_group:
            text = f"capacity exhausted: {int(eligible.sum())} mentors are eligible for every member, too few have room"
            gone += [unplaced(pid, UnmatchedReason.CAPACITY_EXHAUSTED, text) for pid in ids]
            continue
        sizes[team] = len(rows)
        eligible_of[team] = with_room
        fit_of[team] = fit
    lock_of: dict[str, int] = {}  # team -> a mentor locked to one of its members
    locks: list[tuple[str, int]] = []
    for a, b in prep.locked:
        if (a in mpos) != (b in mpos):  # a mentor and a team member: that mentor mentors the team
            mentor, member = (a, b) if a in mpos else (b, a)
            team = team_of.get(member, "")
            if team in eligible_of and eligible_of[team][mpos[mentor]]:
                locks.append((team, mpos[mentor]))
                lock_of[team] = mpos[mentor]
                prep.locks_applied += 1
                continue
        prep.notes.append(f"lock {a}/{b} not applied: teams are locked through a mentor and a team member")
    order = sorted(sizes, key=lambda t: lottery_key(prep.seed, f"team:{t}"))
    greedy = greedy_teams(prep, order, eligible_of, fit_of, free)
    mentor_apart = [(mpos[a], mpos[b]) for a, b in _apart_pairs(prep, mentor_ids)]

    def build(part: list[str]) -> _TeamModel:
        """The CP-SAT model of one component: its teams and their eligible mentors with room."""
        model = cp_model.CpModel()
        placed: dict[str, cp_model.IntVar] = {}
        z: dict[tuple[str, int], cp_model.IntVar] = {}
        fit_terms = []
        for team in part:
            placed[team] = model.new_bool_var(f"placed_{team}")
            options = []
            for k in map(int, np.flatnonzero(eligible_of[team])):
                var = model.new_bool_var(f"z_{team}_{k}")
                z[(team, k)] = var
                options.append(var)
                fit_terms.append(var * int(fit_of[team][k]))
            model.add(sum(options) == pol.mentors_per_group * placed[team])
        by_mentor: dict[int, list[cp_model.IntVar]] = defaultdict(list)
        for (_team, k), v in z.items():
            by_mentor[k].append(v)
        opened: dict[str, list[cp_model.IntVar]] = {}
        for pos in sorted(by_mentor):
            mine = by_mentor[pos]
            mentor = mentor_ids[pos]
            model.add(sum(mine) <= prep.free(mentor))
            # slots in order for the load levels: slot s is open when at least s+1 teams are taken
            count = min(len(mine), prep.free(mentor))
            ys = [model.new_bool_var(f"slot_{pos}_{s}") for s in range(count)]
            for s in range(count - 1):
                model.add(ys[s] >= ys[s + 1])
            model.add(sum(ys) == sum(mine))
            opened[mentor] = ys
        for ka, kb in mentor_apart:
            for team in part:
                if (team, ka) in z and (team, kb) in z:
                    model.add_bool_or([~z[(team, ka)], ~z[(team, kb)]])
        for team, k in locks:
            if team in placed:
                model.add(z[(team, k)] == 1)
        hint: dict[cp_model.IntVar, int] = {v: 0 for v in z.values()}
        for team, var in placed.items():
            hint[var] = int(team in greedy)
            for k in greedy.get(team, []):
                hint[z[(team, k)]] = 1
        return _TeamModel(model, placed, z, opened, fit_terms, hint)

    apart_set = {(min(a, b), max(a, b)) for a, b in mentor_apart}

    def placeable_alone(team: str) -> bool:
        """Is there a set of ``mentors_per_group`` eligible mentors with room, none apart from another
        (and the locked mentor among them)? If not, the team cannot be placed even with nobody else."""
        must = [lock_of[team]] if team in lock_of else []
        pool_k = [int(k) for k in np.flatnonzero(eligible_of[team]) if int(k) not in must]

        def extend(chosen: list[int], start: int) -> bool:
            if len(chosen) >= pol.mentors_per_group:
                return True
            for n in range(start, len(pool_k)):
                k = pool_k[n]
                if all((min(k, j), max(k, j)) not in apart_set for j in chosen) and extend([*chosen, k], n + 1):
                    return True
            return False

        return extend(must, 0)

    def finish(chosen: dict[str, list[str]], levels: Levels | CombinedLevels | None, **kw: object) -> MatchingResult:
        groups = [make_group(prep, chosen[team], members_of[team]) for team in sorted(chosen)]
        done = {u.participant_id for u in gone}
        lost_all = list(gone)
        for team in sorted(sizes):
            if team in chosen:
                continue
            key = lottery_key(prep.seed, f"team:{team}")
            rivals = [t for t in chosen if (eligible_of[t] & eligible_of[team]).any()]
            # a larger team wins on the first level (most people placed) whatever the draw
            ahead = [t for t in rivals if lottery_key(prep.seed, f"team:{t}") < key and sizes[t] <= sizes[team]]
            larger = [t for t in rivals if sizes[t] > sizes[team]]
            if not placeable_alone(team):
                code = UnmatchedReason.OTHER
                text = (
                    f"no {pol.mentors_per_group} of its {int(eligible_of[team].sum())} eligible mentors with room may "
                    f"work together (reporting line, declared conflict or exclude override between them; team {team})"
                )
            elif ahead:
                code = UnmatchedReason.LOST_LOTTERY
                text = (
                    f"lost the lottery to {len(ahead)} teams drawn ahead that shared its eligible mentors (team {team})"
                )
            elif larger:
                code = UnmatchedReason.CAPACITY_EXHAUSTED
                text = (
                    f"the capacity of its eligible mentors went to {len(larger)} larger teams "
                    f"(placing the most people comes before the lottery; team {team})"
                )
            else:
                code = UnmatchedReason.OTHER
                text = f"no {pol.mentors_per_group} eligible mentors with room may work together (team {team})"
            lost_all += [unplaced(pid, code, text) for pid in members_of[team] if pid not in done]
        return _result(prep, _Outcome(groups, lost_all, levels, **kw))  # type: ignore[arg-type]

    parts = _team_components(sorted(sizes), eligible_of, sizes)
    if not parts:
        parts = [[]]
    built = [build(part) for part in parts]
    runs = _component_runs(
        prep, progress, time_limit, [sum(sizes[t] for t in part) for part in parts], [tm.model for tm in built]
    )
    for levels, tm in zip(runs, built, strict=True):
        levels.hint(tm.hint)
        levels.adopt_hint()
    # level 1 in every component before any other level (see _facilitated)
    firsts = [
        levels.optimise("placed", sum(tm.placed[t] * sizes[t] for t in tm.placed), maximize=True)
        for levels, tm in zip(runs, built, strict=True)
    ]
    quotas = [_quota(levels, total, tm.placed, sizes) for levels, tm, total in zip(runs, built, firsts, strict=True)]
    solved = [(levels, tm, q) for levels, tm, q in zip(runs, built, quotas, strict=True) if q is not None]
    greedy_spec = {team: [mentor_ids[k] for k in ks] for team, ks in greedy.items()}
    if not solved:
        return finish(greedy_spec, None, placed_bound=sum(sizes.values()), fallback=True)
    proven = True
    for levels, tm, quota in solved:
        part_order = [t for t in order if t in tm.placed]
        # quota in people: max-people solutions may differ in their number of teams
        _, part_proven = lottery_level(levels, tm.placed, part_order, quota, weights=sizes)
        proven = proven and part_proven
    tops: list[tuple[Levels, cp_model.IntVar, cp_model.LinearExprT, bool]] = []
    for levels, tm, _ in solved:
        load = _load_terms(levels.model, prep, tm.opened)
        if load is not None:
            top, used = load
            levels._level = "max_load_ratio"
            found = levels.optimise("max_load_ratio", top, maximize=False, keep=False).found
            tops.append((levels, top, used, found))
    _idle_under_shared_ratio(tops)
    chosen: dict[str, list[str]] = {}
    for levels, tm, _ in solved:
        levels.optimise("fit", sum(tm.fit_terms) if tm.fit_terms else 0, maximize=True)
        _settle_ratio(levels, prep, tm.opened)
        for team, var in tm.placed.items():
            if levels.value(var):
                chosen[team] = [mentor_ids[k] for (t, k), v in tm.z.items() if t == team and levels.value(v)]
    bound = sum(_proven_most(t, sum(sizes[x] for x in tm.placed)) for t, tm in zip(firsts, built, strict=True))
    notes = []
    unsolved = [team for tm, q in zip(built, quotas, strict=True) if q is None for team in tm.placed]
    if unsolved:
        chosen.update({team: greedy_spec[team] for team in unsolved if team in greedy_spec})
        notes.append(
            f"{len(runs) - len(solved)} of {len(runs)} components got no solution before the clock stopped the "
            "solver: their teams' mentors are the greedy's (lottery order, every rule)"
        )
        proven = False
    kept = [levels for levels, _, _ in solved]
    combined: Levels | CombinedLevels = kept[0] if len(kept) == 1 else CombinedLevels(kept)
    if len(runs) > 1:
        notes.append(f"solved as {len(runs)} models over independent components (teams sharing no mentor; exact)")
    return finish(chosen, combined, placed_bound=bound, proven_lottery=proven, notes=notes)


def greedy_peer_groups(prep: Prepared) -> MatchingResult:
    """The peer-group greedy alone (lottery order, every rule), as the benchmarks' baseline."""
    return _peer_groups(prep, lambda _m, _f: None, 0.0, greedy_only=True)


def solve_groups(prep: Prepared, progress: Progress, time_limit: float) -> MatchingResult:
    pol = prep.policy
    if prep.inp.form is Form.TEAM:
        return _teams(prep, progress, time_limit)
    if pol.mentors_per_group == 0:
        return _peer_groups(prep, progress, time_limit)
    return _facilitated(prep, progress, time_limit)
