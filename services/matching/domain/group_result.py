"""Result building for the group forms: the run's status, bounds, notes and the unplaced reasons.

One home for what every group form reports: how a run's levels become ``Stats`` (status, proven
bounds, gap, notes) and why each person left out is out (their own eligibility, the lottery, or no
group of the allowed size).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from contracts.events import UnmatchedReason
from services.matching.domain.common import (
    Prepared,
    loads_after,
    max_load_ratio,
    unplaced,
)
from services.matching.domain.levels import (
    CombinedLevels,
    LevelOutcome,
    Levels,
)
from services.matching.domain.load_levels import RATIO_SCALE
from services.matching.domain.model import Group, MatchingResult, Stats, Unplaced


@dataclass
class Outcome:
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
    locks_counted: bool = False
    """``prep.locks_applied`` counts the locks that hold in ``groups`` (whatever path made them)."""


def quota_of(
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


def proven_most(outcome: LevelOutcome, otherwise: int) -> int:
    """A maximisation level's proven upper bound: its value when optimal, else its solver bound, else
    ``otherwise`` (a level that only kept the standing solution proves nothing)."""
    if outcome.status == "OPTIMAL":
        return int(outcome.value)
    if math.isnan(outcome.bound):
        return otherwise
    return math.floor(outcome.bound + 1e-6)


def level_value(outcome: LevelOutcome) -> float:
    """A level's reported value: the max load ratio as a ratio (its level works in 1/RATIO_SCALE)."""
    if outcome.name == "max_load_ratio":
        return round(outcome.value / RATIO_SCALE, 6)
    return outcome.value


def group_result(prep: Prepared, o: Outcome) -> MatchingResult:
    load = loads_after(prep, o.groups)
    fit = float(sum(g.fit for g in o.groups))
    placed = sum(len([m for m in g.members if m.role.value != "mentor"]) for g in o.groups)
    notes = [*prep.notes, *o.notes]
    fit_bound: float | None = None
    gap: float | None = None
    levels = o.levels
    if (o.fallback or o.baseline) and not o.locks_counted and (prep.locks_applied or prep.locked):
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
            notes.append(f"max load ratio {level_value(ratio):g}: proven the least")
        elif ratio is not None:
            low = round(ratio.bound / RATIO_SCALE, 6)
            notes.append(f"max load ratio {level_value(ratio):g}: not proven the least (lower bound {low:g})")
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
        levels={x.name: level_value(x) for x in (levels.outcomes if levels else []) if x.found},
        notes=notes,
        solves=levels.records if levels is not None else [],
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


def lost_lottery(
    prep: Prepared,
    pid: str,
    placed_ids: set[str],
    competes: Callable[[str], bool],
    what: str,
    ahead: int | None = None,
) -> Unplaced | None:
    """LOST_LOTTERY when placed people drawn ahead competed for the same places; None otherwise.
    ``ahead``, when the caller counted them already (array work), replaces the count here."""
    if ahead is None:
        ahead = sum(1 for p in placed_ids if prep.ranks[p] < prep.ranks[pid] and competes(p))
    if not ahead:
        return None
    return unplaced(
        pid,
        UnmatchedReason.LOST_LOTTERY,
        f"lost the lottery to {ahead} equally eligible people drawn ahead ({what}); "
        f"this one ranked {prep.seeker_rank[pid] + 1} of {len(prep.seeker_rank)}",
    )


def _nobody(_pid: str) -> bool:
    return False


def unplaced_seekers(
    prep: Prepared,
    seekers: Iterable[str],
    placed_ids: set[str],
    reasons: Mapping[str, Unplaced],
    competes_with: Callable[[str], Callable[[str], bool]],
    what: str,
    no_group: Callable[[str], str],
    ahead_of: Callable[[str], int] | None = None,
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
        ahead = ahead_of(pid) if ahead_of is not None else None
        # ``competes_with`` only when ``ahead`` is not counted already: facilitated groups build a set of up
        # to every placed person per left-out one there (2.4 s for 112 of 50,000), unused with a count
        competes = competes_with(pid) if ahead is None else _nobody
        lost = lost_lottery(prep, pid, placed_ids, competes, what, ahead)
        gone.append(lost or unplaced(pid, UnmatchedReason.GROUP_SIZE, no_group(pid)))
    return gone
