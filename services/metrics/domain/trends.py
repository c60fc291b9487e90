"""What the dashboard charts: the enrolment-to-meeting funnel and weekly series, suppressed like
every other figure (a week with answers from fewer than five people shows no point)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from services.metrics.domain import stats
from services.metrics.domain.facts import Facts
from services.metrics.domain.report import Window, WindowName
from services.metrics.domain.suppression import MIN_PEOPLE, Figure, breakdown, count, figure
from services.metrics.domain.tally import active_seekers, expected_sessions, first_placement


def funnel(facts: Facts, at: datetime) -> dict[str, Figure]:
    """Enrolled -> active mentees and peers -> placed -> in a group that has met, at ``at``."""
    enrolled = [p for p in facts.participants if p.enrolled_at < at]
    seekers = active_seekers(facts, at)
    first = first_placement(facts)
    placed = [p for p in seekers if first.get((p.program_id, p.participant_id), at) < at]
    met_groups = {x.group_id for x in facts.sessions if x.held_at < at}
    in_met = {(g.program_id, m.participant_id) for g in facts.groups if g.group_id in met_groups for m in g.members}
    meeting = [p for p in placed if (p.program_id, p.participant_id) in in_met]
    steps = {"enrolled": enrolled, "mentees and peers": seekers, "placed": placed, "meeting": meeting}
    return suppress_steps({k: len(v) for k, v in steps.items()})


def suppress_steps(counts: dict[str, int]) -> dict[str, Figure]:
    """A funnel's steps: each under five is hidden, and so is each step that differs from the last
    visible one by 1-4 people (the difference would count them)."""
    out: dict[str, Figure] = {}
    last: int | None = None
    for k, n in counts.items():
        f = count(n, n)
        if not f.suppressed and last is not None and 0 < last - n < MIN_PEOPLE:
            f = Figure(None, n, suppressed=True)
        out[k] = f
        if not f.suppressed:
            last = n
    return out


@dataclass(frozen=True)
class WeekPoint:
    week_start: datetime
    sessions_vs_cadence: Figure
    mean_rating: Figure
    nps: Figure


def weekly(facts: Facts, end: datetime, weeks: int = 12) -> list[WeekPoint]:
    points = []
    by_id = {g.group_id: g for g in facts.groups}
    for i in range(weeks, 0, -1):
        w = Window(WindowName.WEEK, end - timedelta(days=7 * i), end - timedelta(days=7 * (i - 1)))
        held = [x for x in facts.sessions if w.contains(x.held_at) and x.group_id in by_id]
        expected, open_groups = expected_sessions(facts.groups, w, facts.sessions)
        people = len({m.participant_id for g in open_groups for m in g.members})
        answers = [f for f in facts.feedback if w.contains(f.given_at)]
        ratings = [f.session_rating for f in answers if f.session_rating is not None]
        mean_rating = stats.mean(ratings)
        recommend = [f.would_recommend for f in answers if f.would_recommend is not None]
        assert w.start is not None
        points.append(
            WeekPoint(
                week_start=w.start,
                sessions_vs_cadence=figure(len(held) / expected if expected else None, people),
                mean_rating=figure(
                    stats.on_five_point_scale(mean_rating) if mean_rating is not None else None, len(ratings)
                ),
                nps=figure(stats.nps(recommend), len(recommend)),
            )
        )
    return points


def load_histogram(loads: dict[str, int]) -> dict[str, Figure]:
    """Mentors per number of open relationships; no names, small bars suppressed (complementary)."""
    top = max(loads.values(), default=0)
    counts = {str(k): sum(1 for v in loads.values() if v == k) for k in range(top + 1)}
    return breakdown({k: (float(n), n) for k, n in counts.items()})
