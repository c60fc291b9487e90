"""Every event the platform publishes, version 1.

Payloads carry scores, ids, tags and counts, never session notes or free-text feedback: those stay in
the service that owns them. Each class name is the past-tense fact; ``TYPE`` is its CloudEvents type.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from contracts import topics
from contracts.base import ContractModel, Id, Tag, Text
from contracts.policy import Form, MatchingPolicy, Role


class Event(ContractModel):
    """Base of all event payloads; subclasses set where they go and what they are called."""

    TYPE: ClassVar[str]
    TOPIC: ClassVar[topics.Topic]
    SOURCE: ClassVar[str]
    SUMMARY: ClassVar[str]

    def partition_key(self) -> str:
        return str(getattr(self, self.TOPIC.key_field))


# --- enrollment --------------------------------------------------------------------------------


class _EnrollmentEvent(Event):
    TOPIC = topics.ENROLLMENT
    SOURCE = "/mentoring/enrollment"
    program_id: Id


class ProgramOpened(_EnrollmentEvent):
    TYPE = "org.mentoring.program.opened.v1"
    SUMMARY = "A program was opened (or its settings changed: see program.updated) with its matching policy."
    name: Text = Field(max_length=200)
    form: Form
    cadence_days: int = Field(ge=1, le=366, description="agreed meeting cadence")
    starts_on: date
    ends_on: date | None = None
    policy: MatchingPolicy
    opened_at: datetime


class ProgramUpdated(ProgramOpened):
    TYPE = "org.mentoring.program.updated.v1"
    SUMMARY = "A program's settings changed; carries the full new state."
    status: Text = Field(default="open", description="open | closed")


class ParticipantProfile(ContractModel):
    """What matching needs to know about one enrolled person; HRIS data plus what they declared."""

    participant_id: Id = Field(description="the person's employee id")
    role: Role
    team_id: Id | None = Field(default=None, description="intact team, for team mentoring")
    department: Text = Field(max_length=120)
    level: int = Field(ge=0, le=30, description="seniority level from the HRIS, higher is more senior")
    manager_id: Id | None = None
    manager_chain: list[Id] = Field(
        default_factory=list, description="managers upwards from the direct one, from the org chart"
    )
    location: Text | None = Field(default=None, max_length=120)
    utc_offset_minutes: int = Field(default=0, ge=-720, le=840)
    languages: list[Tag] = Field(default_factory=list)
    skills_offered: list[Tag] = Field(default_factory=list)
    skills_sought: list[Tag] = Field(default_factory=list)
    goals: list[Tag] = Field(default_factory=list, description="goal tags, e.g. leadership, promotion")
    capacity: int | None = Field(
        default=None, ge=0, le=50, description="mentors: slots at once across all programs (a pair or a group each)"
    )
    conflicts_with: list[Id] = Field(default_factory=list, description="declared conflicts: never in one group")


class ParticipantEnrolled(_EnrollmentEvent):
    TYPE = "org.mentoring.participant.enrolled.v1"
    SUMMARY = "A person enrolled in a program as mentor, mentee or peer."
    profile: ParticipantProfile
    enrolled_at: datetime


class ParticipantUpdated(_EnrollmentEvent):
    TYPE = "org.mentoring.participant.updated.v1"
    SUMMARY = "An enrolment changed; carries the full new profile."
    profile: ParticipantProfile
    updated_at: datetime


class ParticipantWithdrawn(_EnrollmentEvent):
    TYPE = "org.mentoring.participant.withdrawn.v1"
    SUMMARY = "A person left a program."
    participant_id: Id
    withdrawn_at: datetime


# --- matching ----------------------------------------------------------------------------------


class _MatchingEvent(Event):
    TOPIC = topics.MATCHING
    SOURCE = "/mentoring/matching"
    program_id: Id
    run_id: Id


class SolverStats(ContractModel):
    status: Text = Field(description="OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN, or GREEDY for a fallback")
    objective: float | None = None
    bound: float | None = None
    gap: float | None = Field(default=None, description="relative gap between objective and bound, 0 = proven")
    wall_time_seconds: float


class MatchingCompleted(_MatchingEvent):
    TYPE = "org.mentoring.matching.completed.v1"
    SUMMARY = "A matching run finished; its groups and non-placements were published before it."
    seed: int
    input_digest: Text
    placed_count: int
    unplaced_count: int
    group_count: int
    total_fit: float
    max_load_ratio: float
    solver: SolverStats
    completed_at: datetime


class GroupMember(ContractModel):
    participant_id: Id
    role: Role


class FitContribution(ContractModel):
    criterion: Text = Field(description="skill | goal | cross_department")
    points: float
    detail: Text = Field(description="e.g. 'negotiation sought by m1, offered by M7'")


class GroupMatched(_MatchingEvent):
    TYPE = "org.mentoring.group.matched.v1"
    SUMMARY = "A group was formed by a matching run (one event per group)."
    group_id: Id
    form: Form
    members: list[GroupMember]
    fit: float
    explanation: list[FitContribution]
    cadence_days: int = Field(ge=1, le=366)
    matched_at: datetime


class UnmatchedReason(StrEnum):
    NO_ELIGIBLE_PARTNER = "no_eligible_partner"
    CAPACITY_EXHAUSTED = "capacity_exhausted"
    LOST_LOTTERY = "lost_lottery"
    GROUP_SIZE = "group_size"
    OTHER = "other"


class ParticipantUnmatched(_MatchingEvent):
    TYPE = "org.mentoring.participant.unmatched.v1"
    SUMMARY = "A person could not be placed by a run, with the reason."
    participant_id: Id
    reason_code: UnmatchedReason
    reason: Text = Field(description="generated explanation, e.g. 'lost the lottery to 3 equally eligible people'")


class OverrideKind(StrEnum):
    LOCK_PAIR = "lock_pair"
    EXCLUDE_PAIR = "exclude_pair"


class MatchOverrideRecorded(Event):
    TYPE = "org.mentoring.match.override.recorded.v1"
    SUMMARY = (
        "An admin recorded a matching override (two people always or never together), applied from the next "
        "run; its reason stays in the matching service."
    )
    TOPIC = topics.MATCHING
    SOURCE = "/mentoring/matching"
    program_id: Id
    override_id: Id
    kind: OverrideKind
    participant_ids: list[Id] = Field(min_length=2, max_length=2, description="the pair the override is about")
    recorded_at: datetime


# --- sessions ----------------------------------------------------------------------------------


class _SessionsEvent(Event):
    TOPIC = topics.SESSIONS
    SOURCE = "/mentoring/sessions"
    program_id: Id
    group_id: Id


class SessionScheduled(_SessionsEvent):
    TYPE = "org.mentoring.session.scheduled.v1"
    SUMMARY = "A group scheduled a session."
    session_id: Id
    scheduled_for: datetime
    duration_minutes: int = Field(ge=1, le=1440)


class SessionHeld(_SessionsEvent):
    TYPE = "org.mentoring.session.held.v1"
    SUMMARY = "A session took place; attendance only, never its notes."
    session_id: Id
    held_at: datetime
    duration_minutes: int = Field(ge=1, le=1440)
    attendees: list[Id]


class CancellationKind(StrEnum):
    CANCELLED = "cancelled"
    RESCHEDULED = "rescheduled"


class SessionCancelled(_SessionsEvent):
    TYPE = "org.mentoring.session.cancelled.v1"
    SUMMARY = "A session was cancelled or moved."
    session_id: Id
    kind: CancellationKind
    rescheduled_to: datetime | None = None
    cancelled_at: datetime


class GoalCategory(StrEnum):
    HARD_SKILL = "hard_skill"
    LEADERSHIP = "leadership"
    COMMUNICATION = "communication"
    PROMOTION = "promotion"
    OTHER = "other"


class GoalSet(_SessionsEvent):
    TYPE = "org.mentoring.goal.set.v1"
    SUMMARY = "A participant set a goal in their group; its wording stays in the sessions service."
    goal_id: Id
    participant_id: Id
    category: GoalCategory
    steps_total: int = Field(ge=1, le=100)
    set_at: datetime


class GoalProgressed(_SessionsEvent):
    TYPE = "org.mentoring.goal.progressed.v1"
    SUMMARY = "A goal moved forward by one or more steps."
    goal_id: Id
    participant_id: Id
    steps_done: int = Field(ge=0)
    steps_total: int = Field(ge=1)
    progressed_at: datetime


class ClosureReason(StrEnum):
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"
    FADED = "faded"
    RENEWED = "renewed"


class RelationshipClosed(_SessionsEvent):
    TYPE = "org.mentoring.relationship.closed.v1"
    SUMMARY = "A group's relationship ended (or was renewed as a new one); frees mentor capacity."
    reason: ClosureReason
    closed_at: datetime
    term: int | None = Field(
        default=None,
        ge=1,
        description="the term that ended (1 = the first); a renewal (reason renewed) goes on as term + 1 "
        "with the same members and group id, so it frees no capacity",
    )


class MeetingFormat(StrEnum):
    IN_PERSON = "in_person"
    VIDEO = "video"
    PHONE = "phone"


class ExpectationsAgreed(_SessionsEvent):
    TYPE = "org.mentoring.expectations.agreed.v1"
    SUMMARY = (
        "A group agreed (or changed) its expectations: cadence and format. The agenda template and the "
        "boundaries are the group's own words and stay in the sessions service."
    )
    cadence_days: int = Field(ge=1, le=366, description="agreed meeting cadence")
    format: MeetingFormat
    agreed_at: datetime


# --- feedback ----------------------------------------------------------------------------------


class FeedbackGiven(Event):
    TYPE = "org.mentoring.feedback.given.v1"
    TOPIC = topics.FEEDBACK
    SOURCE = "/mentoring/feedback"
    SUMMARY = "A participant answered a survey; scores only, free text stays in the feedback service."
    program_id: Id
    group_id: Id
    feedback_id: Id
    respondent_role: Role
    session_id: Id | None = None
    rating: int = Field(ge=1, le=5)
    would_recommend: int | None = Field(default=None, ge=0, le=10)
    mentor_helps: int | None = Field(default=None, ge=1, le=5, description="'my mentor gives the help I need'")
    given_at: datetime


class SurveyKind(StrEnum):
    SESSION = "session"
    CHECKIN = "checkin"
    PROGRAM = "program"


class Measure(StrEnum):
    """What a question measures, so that KPIs can be computed from any survey version."""

    SESSION_RATING = "session_rating"
    MENTOR_HELPS = "mentor_helps"
    MENTEE_ENGAGED = "mentee_engaged"
    PAIRING_FIT = "pairing_fit"
    WOULD_RECOMMEND = "would_recommend"
    OTHER = "other"


class QuestionScore(ContractModel):
    question_id: Id
    measure: Measure
    score: int = Field(description="within [scale_min, scale_max]")
    scale_min: int = Field(ge=0)
    scale_max: int = Field(ge=1)


class FeedbackGivenV2(Event):
    TYPE = "org.mentoring.feedback.given.v2"
    TOPIC = topics.FEEDBACK
    SOURCE = "/mentoring/feedback"
    SUMMARY = (
        "A participant answered a survey instance for their group: scores per question, never free text. "
        "A later answer to the same instance by the same person has the same feedback_id and a higher "
        "revision, and replaces the earlier one (count it once)."
    )
    program_id: Id
    group_id: Id
    feedback_id: Id = Field(description="stable per survey instance and respondent; not the respondent's id")
    revision: int = Field(ge=1, description="1 for the first answer, +1 each time it is replaced")
    survey_id: Id
    survey_version: int = Field(ge=1)
    survey_kind: SurveyKind
    session_id: Id | None = Field(default=None, description="for a session survey")
    respondent_role: Role
    scores: list[QuestionScore] = Field(min_length=1)
    given_at: datetime


# --- metrics -----------------------------------------------------------------------------------


class AlertKind(StrEnum):
    NO_RECENT_SESSION = "no_recent_session"
    REPEATED_RESCHEDULES = "repeated_reschedules"
    FEEDBACK_DROP = "feedback_drop"


class _AlertEvent(Event):
    TOPIC = topics.ALERTS
    SOURCE = "/mentoring/metrics"
    alert_id: Id
    program_id: Id
    group_id: Id | None = None
    kind: AlertKind


class AlertRaised(_AlertEvent):
    TYPE = "org.mentoring.alert.raised.v1"
    SUMMARY = "A safety net fired: a group stopped meeting, keeps rescheduling, or its feedback dropped."
    severity: Text = Field(description="warning | critical")
    detail: Text = Field(description="generated text, e.g. 'no session for 45 days (cadence 14)'")
    raised_at: datetime


class AlertCleared(_AlertEvent):
    TYPE = "org.mentoring.alert.cleared.v1"
    SUMMARY = "The condition behind an alert is gone."
    cleared_at: datetime


class AlertKindV2(StrEnum):
    """Every safety net of the metrics service; v1's three kinds plus the two v1 could not name."""

    NO_RECENT_SESSION = "no_recent_session"
    REPEATED_RESCHEDULES = "repeated_reschedules"
    FEEDBACK_DROP = "feedback_drop"
    MENTOR_OVER_CAPACITY = "mentor_over_capacity"
    MATCH_RATE_BELOW_TARGET = "match_rate_below_target"


class _AlertEventV2(Event):
    TOPIC = topics.ALERTS
    SOURCE = "/mentoring/metrics"
    alert_id: Id
    program_id: Id
    group_id: Id | None = Field(default=None, description="the relationship, for a relationship's alert")
    mentor_id: Id | None = Field(
        default=None, description="the mentor, for mentor_over_capacity (integration teams route it to HR)"
    )
    kind: AlertKindV2


class AlertRaisedV2(_AlertEventV2):
    TYPE = "org.mentoring.alert.raised.v2"
    SUMMARY = (
        "A safety net fired: a relationship stopped meeting, keeps rescheduling or its feedback dropped, a "
        "mentor is at or above capacity, or a program's match rate is under its target. Raised once per cause."
    )
    severity: Text = Field(description="warning | critical")
    detail: Text = Field(description="generated text, e.g. 'no session for 45 days (cadence 14)'")
    risk_score: float | None = Field(default=None, ge=0, le=100, description="the relationship's risk score")
    raised_at: datetime


class AlertClearedV2(_AlertEventV2):
    TYPE = "org.mentoring.alert.cleared.v2"
    SUMMARY = "The cause of an alert went away (the group met again, the load fell, the match rate recovered)."
    cleared_at: datetime


ALL_EVENTS: tuple[type[Event], ...] = (
    ProgramOpened,
    ProgramUpdated,
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    MatchingCompleted,
    GroupMatched,
    ParticipantUnmatched,
    MatchOverrideRecorded,
    SessionScheduled,
    SessionHeld,
    SessionCancelled,
    GoalSet,
    GoalProgressed,
    RelationshipClosed,
    ExpectationsAgreed,
    FeedbackGiven,
    FeedbackGivenV2,
    AlertRaised,
    AlertCleared,
    AlertRaisedV2,
    AlertClearedV2,
)

EVENTS_BY_TYPE: dict[str, type[Event]] = {e.TYPE: e for e in ALL_EVENTS}
