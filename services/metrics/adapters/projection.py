"""Every projection statement of the metrics service, in one module.

Each event becomes one or a few statements keyed by the fact's own id (a session, a goal, a
feedback_id, a group), so applying it twice or in another order across topics gives the same rows; the
runtime's tracking record (``processed_events``) makes a redelivery a no-op on top. No statement reads
another table, so statements on different tables commute: :func:`apply_batch` applies a batch with one
``executemany`` per run of equal statements on a table, in the order the events came in for that table,
which is the same effect as :data:`HANDLERS` one event after another, in far fewer round trips.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import asyncpg

from contracts.envelope import Envelope
from contracts.events import (
    AlertClearedV2,
    AlertRaisedV2,
    Event,
    ExpectationsAgreed,
    FeedbackGivenV2,
    GoalProgressed,
    GoalSet,
    GroupMatched,
    MatchingCompleted,
    MatchOverrideRecorded,
    ParticipantEnrolled,
    ParticipantUnmatched,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgramOpened,
    ProgramUpdated,
    RelationshipClosed,
    SessionCancelled,
    SessionHeld,
)
from runtime.consumer import Batched, Handler, batched
from services.metrics.domain.stats import normalise


class Statement(NamedTuple):
    table: str
    sql: str
    args: tuple[Any, ...]


_TABLE = re.compile(r"^(?:INSERT INTO|UPDATE) (\w+)")


def _s(sql: str, *args: Any) -> Statement:
    found = _TABLE.match(sql)
    assert found, sql
    return Statement(found.group(1), sql, args)


def on_program(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, ProgramOpened)
    status = e.status if isinstance(e, ProgramUpdated) else "open"
    return [_s(
        "INSERT INTO programs (program_id, name, form, cadence_days, status, starts_on, opened_at)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (program_id) DO UPDATE SET name=EXCLUDED.name,"
        " cadence_days=EXCLUDED.cadence_days, status=EXCLUDED.status, starts_on=EXCLUDED.starts_on",
        e.program_id, e.name, e.form.value, e.cadence_days, status, e.starts_on, e.opened_at,
    )]  # fmt: skip


_PARTICIPANT = (
    "INSERT INTO participants (program_id, participant_id, role, department, level, location, capacity,"
    " enrolled_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (program_id, participant_id) DO UPDATE SET"
    " role=EXCLUDED.role, department=EXCLUDED.department, level=EXCLUDED.level, location=EXCLUDED.location,"
    " capacity=EXCLUDED.capacity"
)


def on_enrolled(env: Envelope) -> list[Statement]:
    """A (re-)enrolment starts the enrolment afresh: a new enrolment time, no withdrawal."""
    e = env.data
    assert isinstance(e, ParticipantEnrolled)
    p = e.profile
    return [_s(
        _PARTICIPANT + ", enrolled_at=EXCLUDED.enrolled_at, withdrawn_at=NULL",
        e.program_id, p.participant_id, p.role.value, p.department, p.level, p.location, p.capacity, e.enrolled_at,
    )]  # fmt: skip


def on_updated(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, ParticipantUpdated)
    p = e.profile
    return [_s(
        _PARTICIPANT,
        e.program_id, p.participant_id, p.role.value, p.department, p.level, p.location, p.capacity, e.updated_at,
    )]  # fmt: skip


def on_withdrawn(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, ParticipantWithdrawn)
    return [_s(
        "UPDATE participants SET withdrawn_at=$3 WHERE program_id=$1 AND participant_id=$2",
        e.program_id, e.participant_id, e.withdrawn_at,
    )]  # fmt: skip


def on_group_matched(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, GroupMatched)
    group = _s(
        "INSERT INTO groups (group_id, program_id, run_id, form, fit, cadence_days, matched_at)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (group_id) DO NOTHING",
        e.group_id, e.program_id, e.run_id, e.form.value, e.fit, e.cadence_days, e.matched_at,
    )  # fmt: skip
    members = [
        _s(
            "INSERT INTO members (group_id, participant_id, program_id, role) VALUES ($1,$2,$3,$4)"
            " ON CONFLICT DO NOTHING",
            e.group_id,
            m.participant_id,
            e.program_id,
            m.role.value,
        )
        for m in e.members
    ]
    return [group, *members]


def on_unmatched(env: Envelope) -> list[Statement]:
    """The latest run's reason wins (the envelope's time orders runs; the payload carries none)."""
    e = env.data
    assert isinstance(e, ParticipantUnmatched)
    return [_s(
        "INSERT INTO unmatched (program_id, participant_id, run_id, reason_code, at) VALUES ($1,$2,$3,$4,$5)"
        " ON CONFLICT (program_id, participant_id) DO UPDATE SET run_id=EXCLUDED.run_id,"
        " reason_code=EXCLUDED.reason_code, at=EXCLUDED.at WHERE unmatched.at <= EXCLUDED.at",
        e.program_id, e.participant_id, e.run_id, e.reason_code.value, env.time,
    )]  # fmt: skip


def on_completed(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, MatchingCompleted)
    return [_s(
        "INSERT INTO runs (run_id, program_id, completed_at, placed_count, unplaced_count) VALUES ($1,$2,$3,$4,$5)"
        " ON CONFLICT (run_id) DO NOTHING",
        e.run_id, e.program_id, e.completed_at, e.placed_count, e.unplaced_count,
    )]  # fmt: skip


def on_override(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, MatchOverrideRecorded)
    return [_s(
        "INSERT INTO overrides (override_id, program_id, kind, participant_ids, at) VALUES ($1,$2,$3,$4,$5)"
        " ON CONFLICT (override_id) DO NOTHING",
        e.override_id, e.program_id, e.kind.value, e.participant_ids, e.recorded_at,
    )]  # fmt: skip


def on_held(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, SessionHeld)
    return [_s(
        "INSERT INTO sessions_held (session_id, program_id, group_id, held_at, duration_minutes, attendees)"
        " VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (session_id) DO UPDATE SET held_at=EXCLUDED.held_at,"
        " duration_minutes=EXCLUDED.duration_minutes, attendees=EXCLUDED.attendees",
        e.session_id, e.program_id, e.group_id, e.held_at, e.duration_minutes, len(set(e.attendees)),
    )]  # fmt: skip


def on_cancelled(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, SessionCancelled)
    return [_s(
        "INSERT INTO slips (session_id, at, kind, program_id, group_id) VALUES ($1,$2,$3,$4,$5)"
        " ON CONFLICT DO NOTHING",
        e.session_id, e.cancelled_at, e.kind.value, e.program_id, e.group_id,
    )]  # fmt: skip


def on_goal_set(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, GoalSet)
    return [_s(
        "INSERT INTO goals (goal_id, program_id, group_id, participant_id, category, steps_total, set_at)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (goal_id) DO UPDATE SET category=EXCLUDED.category,"
        " set_at=EXCLUDED.set_at, steps_total=EXCLUDED.steps_total",
        e.goal_id, e.program_id, e.group_id, e.participant_id, e.category.value, e.steps_total, e.set_at,
    )]  # fmt: skip


def on_goal_progressed(env: Envelope) -> list[Statement]:
    """The latest progress wins, whichever order the events are applied in."""
    e = env.data
    assert isinstance(e, GoalProgressed)
    return [_s(
        "INSERT INTO goals (goal_id, program_id, group_id, participant_id, steps_total, steps_done, progressed_at)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (goal_id) DO UPDATE SET steps_done=EXCLUDED.steps_done,"
        " steps_total=EXCLUDED.steps_total, progressed_at=EXCLUDED.progressed_at"
        " WHERE goals.progressed_at IS NULL OR goals.progressed_at <= EXCLUDED.progressed_at",
        e.goal_id, e.program_id, e.group_id, e.participant_id, e.steps_total, e.steps_done, e.progressed_at,
    )]  # fmt: skip


def on_closed(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, RelationshipClosed)
    return [_s(
        "INSERT INTO closures (group_id, closed_at, program_id, reason, term) VALUES ($1,$2,$3,$4,$5)"
        " ON CONFLICT DO NOTHING",
        e.group_id, e.closed_at, e.program_id, e.reason.value, e.term,
    )]  # fmt: skip


def on_expectations(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, ExpectationsAgreed)
    return [_s(
        "INSERT INTO expectations (group_id, program_id, cadence_days, agreed_at) VALUES ($1,$2,$3,$4)"
        " ON CONFLICT (group_id) DO UPDATE SET cadence_days=EXCLUDED.cadence_days, agreed_at=EXCLUDED.agreed_at"
        " WHERE expectations.agreed_at <= EXCLUDED.agreed_at",
        e.group_id, e.program_id, e.cadence_days, e.agreed_at,
    )]  # fmt: skip


def measures(e: FeedbackGivenV2) -> dict[str, float | int | None]:
    """Each measure's answers averaged, as a share of its scale; would_recommend on 0-10 (rounded)."""
    found: dict[str, list[float]] = defaultdict(list)
    for s in e.scores:
        found[s.measure.value].append(normalise(s.score, s.scale_min, s.scale_max))
    out: dict[str, float | int | None] = {
        m: sum(v) / len(v) if (v := found.get(m)) else None
        for m in ("session_rating", "mentor_helps", "mentee_engaged", "pairing_fit")
    }
    recommend = found.get("would_recommend")
    out["would_recommend"] = round(10 * sum(recommend) / len(recommend)) if recommend else None
    return out


def on_feedback(env: Envelope) -> list[Statement]:
    """One row per feedback_id; a higher revision replaces it, a lower or equal one changes nothing."""
    e = env.data
    assert isinstance(e, FeedbackGivenV2)
    m = measures(e)
    return [_s(
        "INSERT INTO feedback (feedback_id, revision, program_id, group_id, respondent_role, survey_kind, given_at,"
        " session_rating, mentor_helps, mentee_engaged, pairing_fit, would_recommend)"
        " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT (feedback_id) DO UPDATE SET"
        " revision=EXCLUDED.revision, given_at=EXCLUDED.given_at, session_rating=EXCLUDED.session_rating,"
        " mentor_helps=EXCLUDED.mentor_helps, mentee_engaged=EXCLUDED.mentee_engaged,"
        " pairing_fit=EXCLUDED.pairing_fit, would_recommend=EXCLUDED.would_recommend"
        " WHERE feedback.revision < EXCLUDED.revision",
        e.feedback_id, e.revision, e.program_id, e.group_id, e.respondent_role.value, e.survey_kind.value,
        e.given_at, m["session_rating"], m["mentor_helps"], m["mentee_engaged"], m["pairing_fit"],
        m["would_recommend"],
    )]  # fmt: skip


def alert_subject(kind: str, group_id: str | None, mentor_id: str | None, program_id: str) -> str:
    """What an alert is about: its relationship, its mentor, or its program."""
    if kind == "mentor_over_capacity" and mentor_id:
        return mentor_id
    if kind != "match_rate_below_target" and group_id:
        return group_id
    return program_id


def on_alert_raised(env: Envelope) -> list[Statement]:
    """Our own alerts, back from the topic: already stored when raised, restored by a rebuild."""
    e = env.data
    assert isinstance(e, AlertRaisedV2)
    return [_s(
        "INSERT INTO alerts (alert_id, kind, subject, program_id, group_id, mentor_id, severity, detail,"
        " risk_score, raised_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) ON CONFLICT DO NOTHING",
        e.alert_id, e.kind.value, alert_subject(e.kind.value, e.group_id, e.mentor_id, e.program_id), e.program_id,
        e.group_id, e.mentor_id, e.severity, e.detail, e.risk_score, e.raised_at,
    )]  # fmt: skip


def on_alert_cleared(env: Envelope) -> list[Statement]:
    e = env.data
    assert isinstance(e, AlertClearedV2)
    return [_s("UPDATE alerts SET cleared_at=$2 WHERE alert_id=$1 AND cleared_at IS NULL", e.alert_id, e.cleared_at)]


STATEMENTS: dict[type[Event], Callable[[Envelope], list[Statement]]] = {
    ProgramOpened: on_program,
    ProgramUpdated: on_program,
    ParticipantEnrolled: on_enrolled,
    ParticipantUpdated: on_updated,
    ParticipantWithdrawn: on_withdrawn,
    GroupMatched: on_group_matched,
    ParticipantUnmatched: on_unmatched,
    MatchingCompleted: on_completed,
    MatchOverrideRecorded: on_override,
    SessionHeld: on_held,
    SessionCancelled: on_cancelled,
    GoalSet: on_goal_set,
    GoalProgressed: on_goal_progressed,
    RelationshipClosed: on_closed,
    ExpectationsAgreed: on_expectations,
    FeedbackGivenV2: on_feedback,
    AlertRaisedV2: on_alert_raised,
    AlertClearedV2: on_alert_cleared,
}


def _handler(statements: Callable[[Envelope], list[Statement]]) -> Handler:
    async def apply(conn: asyncpg.Connection, env: Envelope) -> None:
        for st in statements(env):
            await conn.execute(st.sql, *st.args)

    return apply


HANDLERS: dict[type[Event], Handler] = {event: _handler(statements) for event, statements in STATEMENTS.items()}
"""The per-event form, for the runtime's :class:`~runtime.consumer.EventConsumer`."""


async def apply_batch(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
    """The effect of :data:`HANDLERS` applied to ``envelopes`` in order, in a few ``executemany`` calls.

    Call it in the transaction that records the batch's event ids, with the envelopes not applied
    before. Statements are grouped per table (no statement reads another table, so tables commute),
    keeping each table's order, and each run of the same statement goes in one ``executemany``.
    """
    per_table: dict[str, list[Statement]] = defaultdict(list)
    for env in envelopes:
        of_event = STATEMENTS.get(type(env.data))
        if of_event is not None:
            for st in of_event(env):
                per_table[st.table].append(st)
    for in_order in per_table.values():
        for sql, run in itertools.groupby(in_order, key=lambda st: st.sql):
            await conn.executemany(sql, [st.args for st in run])


_ONE_BATCH = batched(apply_batch)
BATCHED_HANDLERS: dict[type[Event], Handler | Batched] = dict.fromkeys(STATEMENTS, _ONE_BATCH)
"""The batched form the service runs: one :class:`~runtime.consumer.Batched` for every projected type, so a
poll's fresh events reach :func:`apply_batch` together (a few ``executemany`` per batch, not a round trip
per event); the consumer falls back to one event at a time only to find a poison record."""
