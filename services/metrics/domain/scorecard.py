"""The mentoring-culture scorecard: for each of the guides' eight hallmarks, the indicator the platform
can compute from its events, or a plain statement that it cannot."""

from __future__ import annotations

from dataclasses import dataclass

from services.metrics.domain.report import Kpi, Section
from services.metrics.domain.suppression import Figure, figure
from services.metrics.domain.tallies import Accountability


@dataclass(frozen=True)
class Hallmark:
    hallmark: str
    indicator: str
    figure: Figure | None
    statement: str
    """what the indicator shows, or why the hallmark cannot be measured here"""

    @property
    def measurable(self) -> bool:
        return self.figure is not None


def _kpi(sections: list[Section], key: str) -> Figure:
    for s in sections:
        for k in s.kpis:
            if k.key == key:
                return k.figure
    raise KeyError(key)


def _accountability(a: Accountability) -> Figure:
    """Share of relationships open at the window's end with agreed expectations and at least one goal."""
    return figure(a.with_expectations_and_goal / a.open_groups if a.open_groups else None, a.people)


def scorecard(a: Accountability, sections: list[Section], open_alerts: int, at_risk: int) -> list[Hallmark]:
    several = _kpi(sections, "people_in_several_relationships")
    active = _kpi(sections, "active_participants")
    if several.suppressed or several.value is None or not active.value:
        share_several = Figure(None, active.n, several.suppressed)
    else:
        share_several = figure(several.value / active.value, active.n)
    return [
        Hallmark(
            "accountability",
            "share of open relationships with agreed expectations and at least one goal set",
            _accountability(a),
            "goals, expectations and progress are recorded by the sessions service; feedback by the feedback service",
        ),
        Hallmark(
            "alignment",
            "not measurable",
            None,
            "no event links a program or a goal to the organisation's goals; goal categories alone do not show it",
        ),
        Hallmark(
            "communication",
            "not measurable",
            None,
            "the platform sees meetings and answers, not how the program is communicated in the organisation",
        ),
        Hallmark(
            "value_and_visibility",
            "Net Promoter Score of the program (would_recommend)",
            _kpi(sections, "nps"),
            "a proxy for perceived value; recognition and stories are not recorded by the platform",
        ),
        Hallmark(
            "demand",
            "mentees who became mentors in the window",
            _kpi(sections, "mentees_became_mentors"),
            "with enrolments by role and mentees per mentor in the participation KPIs",
        ),
        Hallmark(
            "multiple_opportunities",
            "share of active participants in two or more open relationships",
            share_several,
            "people in several programs are counted in the participation KPIs",
        ),
        Hallmark(
            "education_and_training",
            "not measurable",
            None,
            "no event records mentor training or workshops; the platform cannot tell who was trained",
        ),
        Hallmark(
            "safety_nets",
            "open alerts (relationships at risk in brackets in the statement)",
            Figure(float(open_alerts), open_alerts),
            f"{at_risk} relationships at or above their program's risk threshold; alerts are raised and "
            "cleared automatically (no people behind the count: it is not suppressed)",
        ),
    ]


def as_section(hallmarks: list[Hallmark]) -> Section:
    """The scorecard in the report shape, for CSV and page."""
    return Section(
        "scorecard", kpis=[Kpi(h.hallmark, h.figure or Figure(None, 0), measurable=h.measurable) for h in hallmarks]
    )
