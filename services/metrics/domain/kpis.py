"""KPI formulas over a scope's facts (one program, one form, the organisation) and one window.

Each KPI's formula is registered next to the code that computes it (``formula(...)``), so the API
documentation quotes exactly what runs. Every figure carries the number of people behind it and is
suppressed below five (:mod:`services.metrics.domain.suppression`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from services.metrics.domain import stats
from services.metrics.domain.facts import Facts, GroupFact, ParticipantFact, SessionFact
from services.metrics.domain.relationships import relationship_states
from services.metrics.domain.report import Breakdown, Kpi, Section, Window, formula
from services.metrics.domain.risk import risk
from services.metrics.domain.suppression import Figure, breakdown, count, figure
from services.metrics.domain.thresholds import Thresholds

DAY = 86400.0


def _people(groups: list[GroupFact]) -> int:
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


def participation(facts: Facts, w: Window) -> Section:
    s = Section("participation")
    by_role: Counter[str] = Counter(p.role for p in facts.participants if w.contains(p.enrolled_at))
    roles = {r: by_role.get(r, 0) for r in ("mentor", "mentee", "peer")}
    s.breakdowns.append(Breakdown(ENROLMENTS, breakdown({r: (float(n), n) for r, n in roles.items()})))
    active = [p for p in facts.participants if p.active_at(w.end)]
    s.kpis.append(Kpi(ACTIVE, count(len(active), len(active))))
    mentors = sum(1 for p in active if p.role == "mentor")
    mentees = sum(1 for p in active if p.role == "mentee")
    s.kpis.append(Kpi(RATIO, figure(mentees / mentors if mentors else None, min(mentors, mentees))))
    people = {p.participant_id for p in active}
    open_groups: Counter[str] = Counter(
        m.participant_id for g in facts.org_groups if g.open_at(w.end) for m in g.members
    )
    several_rel = sum(1 for pid in people if open_groups[pid] >= 2)
    s.kpis.append(Kpi(SEVERAL_REL, count(several_rel, several_rel)))
    programs: Counter[str] = Counter(p.participant_id for p in facts.org_participants if p.active_at(w.end))
    several_prog = sum(1 for pid in people if programs[pid] >= 2)
    s.kpis.append(Kpi(SEVERAL_PROG, count(several_prog, several_prog)))
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
    s.kpis.append(Kpi(BECAME, count(len(became), len(became))))
    withdrawn = sum(1 for p in facts.participants if w.contains(p.withdrawn_at))
    s.kpis.append(Kpi(WITHDRAWALS, count(withdrawn, withdrawn)))
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
    "not measurable from events: matching records overrides (lock_pair / exclude_pair) in its own audit but "
    "publishes no event for them, so the metrics service cannot count them; read them from the matching API",
)


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


def matching(facts: Facts, w: Window) -> Section:
    s = Section("matching")
    seekers = active_seekers(facts, w.end)
    first = first_placement(facts)
    placed = [p for p in seekers if first.get((p.program_id, p.participant_id), w.end) < w.end]
    s.kpis.append(Kpi(PLACED, figure(stats.share(len(placed), len(seekers)), len(seekers))))
    enrolled = {(p.program_id, p.participant_id): p.enrolled_at for p in facts.participants if p.seeker}
    days = [
        max(0.0, (t - enrolled[key]).total_seconds() / DAY)
        for key, t in first.items()
        if key in enrolled and w.contains(t)
    ]
    s.kpis.append(Kpi(TTM_MEDIAN, figure(stats.median(days), len(days))))
    s.kpis.append(Kpi(TTM_P90, figure(stats.nearest_rank(days, 0.9), len(days))))
    formed = [g for g in facts.groups if w.contains(g.matched_at)]
    s.kpis.append(Kpi(FIT, figure(stats.mean([g.fit for g in formed]), _people(formed))))
    loads = mentor_loads(facts, w.end)
    capacity = mentor_capacities(facts)
    ratios = [load / c for m, load in loads.items() if (c := capacity.get(m))]
    s.kpis.append(Kpi(MAX_LOAD, figure(max(ratios) if ratios else None, len(loads))))
    s.kpis.append(Kpi(GINI, figure(stats.gini(list(loads.values())), len(loads))))
    hist: Counter[int] = Counter(loads.values())
    top = max(hist, default=0)
    s.breakdowns.append(Breakdown(LOADS, breakdown({str(k): (float(hist[k]), hist[k]) for k in range(top + 1)})))
    s.breakdowns.append(Breakdown(UNPLACED, breakdown(unplaced_by_reason(facts, w, seekers, first))))
    s.kpis.append(Kpi(OVERRIDES, Figure(None, 0), measurable=False))
    return s


def unplaced_by_reason(
    facts: Facts, w: Window, seekers: list[ParticipantFact], first: dict[tuple[str, str], datetime]
) -> dict[str, tuple[float, int]]:
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
    codes = ["no_eligible_partner", "capacity_exhausted", "lost_lottery", "group_size", "other", "not_yet_matched"]
    return {c: (float(reasons[c]), reasons[c]) for c in codes}


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


def first_sessions(sessions: list[SessionFact]) -> dict[str, datetime]:
    """Each group's first session held: sessions recorded from before the match (a pair that already met,
    history brought in) open the relationship earlier, or its expected sessions would be near zero."""
    first: dict[str, datetime] = {}
    for x in sessions:
        if x.group_id not in first or x.held_at < first[x.group_id]:
            first[x.group_id] = x.held_at
    return first


def expected_sessions(groups: list[GroupFact], w: Window, sessions: list[SessionFact]) -> tuple[float, list[GroupFact]]:
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


def engagement(facts: Facts, w: Window, thresholds: dict[str, Thresholds]) -> Section:
    s = Section("engagement")
    by_id = {g.group_id: g for g in facts.groups}
    held = [x for x in facts.sessions if w.contains(x.held_at) and x.group_id in by_id]
    held_groups = [by_id[gid] for gid in {x.group_id for x in held}]
    s.kpis.append(Kpi(HELD, count(len(held), _people(held_groups))))
    expected, open_groups = expected_sessions(facts.groups, w, facts.sessions)
    s.kpis.append(Kpi(AGAINST_CADENCE, figure(len(held) / expected if expected else None, _people(open_groups))))
    members = sum(len(by_id[x.group_id].members) for x in held)
    attended = sum(min(x.attendees, len(by_id[x.group_id].members)) for x in held)
    s.kpis.append(Kpi(ATTENDANCE, figure(stats.share(attended, members), _people(held_groups))))
    for key, kind in ((CANCELLED, "cancelled"), (RESCHEDULED, "rescheduled")):
        slips = [x for x in facts.slips if x.kind == kind and w.contains(x.at) and x.group_id in by_id]
        slip_groups = [by_id[gid] for gid in {x.group_id for x in slips}]
        s.kpis.append(Kpi(key, count(len(slips), _people(slip_groups))))
    s.breakdowns.append(Breakdown(RELATIONSHIPS, breakdown(relationship_cells(facts, w, thresholds))))
    return s


def relationship_cells(facts: Facts, w: Window, thresholds: dict[str, Thresholds]) -> dict[str, tuple[float, int]]:
    cells: dict[str, list[GroupFact]] = defaultdict(list)
    states = relationship_states(facts, w.end)
    for g in facts.groups:
        state = states.get(g.group_id)
        if state is not None:
            t = thresholds.get(g.program_id, Thresholds())
            at_risk = risk(state, w.end).score >= t.at_risk_score
            cells["at_risk" if at_risk else "active"].append(g)
        else:
            closure = g.closed_by(w.end)
            if closure and w.contains(closure.closed_at):
                cells[f"closed_{closure.reason}"].append(g)
    keys = ["active", "at_risk", "closed_completed", "closed_withdrawn", "closed_faded"]
    return {k: (float(len(cells[k])), _people(cells[k])) for k in keys}


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
AGREE = 0.75


def outcomes(facts: Facts, w: Window) -> Section:
    s = Section("outcomes")
    goals_set = [g for g in facts.goals if w.contains(g.set_at)]
    s.kpis.append(Kpi(GOALS_SET, count(len(goals_set), len({g.participant_id for g in goals_set}))))
    moved = [g for g in facts.goals if w.contains(g.progressed_at) and g.steps_done > 0]
    s.kpis.append(Kpi(GOALS_PROGRESSED, count(len(moved), len({g.participant_id for g in moved}))))
    done = [g for g in moved if g.steps_done >= g.steps_total]
    s.kpis.append(Kpi(GOALS_DONE, count(len(done), len({g.participant_id for g in done}))))
    answers = [f for f in facts.feedback if w.contains(f.given_at)]
    ratings = [f.session_rating for f in answers if f.session_rating is not None]
    mean_rating = stats.mean(ratings)
    s.kpis.append(
        Kpi(RATING, figure(stats.on_five_point_scale(mean_rating) if mean_rating is not None else None, len(ratings)))
    )
    recommend = [f.would_recommend for f in answers if f.would_recommend is not None]
    s.kpis.append(Kpi(NPS, figure(stats.nps(recommend), len(recommend))))
    helps = [f.mentor_helps for f in answers if f.mentor_helps is not None]
    s.kpis.append(Kpi(HELPS, figure(stats.share(sum(1 for x in helps if x >= AGREE), len(helps)), len(helps))))
    engaged = [f.mentee_engaged for f in answers if f.mentee_engaged is not None]
    s.kpis.append(Kpi(ENGAGED, figure(stats.share(sum(1 for x in engaged if x >= AGREE), len(engaged)), len(engaged))))
    fit = [f.pairing_fit for f in answers if f.pairing_fit is not None]
    mean_fit = stats.mean(fit)
    s.kpis.append(Kpi(PAIRING, figure(stats.on_five_point_scale(mean_fit) if mean_fit is not None else None, len(fit))))
    cohort = [
        p
        for p in facts.participants
        if p.enrolled_at < w.end and (w.start is None or p.active_at(w.start) or w.contains(p.enrolled_at))
    ]
    kept = sum(1 for p in cohort if p.active_at(w.end))
    s.kpis.append(Kpi(RETENTION, figure(stats.share(kept, len(cohort)), len(cohort))))
    return s


def kpis(facts: Facts, w: Window, thresholds: dict[str, Thresholds]) -> list[Section]:
    return [participation(facts, w), matching(facts, w), engagement(facts, w, thresholds), outcomes(facts, w)]
