"""The tallies of a scope and a window, counted in Python from its facts.

This is the plain statement of every count the KPIs use; the SQL aggregates the API runs
(:mod:`services.metrics.adapters.aggregates`) must give the same tallies, and a test holds them equal.
The dashboard counts here too, from the facts it loads for its weekly series.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from services.metrics.domain import stats
from services.metrics.domain.facts import Facts, GroupFact, ParticipantFact, SessionFact
from services.metrics.domain.relationships import relationship_states
from services.metrics.domain.report import Window
from services.metrics.domain.risk import HISTORY, RelationshipState
from services.metrics.domain.tallies import (
    CLOSED_OUTCOMES,
    ROLES,
    UNPLACED_REASONS,
    Accountability,
    Engagement,
    FairnessCell,
    Matching,
    OpenRelationship,
    Outcomes,
    Participation,
    Tallies,
)

DAY = 86400.0
AGREE = 0.75
"""an answer at or above 3/4 of its scale agrees (4 or 5 of 5)"""

DIMENSIONS: dict[str, Callable[[ParticipantFact], str]] = {
    "department": lambda p: p.department,
    "level": lambda p: str(p.level),
    "location": lambda p: p.location or "unknown",
}


def people_of(groups: list[GroupFact]) -> int:
    return len({m.participant_id for g in groups for m in g.members})


def first_placement(facts: Facts) -> dict[tuple[str, str], datetime]:
    """(program, participant) -> when they were first placed in a group of that program."""
    first: dict[tuple[str, str], datetime] = {}
    for g in facts.groups:
        for m in g.members:
            key = (g.program_id, m.participant_id)
            if key not in first or g.matched_at < first[key]:
                first[key] = g.matched_at
    return first


def active_seekers(facts: Facts, at: datetime) -> list[ParticipantFact]:
    return [p for p in facts.participants if p.seeker and p.active_at(at)]


def mentor_loads(facts: Facts, at: datetime) -> dict[str, int]:
    """Open relationships per active mentor of the scope, counted across every program."""
    load: Counter[str] = Counter()
    for g in facts.org_groups:
        if g.open_at(at):
            for mid in g.mentors():
                load[mid] += 1
    mentors = {p.participant_id for p in facts.participants if p.role == "mentor" and p.active_at(at)}
    return {m: load[m] for m in mentors}


def mentor_capacities(facts: Facts) -> dict[str, int | None]:
    """A mentor's capacity is one number across programs: their latest declared one."""
    latest: dict[str, ParticipantFact] = {}
    for p in facts.org_participants:
        if p.role == "mentor" and (
            p.participant_id not in latest or latest[p.participant_id].enrolled_at <= p.enrolled_at
        ):
            latest[p.participant_id] = p
    return {m: p.capacity for m, p in latest.items()}


def first_sessions(sessions: list[SessionFact]) -> dict[str, datetime]:
    """Each group's first session held: sessions recorded from before the match (a pair that already met,
    history brought in) open the relationship earlier, or its expected sessions would be near zero."""
    first: dict[str, datetime] = {}
    for x in sessions:
        if x.group_id not in first or x.held_at < first[x.group_id]:
            first[x.group_id] = x.held_at
    return first


def expected_sessions(groups: list[GroupFact], w: Window, sessions: list[SessionFact]) -> tuple[float, list[GroupFact]]:
    """Sessions expected in ``w``: each relationship open in it, for the days it was open, by its cadence."""
    first = first_sessions(sessions)
    total, counted = 0.0, []
    for g in groups:
        opened = min(g.matched_at, first.get(g.group_id, g.matched_at))
        start = max(opened, w.start) if w.start else opened
        closure = g.closed_by(w.end)
        end = min(w.end, closure.closed_at) if closure else w.end
        if end > start:
            total += (end - start).total_seconds() / DAY / g.cadence
            counted.append(g)
    return total, counted


def participation(facts: Facts, w: Window) -> Participation:
    by_role: Counter[str] = Counter(p.role for p in facts.participants if w.contains(p.enrolled_at))
    active = [p for p in facts.participants if p.active_at(w.end)]
    people = {p.participant_id for p in active}
    open_groups: Counter[str] = Counter(
        m.participant_id for g in facts.org_groups if g.open_at(w.end) for m in g.members
    )
    programs: Counter[str] = Counter(p.participant_id for p in facts.org_participants if p.active_at(w.end))
    mentee_since: dict[str, datetime] = {}
    for p in facts.org_participants:
        if p.role == "mentee" and (
            p.participant_id not in mentee_since or p.enrolled_at < mentee_since[p.participant_id]
        ):
            mentee_since[p.participant_id] = p.enrolled_at
    became = {
        p.participant_id
        for p in facts.participants
        if p.role == "mentor"
        and w.contains(p.enrolled_at)
        and mentee_since.get(p.participant_id, w.end) < p.enrolled_at
    }
    return Participation(
        enrolled_by_role={r: by_role.get(r, 0) for r in ROLES},
        active=len(active),
        active_mentors=sum(1 for p in active if p.role == "mentor"),
        active_mentees=sum(1 for p in active if p.role == "mentee"),
        in_several_relationships=sum(1 for pid in people if open_groups[pid] >= 2),
        in_several_programs=sum(1 for pid in people if programs[pid] >= 2),
        became_mentors=len(became),
        withdrawn=sum(1 for p in facts.participants if w.contains(p.withdrawn_at)),
    )


def matching(facts: Facts, w: Window) -> Matching:
    seekers = active_seekers(facts, w.end)
    first = first_placement(facts)
    placed = [p for p in seekers if first.get((p.program_id, p.participant_id), w.end) < w.end]
    enrolled = {(p.program_id, p.participant_id): p.enrolled_at for p in facts.participants if p.seeker}
    days = [
        max(0.0, (t - enrolled[key]).total_seconds() / DAY)
        for key, t in first.items()
        if key in enrolled and w.contains(t)
    ]
    formed = [g for g in facts.groups if w.contains(g.matched_at)]
    loads = mentor_loads(facts, w.end)
    capacity = mentor_capacities(facts)
    ratios = [load / c for m, load in loads.items() if (c := capacity.get(m))]
    overrides = [o for o in facts.overrides if w.contains(o.at)]
    return Matching(
        seekers=len(seekers),
        placed=len(placed),
        days_to_match_median=stats.median(days),
        days_to_match_p90=stats.nearest_rank(days, 0.9),
        days_to_match_n=len(days),
        mean_fit=stats.mean([g.fit for g in formed]),
        fit_people=people_of(formed),
        loads=dict(Counter(loads.values())),
        max_load_ratio=max(ratios) if ratios else None,
        unplaced=unplaced_by_reason(facts, w, seekers, first),
        overrides=len(overrides),
        override_people=len({pid for o in overrides for pid in o.participant_ids}),
    )


def unplaced_by_reason(
    facts: Facts, w: Window, seekers: list[ParticipantFact], first: dict[tuple[str, str], datetime]
) -> dict[str, int]:
    """Seekers not placed by the reason of their latest participant.unmatched before the window's end."""
    latest: dict[tuple[str, str], tuple[datetime, str]] = {}
    for u in facts.unmatched:
        key = (u.program_id, u.participant_id)
        if u.at < w.end and (key not in latest or latest[key][0] <= u.at):
            latest[key] = (u.at, u.reason_code)
    reasons: Counter[str] = Counter()
    for p in seekers:
        key = (p.program_id, p.participant_id)
        if first.get(key, w.end) < w.end:
            continue
        reasons[latest[key][1] if key in latest else "not_yet_matched"] += 1
    return {c: reasons[c] for c in UNPLACED_REASONS}


def engagement(facts: Facts, w: Window) -> Engagement:
    by_id = {g.group_id: g for g in facts.groups}
    held = [x for x in facts.sessions if w.contains(x.held_at) and x.group_id in by_id]
    expected, counted = expected_sessions(facts.groups, w, facts.sessions)
    slips = {}
    for kind in ("cancelled", "rescheduled"):
        found = [x for x in facts.slips if x.kind == kind and w.contains(x.at) and x.group_id in by_id]
        slips[kind] = (len(found), people_of([by_id[gid] for gid in {x.group_id for x in found}]))
    closed: dict[str, list[GroupFact]] = defaultdict(list)
    for g in facts.groups:
        closure = g.closed_by(w.end)
        if closure and w.contains(closure.closed_at):
            closed[closure.reason].append(g)
    states = relationship_states(facts, w.end)
    return Engagement(
        held=len(held),
        held_people=people_of([by_id[gid] for gid in {x.group_id for x in held}]),
        expected=expected,
        expected_people=people_of(counted),
        attended=sum(min(x.attendees, len(by_id[x.group_id].members)) for x in held),
        member_slots=sum(len(by_id[x.group_id].members) for x in held),
        cancelled=slips["cancelled"][0],
        cancelled_people=slips["cancelled"][1],
        rescheduled=slips["rescheduled"][0],
        rescheduled_people=slips["rescheduled"][1],
        open_relationships=[
            OpenRelationship(recent(states[g.group_id]), tuple(sorted(m.participant_id for m in g.members)))
            for g in sorted(facts.groups, key=lambda g: g.group_id)
            if g.group_id in states
        ],
        closed={k: (len(closed[k]), people_of(closed[k])) for k in CLOSED_OUTCOMES},
    )


def recent(state: RelationshipState) -> RelationshipState:
    """A state with only the answers its risk score and safety nets read, as the SQL tallies carry it."""
    return replace(state, ratings=tuple(state.ratings[-HISTORY:]), pairing_fit=tuple(state.pairing_fit[-HISTORY:]))


def outcomes(facts: Facts, w: Window) -> Outcomes:
    goals_set = [g for g in facts.goals if w.contains(g.set_at)]
    moved = [g for g in facts.goals if w.contains(g.progressed_at) and g.steps_done > 0]
    done = [g for g in moved if g.steps_done >= g.steps_total]
    answers = [f for f in facts.feedback if w.contains(f.given_at)]
    ratings = [f.session_rating for f in answers if f.session_rating is not None]
    recommend = [f.would_recommend for f in answers if f.would_recommend is not None]
    helps = [f.mentor_helps for f in answers if f.mentor_helps is not None]
    engaged = [f.mentee_engaged for f in answers if f.mentee_engaged is not None]
    fit = [f.pairing_fit for f in answers if f.pairing_fit is not None]
    cohort = [
        p
        for p in facts.participants
        if p.enrolled_at < w.end and (w.start is None or p.active_at(w.start) or w.contains(p.enrolled_at))
    ]
    return Outcomes(
        goals_set=len(goals_set),
        goals_set_people=len({g.participant_id for g in goals_set}),
        goals_progressed=len(moved),
        goals_progressed_people=len({g.participant_id for g in moved}),
        goals_completed=len(done),
        goals_completed_people=len({g.participant_id for g in done}),
        mean_rating=stats.mean(ratings),
        ratings=len(ratings),
        promoters=sum(1 for r in recommend if r >= stats.PROMOTER),
        detractors=sum(1 for r in recommend if r <= stats.DETRACTOR),
        recommend_answers=len(recommend),
        helps_agree=sum(1 for x in helps if x >= AGREE),
        helps_answers=len(helps),
        engaged_agree=sum(1 for x in engaged if x >= AGREE),
        engaged_answers=len(engaged),
        mean_pairing_fit=stats.mean(fit),
        pairing_answers=len(fit),
        cohort=len(cohort),
        kept=sum(1 for p in cohort if p.active_at(w.end)),
    )


def fairness(facts: Facts, w: Window) -> dict[str, dict[str, FairnessCell]]:
    """Per dimension, the active mentees and peers of each value with what the audit measures of them:
    placed (first group before the window's end), median days to it, the mean fit of their groups, and
    the mean session rating given in the window by respondents of their role in those groups."""
    seekers = active_seekers(facts, w.end)
    first = first_placement(facts)
    groups_of: dict[tuple[str, str], list[str]] = defaultdict(list)
    for g in facts.groups:
        if g.matched_at < w.end:
            for m in g.members:
                groups_of[(g.program_id, m.participant_id)].append(g.group_id)
    fit = {g.group_id: g.fit for g in facts.groups}
    ratings: dict[tuple[str, str], list[float]] = defaultdict(list)
    for f in facts.feedback:
        if w.contains(f.given_at) and f.session_rating is not None:
            ratings[(f.group_id, f.respondent_role)].append(f.session_rating)

    def cell(people: list[ParticipantFact]) -> FairnessCell:
        placed = [p for p in people if first.get((p.program_id, p.participant_id), w.end) < w.end]
        days = [
            max(0.0, (first[(p.program_id, p.participant_id)] - p.enrolled_at).total_seconds() / DAY) for p in placed
        ]
        gids = [(p, gid) for p in placed for gid in groups_of[(p.program_id, p.participant_id)]]
        return FairnessCell(
            people=len(people),
            placed=len(placed),
            days_to_match_median=stats.median(days),
            mean_fit=stats.mean([fit[gid] for _, gid in gids]),
            mean_rating=stats.mean([r for p, gid in gids for r in ratings[(gid, p.role)]]),
        )

    out: dict[str, dict[str, FairnessCell]] = {}
    for dimension, attribute in DIMENSIONS.items():
        cells: dict[str, list[ParticipantFact]] = defaultdict(list)
        for p in seekers:
            cells[attribute(p)].append(p)
        out[dimension] = {k: cell(v) for k, v in sorted(cells.items())}
    return out


def accountability(facts: Facts, w: Window) -> Accountability:
    """Relationships open at the window's end, and those with agreed expectations and a goal set before it."""
    open_groups = [g for g in facts.groups if g.open_at(w.end)]
    with_goal = {g.group_id for g in facts.goals if g.set_at is not None and g.set_at < w.end}
    both = [g for g in open_groups if g.agreed_cadence_days is not None and g.group_id in with_goal]
    return Accountability(len(open_groups), len(both), people_of(open_groups))


def tally(facts: Facts, w: Window, *, with_fairness: bool = True) -> Tallies:
    return Tallies(
        participation=participation(facts, w),
        matching=matching(facts, w),
        engagement=engagement(facts, w),
        outcomes=outcomes(facts, w),
        accountability=accountability(facts, w),
        fairness=fairness(facts, w) if with_fairness else {},
    )
