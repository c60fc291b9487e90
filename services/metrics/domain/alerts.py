"""The safety nets as a pure policy: given the present state, which alerts should be open.

An alert is identified by its kind and subject (a relationship, a mentor, a program). Each evaluation
computes the set that should be open; what is newly in it is raised, what left it is cleared, and
an alert already open is left alone, so it is raised once and cleared once when its cause goes away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from services.metrics.domain.risk import RECENT, RelationshipState, risk
from services.metrics.domain.thresholds import DEFAULT_THRESHOLDS, Thresholds


@dataclass(frozen=True)
class AlertKey:
    kind: str
    subject: str
    """group id, mentor id or program id, depending on the kind"""


@dataclass(frozen=True)
class Condition:
    """Why an alert should be open now."""

    key: AlertKey
    program_id: str
    severity: str
    detail: str
    group_id: str | None = None
    mentor_id: str | None = None
    risk_score: float | None = None


@dataclass(frozen=True)
class MentorLoad:
    mentor_id: str
    program_id: str
    """where the alert is filed: the first of the mentor's programs (id order)"""
    load: int
    capacity: int
    programs: int = 1
    """programs the mentor's open relationships are in"""


@dataclass(frozen=True)
class ProgramPlacement:
    program_id: str
    seekers: int
    placed: int
    has_run: bool


def relationship_conditions(state: RelationshipState, now: datetime, t: Thresholds) -> list[Condition]:
    found = []
    score = risk(state, now).score
    days = state.days_since_last_session(now)
    limit = t.fade_factor * state.cadence_days
    if days >= limit:
        found.append(
            Condition(
                AlertKey("no_recent_session", state.group_id),
                state.program_id,
                "critical" if days >= 2 * limit else "warning",
                f"no session held for {days:.0f} days (cadence {state.cadence_days} days)",
                group_id=state.group_id,
                risk_score=score,
            )
        )
    if state.slips_since_last_held >= t.reschedules:
        found.append(
            Condition(
                AlertKey("repeated_reschedules", state.group_id),
                state.program_id,
                "warning",
                f"{state.slips_since_last_held} sessions cancelled or rescheduled since the last one held",
                group_id=state.group_id,
                risk_score=score,
            )
        )
    drop = feedback_drop(state.ratings, t)
    if drop:
        found.append(
            Condition(
                AlertKey("feedback_drop", state.group_id),
                state.program_id,
                "warning",
                drop,
                group_id=state.group_id,
                risk_score=score,
            )
        )
    return found


def feedback_drop(ratings: Iterable[float], t: Thresholds) -> str | None:
    """Why the ratings (oldest first, in [0, 1]) count as a drop, or None."""
    values = list(ratings)
    recent, before = values[-RECENT:], values[-2 * RECENT : -RECENT]
    if not recent:
        return None
    now_mean = sum(recent) / len(recent)
    if now_mean < t.rating_floor:
        return f"mean of the last {len(recent)} session ratings is {now_mean:.0%} of the scale"
    if before:
        before_mean = sum(before) / len(before)
        if before_mean - now_mean >= t.rating_drop:
            return f"session ratings fell from {before_mean:.0%} to {now_mean:.0%} of the scale"
    return None


def mentor_condition(m: MentorLoad, t: Thresholds) -> Condition | None:
    """A mentor at or above capacity across programs: raised when the load (open relationships in every
    program) is above ``mentor_load_ratio`` x capacity, or reaches it while spread over two or more
    programs. A mentor filled to capacity by one program's matching is the plan, not an obstacle: an
    alert for each of them would bury the ones that need attention (matching never places beyond
    capacity, so 'above' means capacity was cut below the load, or programs matched independently)."""
    limit = t.mentor_load_ratio * m.capacity
    if m.load == 0 or m.load < limit or (m.load == limit and m.programs < 2):
        return None
    over = m.load > m.capacity
    where = f"in {m.programs} programs" if m.programs > 1 else "in one program"
    return Condition(
        AlertKey("mentor_over_capacity", m.mentor_id),
        m.program_id,
        "critical" if over else "warning",
        f"a mentor carries {m.load} relationships {where} for a capacity of {m.capacity}",
        mentor_id=m.mentor_id,
    )


@dataclass(frozen=True)
class MentorState:
    """An active mentor as the capacity net sees them, across programs."""

    mentor_id: str
    programs: tuple[str, ...]
    """the programs they are an active mentor in"""
    load: int
    capacity: int | None
    spread: int
    """programs their open relationships are in"""


def wanted(
    states: Iterable[RelationshipState],
    mentors: Iterable[MentorState],
    placements: Iterable[ProgramPlacement],
    limits: Mapping[str, Thresholds],
    now: datetime,
) -> list[Condition]:
    """Every alert that should be open now, each judged by its program's thresholds (a mentor's by the
    most sensitive of their programs')."""
    found: list[Condition] = []
    for state in states:
        found += relationship_conditions(state, now, limits.get(state.program_id, DEFAULT_THRESHOLDS))
    for m in sorted(mentors, key=lambda m: m.mentor_id):
        t = min((limits.get(pid, DEFAULT_THRESHOLDS) for pid in m.programs), key=lambda x: x.mentor_load_ratio)
        c = mentor_condition(MentorLoad(m.mentor_id, min(m.programs), m.load, m.capacity or 0, m.spread), t)
        if c:
            found.append(c)
    for p in placements:
        c = program_condition(p, limits.get(p.program_id, DEFAULT_THRESHOLDS))
        if c:
            found.append(c)
    return found


def program_condition(p: ProgramPlacement, t: Thresholds) -> Condition | None:
    if not p.has_run or p.seekers == 0:
        return None
    rate = p.placed / p.seekers
    if rate >= t.match_rate_target:
        return None
    return Condition(
        AlertKey("match_rate_below_target", p.program_id),
        p.program_id,
        "warning",
        f"{rate:.0%} of mentees and peers placed, under the target of {t.match_rate_target:.0%}",
    )


@dataclass(frozen=True)
class Decision:
    raise_: list[Condition]
    clear: list[AlertKey]


def decide(wanted: Iterable[Condition], open_keys: Iterable[AlertKey]) -> Decision:
    """Raise what should be open and is not; clear what is open and should not be."""
    by_key: Mapping[AlertKey, Condition] = {c.key: c for c in wanted}
    is_open = set(open_keys)
    return Decision(
        raise_=[c for k, c in sorted(by_key.items(), key=lambda kv: (kv[0].kind, kv[0].subject)) if k not in is_open],
        clear=sorted(is_open - by_key.keys(), key=lambda k: (k.kind, k.subject)),
    )
