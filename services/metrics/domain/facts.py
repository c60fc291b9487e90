"""What the metrics service knows, as plain values loaded from its read models.

Each fact is one row of a projection; the KPI, fairness, risk and alert functions take lists of them
and do no I/O, so every formula can be tested by hand and by property.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class ProgramFact:
    program_id: str
    name: str
    form: str
    cadence_days: int
    status: str
    starts_on: date
    opened_at: datetime


@dataclass(frozen=True)
class ParticipantFact:
    """One enrolment: a person in one program (the same person may have several)."""

    program_id: str
    participant_id: str
    role: str
    department: str
    level: int
    location: str | None
    capacity: int | None
    enrolled_at: datetime
    withdrawn_at: datetime | None = None

    def active_at(self, t: datetime) -> bool:
        return self.enrolled_at <= t and (self.withdrawn_at is None or self.withdrawn_at > t)

    @property
    def seeker(self) -> bool:
        """Mentees and peers seek a place; mentors offer capacity, so 'placed share' is about seekers."""
        return self.role != "mentor"


@dataclass(frozen=True)
class MemberFact:
    group_id: str
    participant_id: str
    role: str


@dataclass(frozen=True)
class ClosureFact:
    group_id: str
    reason: str
    closed_at: datetime


@dataclass(frozen=True)
class GroupFact:
    """A relationship as formed by matching, with what the sessions service said of it since."""

    group_id: str
    program_id: str
    form: str
    fit: float
    cadence_days: int
    matched_at: datetime
    members: tuple[MemberFact, ...]
    agreed_cadence_days: int | None = None
    closures: tuple[ClosureFact, ...] = ()

    @property
    def cadence(self) -> int:
        """The cadence the group agreed, else the program's."""
        return self.agreed_cadence_days or self.cadence_days

    def closed_by(self, t: datetime) -> ClosureFact | None:
        """The closure in force at ``t``: the latest one before it, unless that was a renewal (the
        relationship goes on as its next term with the same group id)."""
        before = [c for c in self.closures if c.closed_at <= t]
        if not before:
            return None
        last = max(before, key=lambda c: c.closed_at)
        return None if last.reason == "renewed" else last

    def open_at(self, t: datetime) -> bool:
        return self.matched_at <= t and self.closed_by(t) is None

    def mentors(self) -> list[str]:
        return [m.participant_id for m in self.members if m.role == "mentor"]


@dataclass(frozen=True)
class UnmatchedFact:
    program_id: str
    participant_id: str
    reason_code: str
    at: datetime


@dataclass(frozen=True)
class RunFact:
    run_id: str
    program_id: str
    completed_at: datetime
    placed_count: int
    unplaced_count: int


@dataclass(frozen=True)
class SessionFact:
    session_id: str
    group_id: str
    program_id: str
    held_at: datetime
    attendees: int


@dataclass(frozen=True)
class SlipFact:
    """A session cancelled or rescheduled."""

    session_id: str
    group_id: str
    program_id: str
    kind: str
    at: datetime


@dataclass(frozen=True)
class GoalFact:
    goal_id: str
    group_id: str
    program_id: str
    participant_id: str
    category: str | None
    steps_total: int
    steps_done: int
    set_at: datetime | None
    progressed_at: datetime | None


@dataclass(frozen=True)
class FeedbackFact:
    """One answer (its latest revision); each measure normalised to [0, 1] over its question's scale.

    ``would_recommend`` is kept on its 0-10 scale for the NPS (rescaled and rounded if a survey used
    another scale)."""

    feedback_id: str
    group_id: str
    program_id: str
    respondent_role: str
    given_at: datetime
    session_rating: float | None = None
    mentor_helps: float | None = None
    mentee_engaged: float | None = None
    pairing_fit: float | None = None
    would_recommend: int | None = None


@dataclass(frozen=True)
class OverrideFact:
    """An admin's override of matching (lock or exclude a pair), without the pair."""

    override_id: str
    program_id: str
    kind: str
    participant_ids: tuple[str, ...]
    at: datetime


@dataclass
class Facts:
    """Everything the KPIs of one scope need (a program, a form, the organisation)."""

    programs: list[ProgramFact] = field(default_factory=list)
    participants: list[ParticipantFact] = field(default_factory=list)
    groups: list[GroupFact] = field(default_factory=list)
    unmatched: list[UnmatchedFact] = field(default_factory=list)
    runs: list[RunFact] = field(default_factory=list)
    sessions: list[SessionFact] = field(default_factory=list)
    slips: list[SlipFact] = field(default_factory=list)
    goals: list[GoalFact] = field(default_factory=list)
    feedback: list[FeedbackFact] = field(default_factory=list)
    overrides: list[OverrideFact] = field(default_factory=list)
    org_participants: list[ParticipantFact] = field(default_factory=list)
    """Every enrolment in every program: people in several programs, mentees who became mentors and
    mentor loads count across programs."""
    org_groups: list[GroupFact] = field(default_factory=list)

    def only(self, program_ids: set[str]) -> Facts:
        """The same facts restricted to some programs (org-wide lists kept whole)."""

        def keep(items: list) -> list:  # type: ignore[type-arg]
            return [x for x in items if x.program_id in program_ids]

        return Facts(
            programs=keep(self.programs),
            participants=keep(self.participants),
            groups=keep(self.groups),
            unmatched=keep(self.unmatched),
            runs=keep(self.runs),
            sessions=keep(self.sessions),
            slips=keep(self.slips),
            goals=keep(self.goals),
            feedback=keep(self.feedback),
            overrides=keep(self.overrides),
            org_participants=self.org_participants,
            org_groups=self.org_groups,
        )
