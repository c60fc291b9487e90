"""Facilitated groups, level 1 (placed): each component capped by the proven placement bound, and kept
at the greedy's hint without a solve when the hint meets that bound."""

from __future__ import annotations

from services.matching.domain.facilitated_model import FacilitatedModel
from services.matching.domain.levels import LevelOutcome, Levels


def add_placed_cuts(
    built: list[FacilitatedModel], parts: list[list[str]], greedy: list[tuple[list[int], list[str]]], bound: int
) -> list[int]:
    """Each component places at most the proven bound less what the greedy's groups place in the
    others: the components share nothing, so a component's best placement together with the greedy's
    groups elsewhere is one grouping of the pool, within the bound. When the greedy (with its chains)
    meets the bound, level 1 is then proven at its hint (``placed_by_hint``). Returns what the greedy's
    groups place in each component."""
    where = {pid: c for c, part in enumerate(parts) for pid in part}
    hinted = [0] * len(parts)
    for _, members in greedy:
        hinted[where[members[0]]] += len(members)
    for c, fm in enumerate(built):
        fm.model.add(sum(fm.placed.values()) <= bound - (sum(hinted) - hinted[c]))
    return hinted


def placed_by_hint(levels: Levels, fm: FacilitatedModel, hinted: int, proven: bool) -> LevelOutcome:
    """Level 1 of one component. When the greedy's groups meet the proven placement bound (``proven``)
    and the standing solution is that hint, the component's cut (``add_placed_cuts``) makes the hint's
    count its optimum: kept without a solve, which would only have re-proven it (0.7 s of wall time and
    a deterministic budget the clock could cut at 1,000 mentees). Otherwise the level is solved."""
    expr = sum(fm.placed.values())
    values = levels.values
    if proven and values is not None and sum(values[v.index] for v in fm.placed.values()) == hinted:
        return levels.keep_standing("placed", expr, hinted, maximize=True)
    return levels.optimise("placed", expr, maximize=True)
