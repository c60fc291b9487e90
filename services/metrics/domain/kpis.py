"""KPI formulas over a scope's tallies (one program, one form, the organisation) and one window.

Each KPI's formula is registered next to the code that computes it (``formula(...)``), so the API
documentation quotes exactly what runs. The counts come in :class:`~services.metrics.domain.tallies.
Tallies` (counted by SQL aggregates for the API, in Python from the facts for the dashboard and as the
tests' reference); here they become ratios and figures. Every figure carries the number of people
behind it and is suppressed below five (:mod:`services.metrics.domain.suppression`).
"""

from __future__ import annotations

from datetime import datetime

from services.metrics.domain import stats
from services.metrics.domain.report import Breakdown, Kpi, Section, Window, formula
from services.metrics.domain.risk import risk
from services.metrics.domain.suppression import breakdown, count, figure
from services.metrics.domain.tallies import (
    CLOSED_OUTCOMES,
    Engagement,
    Matching,
    OpenRelationship,
    Outcomes,
    Participation,
    Tallies,
)
from services.metrics.domain.thresholds import DEFAULT_THRESHOLDS, Thresholds

# --- participation and demand ------------------------------------------------------------------

ENROLMENTS = formula("enrolments_by_role", "Enrolments by role", "count of enrolments made in the window, per role")
ACTIVE = formula("active_participants", "Active participants", "enrolments not withdrawn at the window's end")
RATIO = formula(
    "mentees_per_mentor",
    "Mentees per mentor",
    "active mentees / active mentors at the window's end; suppressed when either count is under 5",
)
SEVERAL_REL = formula(
    "people_in_several_relationships",
    "People in several relationships",
    "active participants of the scope in two or more open relationships (any program) at the window's end",
)
SEVERAL_PROG = formula(
    "people_in_several_programs",
    "People in several programs",
    "active participants of the scope actively enrolled in two or more programs at the window's end",
)
BECAME = formula(
    "mentees_became_mentors",
    "Mentees who became mentors",
    "people who enrolled as mentor in the window and had enrolled as mentee (any program) before",
)
WITHDRAWALS = formula("withdrawals", "Withdrawals", "enrolments withdrawn in the window")


def participation(t: Participation) -> Section:
    s = Section("participation")
    roles = t.enrolled_by_role
    s.breakdowns.append(Breakdown(ENROLMENTS, breakdown({r: (float(n), n) for r, n in roles.items()})))
    s.kpis.append(Kpi(ACTIVE, count(t.active, t.active)))
    mentors, mentees = t.active_mentors, t.active_mentees
    s.kpis.append(Kpi(RATIO, figure(mentees / mentors if mentors else None, min(mentors, mentees))))
    s.kpis.append(Kpi(SEVERAL_REL, count(t.in_several_relationships, t.in_several_relationships)))
    s.kpis.append(Kpi(SEVERAL_PROG, count(t.in_several_programs, t.in_several_programs)))
    s.kpis.append(Kpi(BECAME, count(t.became_mentors, t.became_mentors)))
    s.kpis.append(Kpi(WITHDRAWALS, count(t.withdrawn, t.withdrawn)))
    return s


# --- matching ----------------------------------------------------------------------------------

PLACED = formula(
    "placed_share",
    "Share placed",
    "active mentees and peers in a group of their program at the window's end / active mentees and peers",
)
TTM_MEDIAN = formula(
    "time_to_match_median_days",
    "Time to match, median (days)",
    "median of (first group.matched time - enrolment time) in days over people first placed in the window",
)
TTM_P90 = formula(
    "time_to_match_p90_days",
    "Time to match, p90 (days)",
    "90th percentile by nearest rank of the same durations",
)
FIT = formula("mean_fit", "Mean fit", "mean of group.matched fit over groups formed in the window")
MAX_LOAD = formula(
    "mentor_max_load_ratio",
    "Mentor max load ratio",
    "max over active mentors of open relationships (all programs) / declared capacity, at the window's end",
)
GINI = formula(
    "mentor_load_gini",
    "Mentor load Gini",
    "Gini of open relationships per active mentor (idle mentors count as 0): sum |x_i - x_j| / (2 n^2 mean)",
)
LOADS = formula("mentor_load_histogram", "Mentors by load", "active mentors per number of open relationships")
UNPLACED = formula(
    "unplaced_by_reason",
    "Unplaced by reason",
    "active mentees and peers not in a group at the window's end, by the reason of their latest "
    "participant.unmatched (not_yet_matched when no run considered them)",
)
OVERRIDES = formula(
    "overrides",
    "Admin overrides",
    "match.override.recorded events in the window: overrides (lock_pair / exclude_pair) an admin recorded in "
    "matching; n = the participants they name",
)


def matching(t: Matching) -> Section:
    s = Section("matching")
    s.kpis.append(Kpi(PLACED, figure(stats.share(t.placed, t.seekers), t.seekers)))
    s.kpis.append(Kpi(TTM_MEDIAN, figure(t.days_to_match_median, t.days_to_match_n)))
    s.kpis.append(Kpi(TTM_P90, figure(t.days_to_match_p90, t.days_to_match_n)))
    s.kpis.append(Kpi(FIT, figure(t.mean_fit, t.fit_people)))
    mentors = sum(t.loads.values())
    s.kpis.append(Kpi(MAX_LOAD, figure(t.max_load_ratio, mentors)))
    s.kpis.append(Kpi(GINI, figure(stats.gini_of_histogram(t.loads), mentors)))
    top = max(t.loads, default=0)
    hist = {str(k): (float(n), n) for k in range(top + 1) for n in [t.loads.get(k, 0)]}
    s.breakdowns.append(Breakdown(LOADS, breakdown(hist)))
    s.breakdowns.append(Breakdown(UNPLACED, breakdown({r: (float(n), n) for r, n in t.unplaced.items()})))
    s.kpis.append(Kpi(OVERRIDES, count(t.overrides, t.override_people)))
    return s


# --- engagement --------------------------------------------------------------------------------

HELD = formula("sessions_held", "Sessions held", "session.held events in the window")
AGAINST_CADENCE = formula(
    "sessions_vs_cadence",
    "Sessions held against cadence",
    "sessions held in the window / sessions expected, where each relationship open during the window "
    "expects (days it was open in the window) / (its agreed cadence, else the program's) sessions; a "
    "relationship is open from its match, or from its first session held when that came earlier",
)
ATTENDANCE = formula(
    "attendance_rate",
    "Attendance rate",
    "sum of attendees / sum of group members over the sessions held in the window",
)
CANCELLED = formula("cancellations", "Cancellations", "session.cancelled of kind cancelled in the window")
RESCHEDULED = formula("reschedules", "Reschedules", "session.cancelled of kind rescheduled in the window")
RELATIONSHIPS = formula(
    "relationships",
    "Relationships",
    "open at the window's end: active, or at_risk when the risk score reaches the program's threshold; "
    "closed in the window by outcome: completed, withdrawn, faded (a renewal does not close)",
)


def engagement(t: Engagement, w: Window, thresholds: dict[str, Thresholds]) -> Section:
    s = Section("engagement")
    s.kpis.append(Kpi(HELD, count(t.held, t.held_people)))
    s.kpis.append(Kpi(AGAINST_CADENCE, figure(t.held / t.expected if t.expected else None, t.expected_people)))
    s.kpis.append(Kpi(ATTENDANCE, figure(stats.share(t.attended, t.member_slots), t.held_people)))
    s.kpis.append(Kpi(CANCELLED, count(t.cancelled, t.cancelled_people)))
    s.kpis.append(Kpi(RESCHEDULED, count(t.rescheduled, t.rescheduled_people)))
    s.breakdowns.append(Breakdown(RELATIONSHIPS, breakdown(relationship_cells(t, w.end, thresholds))))
    return s


def at_risk(r: OpenRelationship, at: datetime, thresholds: dict[str, Thresholds]) -> bool:
    """Whether an open relationship's risk score at ``at`` reaches its program's threshold."""
    limit = thresholds.get(r.state.program_id, DEFAULT_THRESHOLDS).at_risk_score
    return risk(r.state, at).score >= limit


def relationship_cells(t: Engagement, at: datetime, thresholds: dict[str, Thresholds]) -> dict[str, tuple[float, int]]:
    split: dict[str, list[OpenRelationship]] = {"active": [], "at_risk": []}
    for r in t.open_relationships:
        split["at_risk" if at_risk(r, at, thresholds) else "active"].append(r)
    cells = {k: (float(len(v)), len({m for r in v for m in r.members})) for k, v in split.items()}
    for outcome in CLOSED_OUTCOMES:
        groups, people = t.closed[outcome]
        cells[f"closed_{outcome}"] = (float(groups), people)
    return cells


# --- outcomes ----------------------------------------------------------------------------------

GOALS_SET = formula("goals_set", "Goals set", "goal.set events in the window")
GOALS_PROGRESSED = formula(
    "goals_progressed", "Goals progressed", "goals whose latest goal.progressed in the window has steps done > 0"
)
GOALS_DONE = formula(
    "goals_completed", "Goals completed", "goals progressed in the window to steps done >= steps total"
)
RATING = formula(
    "mean_session_rating",
    "Mean session rating (1-5)",
    "mean over answers given in the window (latest revision of each feedback_id) of the session_rating "
    "score, rescaled to 1-5: 1 + 4 (score - min) / (max - min); n = answers",
)
NPS = formula(
    "nps",
    "Net Promoter Score",
    "would_recommend answers in the window on 0-10: 100 x (answers 9-10 - answers 0-6) / answers",
)
HELPS = formula(
    "mentor_helps_share",
    "'My mentor gives the help I need'",
    "share of mentor_helps answers in the window at or above 3/4 of the scale (4 or 5 of 5)",
)
ENGAGED = formula(
    "mentee_engaged_share",
    "Mentees use the opportunity (mentors' view)",
    "share of mentee_engaged answers in the window at or above 3/4 of the scale",
)
PAIRING = formula(
    "mean_pairing_fit", "Mean pairing fit (1-5)", "mean of pairing_fit answers in the window, rescaled to 1-5"
)
RETENTION = formula(
    "retention",
    "Retention",
    "of the enrolments active at the window's start or made in it (all enrolments for program to date), "
    "the share still active at its end",
)


def _five_point(mean: float | None) -> float | None:
    return stats.on_five_point_scale(mean) if mean is not None else None


def outcomes(t: Outcomes) -> Section:
    s = Section("outcomes")
    s.kpis.append(Kpi(GOALS_SET, count(t.goals_set, t.goals_set_people)))
    s.kpis.append(Kpi(GOALS_PROGRESSED, count(t.goals_progressed, t.goals_progressed_people)))
    s.kpis.append(Kpi(GOALS_DONE, count(t.goals_completed, t.goals_completed_people)))
    s.kpis.append(Kpi(RATING, figure(_five_point(t.mean_rating), t.ratings)))
    s.kpis.append(Kpi(NPS, figure(stats.nps_of(t.promoters, t.detractors, t.recommend_answers), t.recommend_answers)))
    s.kpis.append(Kpi(HELPS, figure(stats.share(t.helps_agree, t.helps_answers), t.helps_answers)))
    s.kpis.append(Kpi(ENGAGED, figure(stats.share(t.engaged_agree, t.engaged_answers), t.engaged_answers)))
    s.kpis.append(Kpi(PAIRING, figure(_five_point(t.mean_pairing_fit), t.pairing_answers)))
    s.kpis.append(Kpi(RETENTION, figure(stats.share(t.kept, t.cohort), t.cohort)))
    return s


def kpis(t: Tallies, w: Window, thresholds: dict[str, Thresholds]) -> list[Section]:
    return [
        participation(t.participation),
        matching(t.matching),
        engagement(t.engagement, w, thresholds),
        outcomes(t.outcomes),
    ]
