"""Fair load for the group forms (docs/matching.md): the least max load ratio, then the fewest idle
mentors. Neither rewards fewer or larger groups.

The ratio level searches the few values the ratio can take ((load + n) / capacity): a max flow gives
a proven lower bound, then each threshold is one feasibility check; components share one ratio.
"""

from __future__ import annotations

import math
from collections import defaultdict

from ortools.graph.python import max_flow
from ortools.sat.python import cp_model

from services.matching.domain.common import (
    Prepared,
)
from services.matching.domain.facilitated_model import FacilitatedModel
from services.matching.domain.levels import (
    SHARES,
    LevelOutcome,
    Levels,
)

RATIO_SCALE = 1000


def load_terms(
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


def ratio_of(prep: Prepared, mentor: str, groups: int) -> int:
    """The scaled load ratio a mentor reaches with ``groups`` more groups (as the model's ``top`` sees it)."""
    return -(-(prep.load[mentor] + groups) * RATIO_SCALE // prep.capacity[mentor])


def ratio_floor(prep: Prepared, opened: dict[str, list[cp_model.IntVar]]) -> int:
    """The least ``top`` any solution can have: every mentor's load from before this run."""
    return max((ratio_of(prep, m, 0) for m in opened), default=0)


def ratio_thresholds(prep: Prepared, opened: dict[str, list[cp_model.IntVar]]) -> list[int]:
    """Every value the max load ratio can take (it is some mentor's (load + n) / capacity), ascending."""
    low = ratio_floor(prep, opened)
    values = {ratio_of(prep, m, n) for m, slots in opened.items() for n in range(1, len(slots) + 1)}
    return sorted({low} | {v for v in values if v > low})


def allowed_groups(prep: Prepared, mentor: str, slots: int, threshold: int) -> int:
    """How many groups a mentor may take (lead or co-facilitate) with its ratio at most ``threshold``."""
    n = (threshold * prep.capacity[mentor]) // RATIO_SCALE - prep.load[mentor]
    return max(0, min(slots, n))


def ratio_is_flow_feasible(
    prep: Prepared, fm: FacilitatedModel, mentor_ids: list[str], must: list[str], threshold: int
) -> bool:
    """A necessary condition for "max load ratio <= threshold": the people the lottery placed fit
    (max flow, mentee -> candidate lead -> sink, lead capacity = its allowed groups x group maximum),
    and the mentors' allowed groups cover the groups that many people need (with co-facilitators,
    ``mentors_per_group`` mentors each). It relaxes group minimums and member-member rules."""
    pol = prep.policy
    allowed = {m: allowed_groups(prep, m, len(slots), threshold) for m, slots in fm.opened.items()}
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


def settle_ratio(levels: Levels, prep: Prepared, opened: dict[str, list[cp_model.IntVar]]) -> None:
    """After the last level: the max load ratio level reports what the solution that stands achieves
    (exact, scaled by RATIO_SCALE); the mentors-used level may have lowered it below an unproven level value."""
    outcome = next((o for o in levels.outcomes if o.name == "max_load_ratio" and o.found), None)
    if outcome is None or levels.values is None or not opened:
        return
    exact = max((prep.load[m] + sum(levels.value(y) for y in ys)) / prep.capacity[m] for m, ys in opened.items())
    outcome.value = exact * RATIO_SCALE
    outcome.bound = min(outcome.bound, outcome.value)


def achieved_ratio(prep: Prepared, levels: Levels, opened: dict[str, list[cp_model.IntVar]]) -> int:
    """The scaled max load ratio of the solution that stands (over this model's mentors)."""
    return max((ratio_of(prep, m, sum(levels.value(y) for y in ys)) for m, ys in opened.items()), default=0)


def min_max_ratio(
    levels: Levels,
    prep: Prepared,
    fm: FacilitatedModel,
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
    levels.level = "max_load_ratio"
    levels.progress("solving level max_load_ratio", levels.done_share)
    budget = levels.budget(share)
    spent_before = levels.deterministic_used
    must = sorted(
        pid for pid, v in fm.placed.items() if levels.fixed.get(v.index) == 1
    )  # people the lottery decided in
    thresholds = ratio_thresholds(prep, fm.opened)
    best = achieved_ratio(prep, levels, fm.opened)
    lo, hi = 0, len(thresholds) - 1  # the flow test is monotone in the threshold: binary search
    while lo < hi:
        mid = (lo + hi) // 2
        if ratio_is_flow_feasible(prep, fm, mentor_ids, must, thresholds[mid]):
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
            best = min(best, achieved_ratio(prep, levels, fm.opened))
            proven = True
            break
        bound = thresholds[position + 1] if position + 1 < len(thresholds) else best
        position += 1
    proven = proven or best <= bound
    levels.model.add(top >= min(bound, best))  # every threshold below was proven infeasible
    left = budget - (levels.deterministic_used - spent_before)
    if not proven and left > 0.01:  # a check ran out undecided: minimise from the best found instead
        levels.model.minimize(top)
        if levels.solve(left):
            best = min(best, achieved_ratio(prep, levels, fm.opened))
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
    levels.report("max_load_ratio", share)
    return outcome


def idle_under_shared_ratio(
    tops: list[tuple[Levels, cp_model.IntVar, cp_model.LinearExprT, bool]], standing: list[int] | None = None
) -> None:
    """Components are solved apart but the maximum load ratio is one figure for the run: the largest of
    the components' minima (each found by its own load level) caps every component, which then uses as
    many of its mentors as it can under that cap (fewest idle). Exact, since each component's minimum is
    reachable within the cap and the mentors-used count is a sum over components. ``standing`` (mentors
    used in each component's standing solution): keep those counts instead of searching for more."""
    ratio = max((int(levels.outcomes[-1].value) for levels, _, _, found in tops if found), default=0)
    for n, (levels, top, used, found) in enumerate(tops):
        if found:
            levels.model.add(top <= ratio)
        if standing is None:
            levels.optimise("mentors_used", used, maximize=True)
        else:
            levels.keep_standing("mentors_used", used, standing[n], maximize=True, proven=False)
