"""When a survey is due, who may answer it, and what an answer must hold: pure rules, no I/O.

A *survey instance* is one occasion to answer one survey, for one group:
- ``session``: a session the respondent attended, for ``SURVEY_OPEN_DAYS`` after it was held;
- ``checkin``: the n-th check-in of an active group, due ``n * every_days`` after the group was matched
  (n >= 1); the latest one is listed as due, and each stays answerable while the group is active;
- ``program``: once, when the relationship closes for good (a renewal goes on and asks nothing) or
  the respondent leaves the program, for ``SURVEY_OPEN_DAYS`` after that.

Each respondent answers an instance once: a second answer replaces the first (same feedback id,
revision + 1), so it is never counted twice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import Id, Text
from contracts.events import QuestionScore, SurveyKind
from contracts.policy import Role
from services.feedback.domain.errors import DomainError, Forbidden
from services.feedback.domain.surveys import Question, Survey

SURVEY_OPEN_DAYS = 30
"""How long a session or program survey stays open after its session or closure."""

COMMENT_MAX_CHARS = 4000


@dataclass(frozen=True)
class Membership:
    """The respondent's place in one group, as learnt from group.matched and relationship.closed."""

    group_id: str
    program_id: str
    role: Role
    matched_at: datetime
    closed_at: datetime | None = None
    """When the respondent's part ended: the relationship closed for good, or they left the program;
    None while it goes on (a renewal does not end it)."""

    @property
    def active(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True)
class HeldSession:
    session_id: str
    group_id: str
    held_at: datetime
    attendees: frozenset[str]


@dataclass(frozen=True)
class Instance:
    survey: Survey
    membership: Membership
    opened_at: datetime
    session_id: str | None = None
    period: int | None = None

    @property
    def key(self) -> str:
        """Names the occasion, whichever version of the survey answers it."""
        kind = self.survey.kind
        if kind is SurveyKind.SESSION:
            return f"session:{self.session_id}"
        if kind is SurveyKind.CHECKIN:
            return f"checkin:{self.membership.group_id}:{self.period}"
        return f"program:{self.membership.group_id}"


def checkin_period(matched_at: datetime, every_days: int, now: datetime) -> int:
    """How many check-ins have come round since the group was matched (0 = none yet)."""
    if now < matched_at:
        return 0
    return (now - matched_at) // timedelta(days=every_days)


def _open(since: datetime, now: datetime) -> bool:
    return since <= now < since + timedelta(days=SURVEY_OPEN_DAYS)


def _instances(
    survey: Survey, memberships: Sequence[Membership], sessions: Sequence[HeldSession], now: datetime
) -> Iterable[Instance]:
    by_group = {m.group_id: m for m in memberships}
    if survey.kind is SurveyKind.SESSION:
        for s in sessions:
            member = by_group.get(s.group_id)
            if member is not None and _open(s.held_at, now):
                yield Instance(survey, member, s.held_at, session_id=s.session_id)
    elif survey.kind is SurveyKind.CHECKIN:
        assert survey.every_days is not None
        for m in memberships:
            period = checkin_period(m.matched_at, survey.every_days, now)
            if m.active and period >= 1:
                yield Instance(survey, m, m.matched_at + timedelta(days=period * survey.every_days), period=period)
    else:
        for m in memberships:
            if m.closed_at is not None and _open(m.closed_at, now):
                yield Instance(survey, m, m.closed_at)


def due_instances(
    surveys: Sequence[Survey],
    memberships: Sequence[Membership],
    attended: Sequence[HeldSession],
    answered: Collection[tuple[str, str]],
    now: datetime,
) -> list[Instance]:
    """The instances the respondent has yet to answer, oldest first.

    ``surveys`` are the current versions of the active surveys; ``attended`` the sessions the
    respondent attended; ``answered`` the (survey id, instance key) pairs already answered. A survey
    with no question for the respondent's role in that group is not due for them.
    """
    due = [
        instance
        for survey in surveys
        if survey.active
        for instance in _instances(survey, memberships, attended, now)
        if (survey.survey_id, instance.key) not in answered and survey.questions_for(instance.membership.role)
    ]
    return sorted(due, key=lambda i: (i.opened_at, i.survey.survey_id, i.key))


class ScoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    question_id: Id = Field(max_length=64)
    score: int


class AnswerIn(BaseModel):
    """One respondent's answer to one survey instance; a later one for the same instance replaces it."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "survey_id": "default-checkin",
                    "survey_version": 1,
                    "group_id": "grp-7f3a9c",
                    "period": 2,
                    "answers": [
                        {"question_id": "mentor-helps", "score": 4},
                        {"question_id": "pairing-fit", "score": 5},
                    ],
                    "comment": "We should meet more often before my presentation.",
                }
            ]
        },
    )
    survey_id: Id
    survey_version: int = Field(ge=1, description="the version whose questions were answered")
    group_id: Id
    session_id: Id | None = Field(default=None, description="session surveys: the session attended")
    period: int | None = Field(default=None, ge=1, description="check-ins: which one (as listed as due)")
    answers: list[ScoreIn] = Field(min_length=1, max_length=30)
    comment: Text | None = Field(
        default=None,
        max_length=COMMENT_MAX_CHARS,
        description="free text, encrypted at rest; readable by its author and by holders of feedback:read-text",
    )


def _refuse(value: object, name: str, kind: SurveyKind) -> None:
    if value is not None:
        raise DomainError(f"{name} is not asked for {kind.value} surveys", name)


def instance_for(
    survey: Survey,
    answer: AnswerIn,
    membership: Membership | None,
    session: HeldSession | None,
    respondent: str,
    now: datetime,
) -> Instance:
    """The instance an answer is for, if the respondent may answer it now; raises naming the field."""
    if membership is None:
        raise Forbidden(f"you are not a member of group {answer.group_id}", "group_id")
    kind = survey.kind
    if kind is SurveyKind.SESSION:
        _refuse(answer.period, "period", kind)
        if answer.session_id is None:
            raise DomainError("session_id is required for a session survey", "session_id")
        if session is None or session.group_id != answer.group_id:
            raise DomainError(f"group {answer.group_id} held no session {answer.session_id}", "session_id")
        if respondent not in session.attendees:
            raise Forbidden(f"you did not attend session {answer.session_id}", "session_id")
        if not _open(session.held_at, now):
            raise DomainError(f"the survey of session {answer.session_id} is not open now", "session_id")
        return Instance(survey, membership, session.held_at, session_id=session.session_id)
    _refuse(answer.session_id, "session_id", kind)
    if kind is SurveyKind.CHECKIN:
        assert survey.every_days is not None
        if answer.period is None:
            raise DomainError("period is required for a check-in", "period")
        if not membership.active:
            raise DomainError(f"group {answer.group_id} has closed: check-ins are over", "group_id")
        current = checkin_period(membership.matched_at, survey.every_days, now)
        if answer.period > current:
            raise DomainError(f"check-in {answer.period} is not due yet (the latest is {current})", "period")
        opened = membership.matched_at + timedelta(days=answer.period * survey.every_days)
        return Instance(survey, membership, opened, period=answer.period)
    _refuse(answer.period, "period", kind)
    if membership.closed_at is None:
        raise DomainError(f"the program survey opens when group {answer.group_id} closes", "group_id")
    if not _open(membership.closed_at, now):
        raise DomainError(f"the program survey of group {answer.group_id} is not open now", "group_id")
    return Instance(survey, membership, membership.closed_at)


def _score(question: Question, score: int, at: str) -> QuestionScore:
    if not question.scale_min <= score <= question.scale_max:
        raise DomainError(f"score must be between {question.scale_min} and {question.scale_max}", f"{at}.score")
    return QuestionScore(
        question_id=question.question_id,
        measure=question.measure,
        score=score,
        scale_min=question.scale_min,
        scale_max=question.scale_max,
    )


def scores(survey: Survey, role: Role, answers: Sequence[ScoreIn]) -> list[QuestionScore]:
    """Every question asked of ``role`` answered once, within its scale; raises naming the field."""
    asked = {q.question_id: q for q in survey.questions_for(role)}
    out: list[QuestionScore] = []
    seen: set[str] = set()
    for i, item in enumerate(answers):
        at = f"answers.{i}"
        question = survey.question(item.question_id)
        if question is None:
            raise DomainError(
                f"survey {survey.survey_id} v{survey.version} has no question {item.question_id}", f"{at}.question_id"
            )
        if item.question_id not in asked:
            raise DomainError(f"question {item.question_id} is not asked of {role.value}s", f"{at}.question_id")
        if item.question_id in seen:
            raise DomainError(f"question {item.question_id} is answered twice", f"{at}.question_id")
        seen.add(item.question_id)
        out.append(_score(question, item.score, at))
    missing = [q for q in asked if q not in seen]
    if missing:
        raise DomainError(f"unanswered question(s): {', '.join(missing)}", "answers")
    return out
