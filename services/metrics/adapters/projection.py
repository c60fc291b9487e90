"""Every projection write of the metrics service, in one module.

Each event becomes one or a few row writes keyed by the fact's own id (a session, a goal, a feedback_id,
a group), so applying it twice or in another order across topics gives the same rows; the runtime's
tracking record (``processed_events``) makes a redelivery a no-op on top. No write reads another table,
so writes on different tables commute: :func:`apply_batch` applies a batch with one multi-row statement
per run of one kind of write on a table (:mod:`~services.metrics.adapters.writes`), in the order the
events came in for that table: the same effect as :data:`HANDLERS` one event after another, in a dozen
statements per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar, cast

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
    Measure,
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
from runtime.tracking import Batched, Handler, batched
from services.metrics.adapters.writes import Runs, Update, Upsert
from services.metrics.domain.stats import normalise

TEXT, INT, FLOAT, TS = "text", "int", "float8", "timestamptz"
E = TypeVar("E", bound=Event)

PROGRAM = Upsert(
    "programs",
    (
        ("program_id", TEXT),
        ("name", TEXT),
        ("form", TEXT),
        ("cadence_days", INT),
        ("status", TEXT),
        ("starts_on", "date"),
        ("opened_at", TS),
    ),
    key=("program_id",),
    update=("name", "cadence_days", "status", "starts_on"),
)
_PARTICIPANT_COLUMNS = (
    ("program_id", TEXT),
    ("participant_id", TEXT),
    ("role", TEXT),
    ("department", TEXT),
    ("level", INT),
    ("location", TEXT),
    ("capacity", INT),
    ("enrolled_at", TS),
)
_PROFILE = ("role", "department", "level", "location", "capacity")
ENROLMENT = Upsert(
    "participants",
    (*_PARTICIPANT_COLUMNS, ("withdrawn_at", TS)),
    key=("program_id", "participant_id"),
    update=(*_PROFILE, "enrolled_at", "withdrawn_at"),
    new_keys=True,
)
"""A (re-)enrolment starts the enrolment afresh: a new enrolment time, no withdrawal."""
PROFILE = Upsert("participants", _PARTICIPANT_COLUMNS, key=("program_id", "participant_id"), update=_PROFILE)
WITHDRAWAL = Update("participants", (("program_id", TEXT), ("participant_id", TEXT)), (("withdrawn_at", TS),))
GROUP = Upsert(
    "groups",
    (
        ("group_id", TEXT),
        ("program_id", TEXT),
        ("run_id", TEXT),
        ("form", TEXT),
        ("fit", FLOAT),
        ("cadence_days", INT),
        ("matched_at", TS),
    ),
    key=("group_id",),
    new_keys=True,
)
MEMBER = Upsert(
    "members",
    (("group_id", TEXT), ("participant_id", TEXT), ("program_id", TEXT), ("role", TEXT)),
    key=("group_id", "participant_id"),
    new_keys=True,
)
UNMATCHED = Upsert(
    "unmatched",
    (("program_id", TEXT), ("participant_id", TEXT), ("run_id", TEXT), ("reason_code", TEXT), ("at", TS)),
    key=("program_id", "participant_id"),
    update=("run_id", "reason_code", "at"),
    newer="at",
)
"""The latest run's reason wins (the envelope's time orders runs; the payload carries none). Every run
names the unplaced again, so the key is stored as a rule: no ``COPY`` attempt."""

RUN = Upsert(
    "runs",
    (("run_id", TEXT), ("program_id", TEXT), ("completed_at", TS), ("placed_count", INT), ("unplaced_count", INT)),
    key=("run_id",),
)
OVERRIDE = Upsert(
    "overrides",
    (("override_id", TEXT), ("program_id", TEXT), ("kind", TEXT), ("participant_ids", "text[]"), ("at", TS)),
    key=("program_id", "override_id"),
)
"""Keyed by program too: matching numbers overrides per database, not across every program on the topic."""
SESSION = Upsert(
    "sessions_held",
    (
        ("session_id", TEXT),
        ("program_id", TEXT),
        ("group_id", TEXT),
        ("held_at", TS),
        ("duration_minutes", INT),
        ("attendees", INT),
    ),
    key=("session_id",),
    update=("held_at", "duration_minutes", "attendees"),
    new_keys=True,
)
SLIP = Upsert(
    "slips",
    (("session_id", TEXT), ("at", TS), ("kind", TEXT), ("program_id", TEXT), ("group_id", TEXT)),
    key=("session_id", "at", "kind"),
    new_keys=True,
)
_GOAL = (("goal_id", TEXT), ("program_id", TEXT), ("group_id", TEXT), ("participant_id", TEXT))
GOAL_SET = Upsert(
    "goals",
    (*_GOAL, ("category", TEXT), ("steps_total", INT), ("set_at", TS)),
    key=("goal_id",),
    update=("category", "set_at", "steps_total"),
    new_keys=True,
)
GOAL_PROGRESS = Upsert(
    "goals",
    (*_GOAL, ("steps_total", INT), ("steps_done", INT), ("progressed_at", TS)),
    key=("goal_id",),
    update=("steps_done", "steps_total", "progressed_at"),
    newer="progressed_at",
)
"""The latest progress wins, whichever order the events are applied in."""
CLOSURE = Upsert(
    "closures",
    (("group_id", TEXT), ("closed_at", TS), ("program_id", TEXT), ("reason", TEXT), ("term", INT)),
    key=("group_id", "closed_at"),
    new_keys=True,
)
EXPECTATIONS = Upsert(
    "expectations",
    (("group_id", TEXT), ("program_id", TEXT), ("cadence_days", INT), ("agreed_at", TS)),
    key=("group_id",),
    update=("cadence_days", "agreed_at"),
    newer="agreed_at",
)
FEEDBACK = Upsert(
    "feedback",
    (
        ("feedback_id", TEXT),
        ("revision", INT),
        ("program_id", TEXT),
        ("group_id", TEXT),
        ("respondent_role", TEXT),
        ("survey_kind", TEXT),
        ("given_at", TS),
        ("session_rating", FLOAT),
        ("mentor_helps", FLOAT),
        ("mentee_engaged", FLOAT),
        ("pairing_fit", FLOAT),
        ("would_recommend", INT),
    ),
    key=("feedback_id",),
    update=(
        "revision",
        "given_at",
        "session_rating",
        "mentor_helps",
        "mentee_engaged",
        "pairing_fit",
        "would_recommend",
    ),
    newer="revision",
    strictly=True,
    new_keys=True,
)
"""One row per feedback_id; a higher revision replaces it, a lower or equal one changes nothing."""
ALERT = Upsert(
    "alerts",
    (
        ("alert_id", TEXT),
        ("kind", TEXT),
        ("subject", TEXT),
        ("program_id", TEXT),
        ("group_id", TEXT),
        ("mentor_id", TEXT),
        ("severity", TEXT),
        ("detail", TEXT),
        ("risk_score", FLOAT),
        ("raised_at", TS),
    ),
    key=("alert_id",),
    any_conflict=True,
)
"""Our own alerts, back from the topic: already stored when raised (then the open alert of the same kind and
subject conflicts, not only the id), restored by a rebuild."""
ALERT_CLEARED = Update(
    "alerts", (("alert_id", TEXT),), (("cleared_at", TS),), when="cleared_at IS NULL", first_wins=True
)


def _of(run: Sequence[Envelope], event: type[E]) -> list[E]:
    """The events of a run, all of one type: :func:`apply_batch` cuts runs by type, so no check per event."""
    return cast(list[E], [env.data for env in run])


def on_program(run: Sequence[Envelope], runs: Runs) -> None:
    for e in _of(run, ProgramOpened):
        status = e.status if isinstance(e, ProgramUpdated) else "open"
        runs.add(PROGRAM, (e.program_id, e.name, e.form, e.cadence_days, status, e.starts_on, e.opened_at))


def on_enrolled(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [
        (e.program_id, p.participant_id, p.role, p.department, p.level, p.location, p.capacity, e.enrolled_at, None)
        for e in _of(run, ParticipantEnrolled)
        for p in (e.profile,)
    ]
    runs.extend(ENROLMENT, rows)


def on_updated(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [
        (e.program_id, p.participant_id, p.role, p.department, p.level, p.location, p.capacity, e.updated_at)
        for e in _of(run, ParticipantUpdated)
        for p in (e.profile,)
    ]
    runs.extend(PROFILE, rows)


def on_withdrawn(run: Sequence[Envelope], runs: Runs) -> None:
    runs.extend(WITHDRAWAL, [(e.program_id, e.participant_id, e.withdrawn_at) for e in _of(run, ParticipantWithdrawn)])


def on_group_matched(run: Sequence[Envelope], runs: Runs) -> None:
    matched = _of(run, GroupMatched)
    runs.extend(
        GROUP, [(e.group_id, e.program_id, e.run_id, e.form, e.fit, e.cadence_days, e.matched_at) for e in matched]
    )
    runs.extend(MEMBER, [(e.group_id, m.participant_id, e.program_id, m.role) for e in matched for m in e.members])


def on_unmatched(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [
        (e.program_id, e.participant_id, e.run_id, e.reason_code, env.time)
        for env, e in zip(run, _of(run, ParticipantUnmatched), strict=True)
    ]
    runs.extend(UNMATCHED, rows)


def on_completed(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [
        (e.run_id, e.program_id, e.completed_at, e.placed_count, e.unplaced_count) for e in _of(run, MatchingCompleted)
    ]
    runs.extend(RUN, rows)


def on_override(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [
        (e.override_id, e.program_id, e.kind, e.participant_ids, e.recorded_at) for e in _of(run, MatchOverrideRecorded)
    ]
    runs.extend(OVERRIDE, rows)


def on_held(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [
        (e.session_id, e.program_id, e.group_id, e.held_at, e.duration_minutes, len(set(e.attendees)))
        for e in _of(run, SessionHeld)
    ]
    runs.extend(SESSION, rows)


def on_cancelled(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [(e.session_id, e.cancelled_at, e.kind, e.program_id, e.group_id) for e in _of(run, SessionCancelled)]
    runs.extend(SLIP, rows)


def on_goal_set(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [
        (e.goal_id, e.program_id, e.group_id, e.participant_id, e.category, e.steps_total, e.set_at)
        for e in _of(run, GoalSet)
    ]
    runs.extend(GOAL_SET, rows)


def on_goal_progressed(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [
        (e.goal_id, e.program_id, e.group_id, e.participant_id, e.steps_total, e.steps_done, e.progressed_at)
        for e in _of(run, GoalProgressed)
    ]
    runs.extend(GOAL_PROGRESS, rows)


def on_closed(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [(e.group_id, e.closed_at, e.program_id, e.reason, e.term) for e in _of(run, RelationshipClosed)]
    runs.extend(CLOSURE, rows)


def on_expectations(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [(e.group_id, e.program_id, e.cadence_days, e.agreed_at) for e in _of(run, ExpectationsAgreed)]
    runs.extend(EXPECTATIONS, rows)


_SLOT = {m: i for i, m in enumerate((Measure.SESSION_RATING, Measure.MENTOR_HELPS, Measure.MENTEE_ENGAGED,
                                     Measure.PAIRING_FIT, Measure.WOULD_RECOMMEND))}  # fmt: skip
"""Where each measure is summed in :func:`measures`; the averaged ones first, would_recommend last."""


def measures(e: FeedbackGivenV2) -> tuple[float | int | None, ...]:
    """Each measure's answers averaged, as a share of its scale (session_rating, mentor_helps,
    mentee_engaged, pairing_fit); then would_recommend on 0-10 (rounded). None for a measure not asked.
    (Sums in two small lists: an answer is a third of the events a projection applies, and a dict of
    lists per answer was a third of its rows' cost.)"""
    sums, counts = [0.0] * 5, [0] * 5
    for s in e.scores:
        slot = _SLOT.get(s.measure)
        if slot is not None:
            sums[slot] += normalise(s.score, s.scale_min, s.scale_max)
            counts[slot] += 1
    rating, helps, engaged, fit, recommend = sums
    n_rating, n_helps, n_engaged, n_fit, n_recommend = counts
    return (
        rating / n_rating if n_rating else None,
        helps / n_helps if n_helps else None,
        engaged / n_engaged if n_engaged else None,
        fit / n_fit if n_fit else None,
        round(10 * recommend / n_recommend) if n_recommend else None,
    )


def on_feedback(run: Sequence[Envelope], runs: Runs) -> None:
    rows = [
        (
            e.feedback_id,
            e.revision,
            e.program_id,
            e.group_id,
            e.respondent_role,
            e.survey_kind,
            e.given_at,
            *measures(e),
        )
        for e in _of(run, FeedbackGivenV2)
    ]
    runs.extend(FEEDBACK, rows)


def alert_subject(kind: str, group_id: str | None, mentor_id: str | None, program_id: str) -> str:
    """What an alert is about: its relationship, its mentor, or its program."""
    if kind == "mentor_over_capacity" and mentor_id:
        return mentor_id
    if kind != "match_rate_below_target" and group_id:
        return group_id
    return program_id


def on_alert_raised(run: Sequence[Envelope], runs: Runs) -> None:
    for e in _of(run, AlertRaisedV2):
        subject = alert_subject(e.kind, e.group_id, e.mentor_id, e.program_id)
        values = (e.alert_id, e.kind, subject, e.program_id, e.group_id, e.mentor_id, e.severity, e.detail)
        runs.add(ALERT, (*values, e.risk_score, e.raised_at))


def on_alert_cleared(run: Sequence[Envelope], runs: Runs) -> None:
    runs.extend(ALERT_CLEARED, [(e.alert_id, e.cleared_at) for e in _of(run, AlertClearedV2)])


WRITES: dict[type[Event], Callable[[Sequence[Envelope], Runs], None]] = {
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


def _handler(writes: Callable[[Sequence[Envelope], Runs], None]) -> Handler:
    async def apply(conn: asyncpg.Connection, env: Envelope) -> None:
        runs = Runs()
        writes([env], runs)
        for kind, rows in runs.in_order():
            for values in rows:
                await conn.execute(kind.one, *values)

    return apply


HANDLERS: dict[type[Event], Handler] = {event: _handler(writes) for event, writes in WRITES.items()}
"""The per-event form: one statement per row, the reference the batch form is tested against."""


async def apply_batch(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
    """The effect of :data:`HANDLERS` applied to ``envelopes`` in order, in one statement per run of one
    kind of write on a table (see :mod:`~services.metrics.adapters.writes`).

    Each run of consecutive events of one type is handed to its handler at once, which builds its rows in
    one comprehension (a consumer's batch holds a partition's records one after another, so runs are long).
    Call it in the transaction that records the batch's event ids, with the envelopes not applied before.
    """
    runs = Runs()
    start, end = 0, len(envelopes)
    while start < end:
        event = type(envelopes[start].data)
        stop = start + 1
        while stop < end and type(envelopes[stop].data) is event:
            stop += 1
        writes = WRITES.get(event)
        if writes is not None:
            writes(envelopes[start:stop], runs)
        start = stop
    await runs.execute(conn)


_ONE_BATCH = batched(apply_batch)
BATCHED_HANDLERS: dict[type[Event], Handler | Batched] = dict.fromkeys(WRITES, _ONE_BATCH)
"""The batched form the service runs: one :class:`~runtime.tracking.Batched` for every projected type, so a
poll's fresh events reach :func:`apply_batch` together (one statement per table and kind of write per
batch, not a round trip per event); the consumer falls back to one event at a time only to find a poison
record."""
