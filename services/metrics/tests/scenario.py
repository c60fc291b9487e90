"""A scripted one-to-one program whose KPIs are worked out by hand in the tests.

12 mentees (departments: Eng 6, Ops 5, HR 1; level 3; Milan) and 6 mentors (capacity 3). Enrolled at T0.
Run 1 at T0+2d places m1-m6 (M1: m1 m2, M2: m3 m4, M3: m5 m6); run 2 at T0+4d places m7-m10
(M4: m7 m8, M5: m9, M6: m10); m11 lost the lottery, m12 found capacity exhausted.
Every group but the last (M6-m10, which never meets) holds one session: run 1's at T0+16d, run 2's at
T0+18d; all attend except one absentee. g1 reschedules once, g2 cancels once. Ten answers: session
rating 4 of 5 each, would_recommend 10 10 9 9 8 7 6 5 10 3 (the first one answered 2, then revised).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from contracts.envelope import Envelope
from contracts.events import (
    CancellationKind,
    FeedbackGivenV2,
    GroupMatched,
    GroupMember,
    MatchingCompleted,
    Measure,
    ParticipantEnrolled,
    ParticipantProfile,
    ParticipantUnmatched,
    ProgramOpened,
    QuestionScore,
    SessionCancelled,
    SessionHeld,
    SolverStats,
    SurveyKind,
    UnmatchedReason,
)
from contracts.policy import Form, Role, default_policy

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
CADENCE = 14
RECOMMEND = [10, 10, 9, 9, 8, 7, 6, 5, 10, 3]
PAIRS = [
    ("M1", "m1"),
    ("M1", "m2"),
    ("M2", "m3"),
    ("M2", "m4"),
    ("M3", "m5"),
    ("M3", "m6"),
    ("M4", "m7"),
    ("M4", "m8"),
    ("M5", "m9"),
    ("M6", "m10"),
]
DEPARTMENTS = ["Eng"] * 6 + ["Ops"] * 5 + ["HR"]


@dataclass
class Scenario:
    tag: str
    program_id: str = ""
    events: list[Envelope] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.program_id = f"prg-{self.tag}"

    def pid(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def group(self, i: int) -> str:
        return f"{self.tag}-g{i + 1}"

    @property
    def fading_group(self) -> str:
        return self.group(9)

    def add(self, event: object, at: datetime) -> None:
        self.events.append(Envelope(data=event, time=at))  # type: ignore[arg-type]

    def build(self) -> Scenario:
        p = self.program_id
        self.add(
            ProgramOpened(
                program_id=p,
                name=f"Scripted {self.tag}",
                form=Form.ONE_TO_ONE,
                cadence_days=CADENCE,
                starts_on=date(2026, 3, 2),
                policy=default_policy(Form.ONE_TO_ONE),
                opened_at=T0,
            ),
            T0,
        )
        for i in range(6):
            self._enrol(f"M{i + 1}", Role.MENTOR, "Eng", capacity=3)
        for i in range(12):
            self._enrol(f"m{i + 1}", Role.MENTEE, DEPARTMENTS[i])
        for run, (at, pairs) in enumerate([(T0 + 2 * DAY, range(6)), (T0 + 4 * DAY, range(6, 10))], start=1):
            for i in pairs:
                mentor, mentee = PAIRS[i]
                self.add(
                    GroupMatched(
                        program_id=p,
                        run_id=f"{self.tag}-r{run}",
                        group_id=self.group(i),
                        form=Form.ONE_TO_ONE,
                        members=[
                            GroupMember(participant_id=self.pid(mentor), role=Role.MENTOR),
                            GroupMember(participant_id=self.pid(mentee), role=Role.MENTEE),
                        ],
                        fit=float(i + 1),
                        explanation=[],
                        cadence_days=CADENCE,
                        matched_at=at,
                    ),
                    at,
                )
            if run == 2:
                for name, reason in (
                    ("m11", UnmatchedReason.LOST_LOTTERY),
                    ("m12", UnmatchedReason.CAPACITY_EXHAUSTED),
                ):
                    self.add(
                        ParticipantUnmatched(
                            program_id=p,
                            run_id=f"{self.tag}-r2",
                            participant_id=self.pid(name),
                            reason_code=reason,
                            reason="scripted",
                        ),
                        at,
                    )
            self.add(
                MatchingCompleted(
                    program_id=p,
                    run_id=f"{self.tag}-r{run}",
                    seed=1,
                    input_digest="sha256:x",
                    placed_count=len(pairs),
                    unplaced_count=2 if run == 2 else 0,
                    group_count=len(pairs),
                    total_fit=0.0,
                    max_load_ratio=0.0,
                    solver=SolverStats(status="OPTIMAL", wall_time_seconds=0.1),
                    completed_at=at,
                ),
                at,
            )
        for i in range(9):
            held = T0 + (16 if i < 6 else 18) * DAY
            mentor, mentee = PAIRS[i]
            attendees = [self.pid(mentor)] if i == 0 else [self.pid(mentor), self.pid(mentee)]
            self.held(i, held, attendees)
        self.add(
            SessionCancelled(
                program_id=p,
                group_id=self.group(0),
                session_id=f"{self.tag}-s0-x",
                kind=CancellationKind.RESCHEDULED,
                cancelled_at=T0 + 10 * DAY,
            ),
            T0 + 10 * DAY,
        )
        self.add(
            SessionCancelled(
                program_id=p,
                group_id=self.group(1),
                session_id=f"{self.tag}-s1-x",
                kind=CancellationKind.CANCELLED,
                cancelled_at=T0 + 11 * DAY,
            ),
            T0 + 11 * DAY,
        )
        self.answer(0, 2, revision=1)
        for i, score in enumerate(RECOMMEND):
            self.answer(i, score, revision=2 if i == 0 else 1)
        return self

    def widen(self, busy: int, idle: int) -> Scenario:
        """More mentors, for charts with cells of five or more: ``busy`` ones with one Sales mentee each
        (matched at T0+2d, meeting at T0+16d) and ``idle`` ones without."""
        at = T0 + 2 * DAY
        for k in range(busy + idle):
            self._enrol(f"X{k}", Role.MENTOR, "Eng", capacity=3)
        for k in range(busy):
            self._enrol(f"x{k}", Role.MENTEE, "Sales")
            group = f"{self.tag}-gx{k}"
            members = [
                GroupMember(participant_id=self.pid(f"X{k}"), role=Role.MENTOR),
                GroupMember(participant_id=self.pid(f"x{k}"), role=Role.MENTEE),
            ]
            matched = GroupMatched(
                program_id=self.program_id, run_id=f"{self.tag}-r1", group_id=group, form=Form.ONE_TO_ONE,
                members=members, fit=3.0, explanation=[], cadence_days=CADENCE, matched_at=at,
            )  # fmt: skip
            self.add(matched, at)
            held = SessionHeld(
                program_id=self.program_id, group_id=group, session_id=f"{group}-s", held_at=T0 + 16 * DAY,
                duration_minutes=45, attendees=[m.participant_id for m in members],
            )  # fmt: skip
            self.add(held, T0 + 16 * DAY)
        return self

    def held(self, i: int, at: datetime, attendees: list[str]) -> None:
        self.add(
            SessionHeld(
                program_id=self.program_id,
                group_id=self.group(i),
                session_id=f"{self.tag}-s{i}-{at.date()}",
                held_at=at,
                duration_minutes=60,
                attendees=attendees,
            ),
            at,
        )

    def answer(self, i: int, recommend: int, revision: int) -> None:
        at = T0 + (20 + i % 5) * DAY
        scores = [
            QuestionScore(question_id="q1", measure=Measure.SESSION_RATING, score=4, scale_min=1, scale_max=5),
            QuestionScore(
                question_id="q2", measure=Measure.WOULD_RECOMMEND, score=recommend, scale_min=0, scale_max=10
            ),
        ]
        self.add(
            FeedbackGivenV2(
                program_id=self.program_id,
                group_id=self.group(i % 9),
                feedback_id=f"{self.tag}-f{i}",
                revision=revision,
                survey_id="srv",
                survey_version=1,
                survey_kind=SurveyKind.PROGRAM,
                respondent_role=Role.MENTEE,
                scores=scores,
                given_at=at,
            ),
            at,
        )

    def _enrol(self, name: str, role: Role, department: str, capacity: int | None = None) -> None:
        profile = ParticipantProfile(
            participant_id=self.pid(name),
            role=role,
            department=department,
            level=3,
            location="Milan",
            capacity=capacity,
        )
        self.add(ParticipantEnrolled(program_id=self.program_id, profile=profile, enrolled_at=T0), T0)
