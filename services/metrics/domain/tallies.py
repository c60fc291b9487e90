"""What the KPI formulas are computed from: counts, sums and quantiles of one scope over one window.

A report is two steps. First the scope's facts are reduced to these tallies, either in Python from the
facts (:mod:`services.metrics.domain.tally`, the plain statement of each count, used by the dashboard
and as the reference in tests) or by SQL aggregates in PostgreSQL (:mod:`services.metrics.adapters.
aggregates`, what the API runs, so a request on a 50,000-person program never moves its rows into
Python); a test holds the two equal. Then the formulas (:mod:`services.metrics.domain.kpis`,
:mod:`~services.metrics.domain.fairness`, :mod:`~services.metrics.domain.scorecard`) turn tallies into
figures, ratios and suppressed cells, the same whichever way the tallies were made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.metrics.domain.risk import RelationshipState

ROLES = ("mentor", "mentee", "peer")
UNPLACED_REASONS = (
    "no_eligible_partner",
    "capacity_exhausted",
    "lost_lottery",
    "group_size",
    "other",
    "not_yet_matched",
)
CLOSED_OUTCOMES = ("completed", "withdrawn", "faded")


@dataclass(frozen=True)
class Participation:
    enrolled_by_role: dict[str, int]
    active: int
    active_mentors: int
    active_mentees: int
    in_several_relationships: int
    in_several_programs: int
    became_mentors: int
    withdrawn: int


@dataclass(frozen=True)
class Matching:
    seekers: int
    """active mentees and peers at the window's end"""
    placed: int
    days_to_match_median: float | None
    days_to_match_p90: float | None
    days_to_match_n: int
    mean_fit: float | None
    fit_people: int
    """people in the groups formed in the window"""
    loads: dict[int, int]
    """open relationships -> active mentors carrying that many (idle mentors under 0)"""
    max_load_ratio: float | None
    unplaced: dict[str, int]
    """reason -> active mentees and peers not placed"""
    overrides: int
    """admin overrides recorded in the window"""
    override_people: int
    """participants named in them"""


@dataclass(frozen=True)
class OpenRelationship:
    state: RelationshipState
    members: tuple[str, ...]


@dataclass(frozen=True)
class Engagement:
    held: int
    held_people: int
    expected: float
    """sessions expected in the window from every relationship open in it, by its cadence"""
    expected_people: int
    attended: int
    member_slots: int
    """sum over sessions held of the group's size"""
    cancelled: int
    cancelled_people: int
    rescheduled: int
    rescheduled_people: int
    open_relationships: list[OpenRelationship]
    """open at the window's end, with what their risk scores need"""
    closed: dict[str, tuple[int, int]]
    """outcome -> (relationships closed in the window, people in them)"""


@dataclass(frozen=True)
class Outcomes:
    goals_set: int
    goals_set_people: int
    goals_progressed: int
    goals_progressed_people: int
    goals_completed: int
    goals_completed_people: int
    mean_rating: float | None
    """mean session rating as a share of its scale"""
    ratings: int
    promoters: int
    detractors: int
    recommend_answers: int
    helps_agree: int
    helps_answers: int
    engaged_agree: int
    engaged_answers: int
    mean_pairing_fit: float | None
    pairing_answers: int
    cohort: int
    """enrolments active at the window's start or made in it"""
    kept: int


@dataclass(frozen=True)
class FairnessCell:
    """The active mentees and peers of one department, level or location."""

    people: int
    placed: int
    days_to_match_median: float | None
    mean_fit: float | None
    mean_rating: float | None
    """mean session rating as a share of its scale"""


@dataclass(frozen=True)
class Accountability:
    open_groups: int
    with_expectations_and_goal: int
    people: int


@dataclass(frozen=True)
class Tallies:
    participation: Participation
    matching: Matching
    engagement: Engagement
    outcomes: Outcomes
    accountability: Accountability
    fairness: dict[str, dict[str, FairnessCell]] = field(default_factory=dict)
    """dimension -> cell -> tally (empty when the audit was not asked for)"""
