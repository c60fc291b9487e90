"""The fairness audit: how each department, level and location is served, with the gap between the
best- and worst-served visible group, so an administrator can show the program favours no one.

Cells are people: the active mentees and peers of the scope at the window's end with that attribute.
Cells under five people are suppressed with complementary suppression per dimension, and the gap is
taken over visible cells only (a gap through a hidden cell would reveal it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.metrics.domain import stats
from services.metrics.domain.facts import Facts, ParticipantFact
from services.metrics.domain.kpis import DAY, active_seekers, first_placement
from services.metrics.domain.report import Window, formula
from services.metrics.domain.suppression import Figure, suppressed_cells

DIMENSIONS: dict[str, Callable[[ParticipantFact], str]] = {
    "department": lambda p: p.department,
    "level": lambda p: str(p.level),
    "location": lambda p: p.location or "unknown",
}

MEASURES = {
    formula("match_rate", "Match rate", "people of the cell placed in a group / people of the cell"): "higher",
    formula(
        "time_to_match_median_days", "Time to match, median (days)", "median days from enrolment to first group"
    ): "lower",
    formula("mean_fit", "Mean fit", "mean fit of the groups the cell's placed people are in"): "higher",
    formula(
        "satisfaction",
        "Satisfaction (1-5)",
        "mean session rating (1-5) given in the window by respondents of the person's role in their groups "
        "(answers carry no respondent id, so a group's answers count for each of its members of that role)",
    ): "higher",
}


@dataclass(frozen=True)
class FairnessCell:
    people: Figure
    measures: dict[str, Figure]


@dataclass(frozen=True)
class DimensionAudit:
    dimension: str
    cells: dict[str, FairnessCell]
    gaps: dict[str, Figure]
    """best - worst over visible cells, per measure (absolute; 'lower' measures are best when lowest)"""


@dataclass(frozen=True)
class _Index:
    """What every cell's measures look up, built once per audit."""

    first: dict[tuple[str, str], datetime]
    groups_of: dict[tuple[str, str], list[str]]
    fit: dict[str, float]
    ratings: dict[tuple[str, str], list[float]]

    @classmethod
    def of(cls, facts: Facts, w: Window) -> _Index:
        groups_of: dict[tuple[str, str], list[str]] = defaultdict(list)
        for g in facts.groups:
            if g.matched_at < w.end:
                for m in g.members:
                    groups_of[(g.program_id, m.participant_id)].append(g.group_id)
        ratings: dict[tuple[str, str], list[float]] = defaultdict(list)
        for f in facts.feedback:
            if w.contains(f.given_at) and f.session_rating is not None:
                ratings[(f.group_id, f.respondent_role)].append(f.session_rating)
        return cls(first_placement(facts), groups_of, {g.group_id: g.fit for g in facts.groups}, ratings)


def _cell_measures(people: list[ParticipantFact], ix: _Index, w: Window) -> dict[str, float | None]:
    placed = [p for p in people if ix.first.get((p.program_id, p.participant_id), w.end) < w.end]
    days = [(ix.first[(p.program_id, p.participant_id)] - p.enrolled_at).total_seconds() / DAY for p in placed]
    fits = [ix.fit[gid] for p in placed for gid in ix.groups_of[(p.program_id, p.participant_id)]]
    ratings = [
        r for p in placed for gid in ix.groups_of[(p.program_id, p.participant_id)] for r in ix.ratings[(gid, p.role)]
    ]
    mean_rating = stats.mean(ratings)
    return {
        "match_rate": stats.share(len(placed), len(people)),
        "time_to_match_median_days": stats.median([max(0.0, d) for d in days]),
        "mean_fit": stats.mean(fits),
        "satisfaction": stats.on_five_point_scale(mean_rating) if mean_rating is not None else None,
    }


def audit(facts: Facts, w: Window) -> list[DimensionAudit]:
    seekers = active_seekers(facts, w.end)
    ix = _Index.of(facts, w)
    result = []
    for dimension, attribute in DIMENSIONS.items():
        groups: dict[str, list[ParticipantFact]] = defaultdict(list)
        for p in seekers:
            groups[attribute(p)].append(p)
        hidden = suppressed_cells({k: len(v) for k, v in groups.items()})
        cells = {}
        for key in sorted(groups):
            n = len(groups[key])
            if key in hidden:
                cells[key] = FairnessCell(Figure(None, n, True), {m: Figure(None, n, True) for m in MEASURES})
            else:
                values = _cell_measures(groups[key], ix, w)
                cells[key] = FairnessCell(Figure(float(n), n), {m: Figure(v, n) for m, v in values.items()})
        result.append(DimensionAudit(dimension, cells, _gaps(cells)))
    return result


def _gaps(cells: dict[str, FairnessCell]) -> dict[str, Figure]:
    gaps = {}
    for measure in MEASURES:
        visible = [c.measures[measure] for c in cells.values() if not c.measures[measure].suppressed]
        values = [f.value for f in visible if f.value is not None]
        n = sum(f.n for f in visible if f.value is not None)
        gaps[measure] = Figure(max(values) - min(values) if len(values) >= 2 else None, n)
    return gaps
