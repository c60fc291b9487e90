"""The fairness audit: how each department, level and location is served, with the gap between the
best- and worst-served visible group, so an administrator can show the program favours no one.

Cells are people: the active mentees and peers of the scope at the window's end with that attribute.
Cells under five people are suppressed with complementary suppression per dimension, and the gap is
taken over visible cells only (a gap through a hidden cell would reveal it).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.metrics.domain import stats
from services.metrics.domain.report import formula
from services.metrics.domain.suppression import Figure, suppressed_cells
from services.metrics.domain.tallies import FairnessCell as Tally

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


def _measures(c: Tally) -> dict[str, float | None]:
    return {
        "match_rate": stats.share(c.placed, c.people),
        "time_to_match_median_days": c.days_to_match_median,
        "mean_fit": c.mean_fit,
        "satisfaction": stats.on_five_point_scale(c.mean_rating) if c.mean_rating is not None else None,
    }


def audit(tallies: dict[str, dict[str, Tally]]) -> list[DimensionAudit]:
    """Each dimension's cells, suppressed (with complementary suppression), and the gaps over the visible."""
    result = []
    for dimension, tallied in tallies.items():
        hidden = suppressed_cells({k: c.people for k, c in tallied.items()})
        cells = {}
        for key in sorted(tallied):
            n = tallied[key].people
            if key in hidden:
                cells[key] = FairnessCell(Figure(None, n, True), {m: Figure(None, n, True) for m in MEASURES})
            else:
                values = _measures(tallied[key])
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
