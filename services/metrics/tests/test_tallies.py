"""The SQL aggregates the API runs give exactly the tallies the domain counts from the facts.

A seeded random organisation exercises every rule the tallies follow: two programs sharing people,
mentors who change capacity, withdrawals and re-enrolments, sessions before the match, closures of
every outcome (renewals included), agreed cadences, goals, slips, answers of every measure, unmatched
reasons and overrides. Its events are projected into a fresh schema; then, for every scope (each
program, the form, the organisation) and several windows, the SQL tallies must equal the domain's
(floats to 1e-9: PostgreSQL sums in another order), and so must the reports built from them; and the
alerts the safety nets want, judged from SQL states, must be those judged from the facts.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from conftest import unique
from contracts.envelope import Envelope
from contracts.events import (
    AlertKindV2,
    CancellationKind,
    ClosureReason,
    ExpectationsAgreed,
    FeedbackGivenV2,
    GoalCategory,
    GoalProgressed,
    GoalSet,
    GroupMatched,
    GroupMember,
    MatchingCompleted,
    MatchOverrideRecorded,
    Measure,
    MeetingFormat,
    OverrideKind,
    ParticipantEnrolled,
    ParticipantProfile,
    ParticipantUnmatched,
    ParticipantWithdrawn,
    ProgramOpened,
    QuestionScore,
    RelationshipClosed,
    SessionCancelled,
    SessionHeld,
    SolverStats,
    SurveyKind,
    UnmatchedReason,
)
from contracts.policy import Form, Role, default_policy
from services.metrics import handlers
from services.metrics.adapters import aggregates, queries
from services.metrics.adapters.projection import apply_batch
from services.metrics.domain.alerts import Condition
from services.metrics.domain.report import Window, WindowName
from services.metrics.domain.tally import tally
from services.metrics.domain.thresholds import Thresholds
from services.metrics.tests.conftest import FreshSchema

pytestmark = pytest.mark.stack

T0 = datetime(2026, 2, 2, 9, tzinfo=UTC)
DAYS = 84


def _at(rng: random.Random, lo: float = 0, hi: float = DAYS) -> datetime:
    """A time with a random second, so no two answers of a group share one (their order is by time)."""
    return T0 + timedelta(days=rng.uniform(lo, hi), seconds=rng.randint(0, 59))


def organisation(tag: str, seed: int = 11) -> list[Envelope]:
    rng = random.Random(seed)
    events: list[Envelope] = []

    def add(event: object) -> None:
        events.append(Envelope(data=event))  # type: ignore[arg-type]

    programs = [f"prg-{tag}-a", f"prg-{tag}-b"]
    for i, program in enumerate(programs):
        add(ProgramOpened(
            program_id=program, name=f"tallies {i}", form=Form.ONE_TO_ONE, cadence_days=14 + 7 * i,
            starts_on=date(2026, 2, 2), policy=default_policy(Form.ONE_TO_ONE), opened_at=T0,
        ))  # fmt: skip
    people = [f"{tag}-p{i}" for i in range(90)]
    departments, locations = ["Eng", "Ops", "Sales", "HR"], ["Milan", "Paris", None]
    enrolled: dict[str, list[tuple[str, Role]]] = {p: [] for p in programs}
    for i, pid in enumerate(people):
        for program in programs if i % 3 == 0 else programs[i % 2 : i % 2 + 1]:
            role = Role.MENTOR if rng.random() < 0.35 else Role.MENTEE
            profile = ParticipantProfile(
                participant_id=pid, role=role, department=rng.choice(departments), level=rng.randint(1, 4),
                location=rng.choice(locations), capacity=rng.choice([1, 2, 3, 0]) if role == Role.MENTOR else None,
            )  # fmt: skip
            add(ParticipantEnrolled(program_id=program, profile=profile, enrolled_at=_at(rng, -10, 40)))
            enrolled[program].append((pid, role))
            if rng.random() < 0.12:
                add(ParticipantWithdrawn(program_id=program, participant_id=pid, withdrawn_at=_at(rng, 20, 80)))
    for program in programs:
        mentors = [p for p, r in enrolled[program] if r == Role.MENTOR]
        mentees = [p for p, r in enrolled[program] if r == Role.MENTEE]
        rng.shuffle(mentees)
        placed, left = mentees[: len(mentees) * 3 // 4], mentees[len(mentees) * 3 // 4 :]
        for k, mentee in enumerate(placed):
            group, mentor = f"{program}-g{k}", rng.choice(mentors)
            matched = _at(rng, 0, 60)
            add(GroupMatched(
                program_id=program, run_id=f"{program}-r", group_id=group, form=Form.ONE_TO_ONE,
                members=[GroupMember(participant_id=mentor, role=Role.MENTOR),
                         GroupMember(participant_id=mentee, role=Role.MENTEE)],
                fit=round(rng.uniform(0, 5), 3), explanation=[], cadence_days=14, matched_at=matched,
            ))  # fmt: skip
            _relationship(add, rng, program, group, mentee, matched)
        for mentee in left:
            if rng.random() < 0.7:
                reason = rng.choice(list(UnmatchedReason))
                add(ParticipantUnmatched(
                    program_id=program, run_id=f"{program}-r", participant_id=mentee, reason_code=reason,
                    reason="scripted",
                ))  # fmt: skip
        add(MatchingCompleted(
            program_id=program, run_id=f"{program}-r", seed=1, input_digest="sha256:x", placed_count=len(placed),
            unplaced_count=len(left), group_count=len(placed), total_fit=0.0, max_load_ratio=0.0,
            solver=SolverStats(status="OPTIMAL", wall_time_seconds=0.1), completed_at=T0 + timedelta(days=20),
        ))  # fmt: skip
        for k in range(6):
            a, b = rng.sample(mentors + mentees, 2)
            add(MatchOverrideRecorded(
                program_id=program, override_id=f"{program}-o{k}", kind=rng.choice(list(OverrideKind)),
                participant_ids=[a, b], recorded_at=_at(rng),
            ))  # fmt: skip
    return events


def _relationship(add: Any, rng: random.Random, program: str, group: str, mentee: str, matched: datetime) -> None:
    members = [mentee]
    for s in range(rng.randint(0, 6)):
        held = _at(rng, (matched - T0).days - 10, DAYS)  # some met before the match
        add(SessionHeld(
            program_id=program, group_id=group, session_id=f"{group}-s{s}", held_at=held, duration_minutes=45,
            attendees=members[: rng.randint(0, 1)] + ["x"] * rng.randint(0, 2),
        ))  # fmt: skip
    for s in range(rng.randint(0, 3)):
        add(SessionCancelled(
            program_id=program, group_id=group, session_id=f"{group}-x{s}", kind=rng.choice(list(CancellationKind)),
            cancelled_at=_at(rng, (matched - T0).days, DAYS),
        ))  # fmt: skip
    if rng.random() < 0.5:
        add(ExpectationsAgreed(
            program_id=program, group_id=group, cadence_days=rng.choice([7, 14, 30]), format=MeetingFormat.VIDEO,
            agreed_at=matched + timedelta(days=1),
        ))  # fmt: skip
    for k in range(rng.randint(0, 2)):
        goal, total = f"{group}-goal{k}", rng.randint(1, 4)
        add(GoalSet(
            program_id=program, group_id=group, goal_id=goal, participant_id=mentee,
            category=rng.choice(list(GoalCategory)), steps_total=total, set_at=_at(rng, (matched - T0).days, DAYS),
        ))  # fmt: skip
        if rng.random() < 0.7:
            add(GoalProgressed(
                program_id=program, group_id=group, goal_id=goal, participant_id=mentee,
                steps_done=rng.randint(0, total), steps_total=total, progressed_at=_at(rng, 30, DAYS),
            ))  # fmt: skip
    for k in range(rng.randint(0, 7)):
        scores = [
            QuestionScore(question_id=f"q{m}", measure=m, score=rng.randint(1, 5), scale_min=1, scale_max=5)
            for m in (Measure.SESSION_RATING, Measure.MENTOR_HELPS, Measure.MENTEE_ENGAGED, Measure.PAIRING_FIT)
            if rng.random() < 0.8
        ]
        scores.append(QuestionScore(
            question_id="nps", measure=Measure.WOULD_RECOMMEND, score=rng.randint(0, 10), scale_min=0, scale_max=10,
        ))  # fmt: skip
        add(FeedbackGivenV2(
            program_id=program, group_id=group, feedback_id=f"{group}-f{k}", revision=1, survey_id="s",
            survey_version=1, survey_kind=SurveyKind.SESSION, respondent_role=rng.choice([Role.MENTOR, Role.MENTEE]),
            scores=scores, given_at=_at(rng, (matched - T0).days, DAYS),
        ))  # fmt: skip
    closures = rng.choice([[], [ClosureReason.COMPLETED], [ClosureReason.FADED], [ClosureReason.WITHDRAWN],
                           [ClosureReason.RENEWED], [ClosureReason.RENEWED, ClosureReason.COMPLETED]])  # fmt: skip
    at = matched
    for term, reason in enumerate(closures, start=1):
        at = at + timedelta(days=rng.uniform(5, 40), seconds=rng.randint(0, 59))
        add(RelationshipClosed(program_id=program, group_id=group, reason=reason, closed_at=at, term=term))


def _equal(sql: Any, python: Any, where: str) -> None:
    """Dataclasses, dicts and sequences compared field by field; floats to 1e-9."""
    if dataclasses.is_dataclass(sql):
        for f in dataclasses.fields(sql):
            _equal(getattr(sql, f.name), getattr(python, f.name), f"{where}.{f.name}")
    elif isinstance(sql, dict):
        assert sql.keys() == python.keys(), where
        for k in sql:
            _equal(sql[k], python[k], f"{where}[{k}]")
    elif isinstance(sql, list | tuple):
        assert len(sql) == len(python), where
        for i, (a, b) in enumerate(zip(sql, python, strict=True)):
            _equal(a, b, f"{where}[{i}]")
    elif isinstance(sql, float) or isinstance(python, float):
        assert sql == pytest.approx(python, rel=1e-9, abs=1e-12), where
    else:
        assert sql == python, where


def _key(c: Condition) -> tuple[str, str]:
    return (c.key.kind, c.key.subject)


async def test_sql_tallies_equal_the_domain_counts(fresh_schema: FreshSchema) -> None:
    tag = unique("tally")
    events = organisation(tag)
    async with fresh_schema("metrics_tally") as pool:
        async with pool.acquire() as conn, conn.transaction():
            await apply_batch(conn, events)
        scopes: list[list[str] | None] = [[f"prg-{tag}-a"], [f"prg-{tag}-b"], [f"prg-{tag}-a", f"prg-{tag}-b"], None]
        ends = [T0 + timedelta(days=d, hours=3) for d in (25, 50, 70, 95)]
        windows = [Window.ending(name, end) for end in ends for name in WindowName]
        checked = 0
        async with pool.acquire() as conn:
            for ids in scopes:
                facts = await queries.load_facts(conn, ids)
                for w in windows:
                    sql = await aggregates.tallies(conn, ids, w)
                    python = tally(facts, w)
                    _equal(sql, python, f"{ids} {w.name} {w.end:%m-%d}")
                    checked += 1
                    sql_report = handlers.report_from_tallies(sql, handlers.Scope(), w, {}, 0, culture=True)
                    python_report = handlers.report_from_tallies(python, handlers.Scope(), w, {}, 0, culture=True)
                    _equal(sql_report, python_report, f"report {ids} {w.name}")
            kinds: set[str] = set()
            limits = {f"prg-{tag}-b": Thresholds(mentor_load_ratio=0.5, rating_floor=0.7, reschedules=1)}
            for end in ends:  # facts of the whole organisation, as the schedule judges it
                by_sql = await handlers.conditions_now(conn, limits, end)
                by_facts = handlers.conditions(facts, limits, end)
                assert sorted(by_sql, key=_key) == sorted(by_facts, key=_key), end
                kinds |= {c.key.kind for c in by_sql}
        assert checked == len(scopes) * len(windows)
        assert kinds == {k.value for k in AlertKindV2}, "every safety net had something to say"
        # the fixture reached the rules it is there for
        t = tally(facts, windows[-1])
        assert t.engagement.closed["completed"][0] and t.engagement.closed["faded"][0]
        assert t.matching.overrides and t.participation.in_several_programs and t.outcomes.goals_completed
        assert any(r.state.slips_since_last_held for r in t.engagement.open_relationships)
