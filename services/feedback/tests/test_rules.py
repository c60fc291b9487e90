"""The survey rules alone: when an instance is due, who may answer it, what an answer must hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from contracts.events import Measure, SurveyKind
from contracts.policy import Role
from services.feedback.domain.errors import DomainError, Forbidden
from services.feedback.domain.rules import (
    AnswerIn,
    HeldSession,
    Membership,
    ScoreIn,
    checkin_period,
    due_instances,
    instance_for,
    scores,
)
from services.feedback.domain.surveys import DEFAULT_CHECKIN_EVERY_DAYS, Question, Survey, SurveySpec, next_version

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def survey(kind: SurveyKind, *questions: Question, every_days: int | None = None, sid: str = "") -> Survey:
    return Survey(
        survey_id=sid or f"s-{kind.value}",
        version=1,
        kind=kind,
        name=kind.value,
        questions=list(questions),
        every_days=every_days,
        created_at=T0,
        created_by="test",
    )


RATING = Question(question_id="rating", text="Useful?", measure=Measure.SESSION_RATING, scale_min=1, scale_max=5)
HELPS = Question(
    question_id="helps", text="Helps?", measure=Measure.MENTOR_HELPS, scale_min=1, scale_max=5, asked_of=[Role.MENTEE]
)
ENGAGED = Question(
    question_id="engaged", text="Engaged?", measure=Measure.MENTEE_ENGAGED, scale_min=1, scale_max=5,
    asked_of=[Role.MENTOR],
)  # fmt: skip
FIT = Question(question_id="fit", text="Fit?", measure=Measure.PAIRING_FIT, scale_min=1, scale_max=5)
RECOMMEND = Question(
    question_id="recommend", text="Recommend?", measure=Measure.WOULD_RECOMMEND, scale_min=0, scale_max=10
)

SESSION = survey(SurveyKind.SESSION, RATING)
CHECKIN = survey(SurveyKind.CHECKIN, HELPS, ENGAGED, FIT, every_days=30)
PROGRAM = survey(SurveyKind.PROGRAM, RECOMMEND)
ALL = [SESSION, CHECKIN, PROGRAM]

MENTEE_IN_G1 = Membership("g1", "p1", Role.MENTEE, matched_at=T0)


def test_a_check_in_comes_round_every_n_days_from_matching() -> None:
    assert checkin_period(T0, 30, T0 - timedelta(days=1)) == 0
    assert checkin_period(T0, 30, T0 + timedelta(days=29, hours=23)) == 0
    assert checkin_period(T0, 30, T0 + timedelta(days=30)) == 1
    assert checkin_period(T0, 30, T0 + timedelta(days=95)) == 3


def test_the_default_check_in_interval_applies_when_none_is_given() -> None:
    spec = SurveySpec(name="c", kind=SurveyKind.CHECKIN, questions=[FIT])
    assert spec.every_days == DEFAULT_CHECKIN_EVERY_DAYS == 30


def test_nothing_is_due_right_after_matching() -> None:
    assert due_instances(ALL, [MENTEE_IN_G1], [], set(), T0 + timedelta(days=1)) == []


def test_due_lists_attended_sessions_the_latest_check_in_and_the_closure_survey_oldest_first() -> None:
    closed = Membership("g2", "p1", Role.MENTOR, matched_at=T0, closed_at=T0 + timedelta(days=40))
    held = HeldSession("s1", "g1", T0 + timedelta(days=50), frozenset({"me"}))
    now = T0 + timedelta(days=65)
    due = due_instances(ALL, [MENTEE_IN_G1, closed], [held], set(), now)
    assert [(i.survey.kind, i.membership.group_id, i.session_id, i.period) for i in due] == [
        (SurveyKind.PROGRAM, "g2", None, None),
        (SurveyKind.SESSION, "g1", "s1", None),
        (SurveyKind.CHECKIN, "g1", None, 2),
    ]
    assert [i.key for i in due] == ["program:g2", "session:s1", "checkin:g1:2"]


def test_answered_instances_retired_surveys_and_surveys_with_nothing_for_the_role_are_not_due() -> None:
    now = T0 + timedelta(days=31)
    assert due_instances([CHECKIN], [MENTEE_IN_G1], [], {("s-checkin", "checkin:g1:1")}, now) == []
    retired = CHECKIN.model_copy(update={"active": False})
    assert due_instances([retired], [MENTEE_IN_G1], [], set(), now) == []
    mentors_only = survey(SurveyKind.CHECKIN, ENGAGED, every_days=30)
    assert due_instances([mentors_only], [MENTEE_IN_G1], [], set(), now) == []


def test_session_and_program_surveys_close_after_thirty_days_and_closed_groups_get_no_check_ins() -> None:
    closed = Membership("g1", "p1", Role.MENTEE, matched_at=T0, closed_at=T0 + timedelta(days=31))
    held = HeldSession("s1", "g1", T0 + timedelta(days=1), frozenset({"me"}))
    later = T0 + timedelta(days=62)
    assert due_instances(ALL, [closed], [held], set(), later) == []


def answer(**fields: object) -> AnswerIn:
    base: dict[str, object] = {
        "survey_id": "s",
        "survey_version": 1,
        "group_id": "g1",
        "answers": [ScoreIn(question_id="rating", score=4)],
    }
    return AnswerIn.model_validate({**base, **fields})


def test_only_members_answer_and_only_for_sessions_they_attended() -> None:
    held = HeldSession("s1", "g1", T0, frozenset({"me"}))
    now = T0 + timedelta(hours=2)
    with pytest.raises(Forbidden) as exc:
        instance_for(SESSION, answer(session_id="s1"), None, held, "me", now)
    assert exc.value.loc == ["body", "group_id"]
    with pytest.raises(Forbidden) as exc:
        instance_for(SESSION, answer(session_id="s1"), MENTEE_IN_G1, held, "someone-else", now)
    assert exc.value.loc == ["body", "session_id"]
    other_group = HeldSession("s1", "g9", T0, frozenset({"me"}))
    with pytest.raises(DomainError) as refused:
        instance_for(SESSION, answer(session_id="s1"), MENTEE_IN_G1, other_group, "me", now)
    assert refused.value.loc == ["body", "session_id"] and refused.value.status == 422
    instance = instance_for(SESSION, answer(session_id="s1"), MENTEE_IN_G1, held, "me", now)
    assert instance.key == "session:s1"


@pytest.mark.parametrize(
    ("survey_", "fields", "now_days", "field"),
    [
        (SESSION, {}, 0, "session_id"),
        (SESSION, {"session_id": "s1", "period": 1}, 0, "period"),
        (CHECKIN, {}, 31, "period"),
        (CHECKIN, {"period": 2}, 31, "period"),
        (CHECKIN, {"period": 1, "session_id": "s1"}, 31, "session_id"),
        (PROGRAM, {}, 31, "group_id"),
    ],
)
def test_an_answer_naming_the_wrong_occasion_is_refused_naming_the_field(
    survey_: Survey, fields: dict[str, object], now_days: int, field: str
) -> None:
    held = HeldSession("s1", "g1", T0, frozenset({"me"}))
    with pytest.raises(DomainError) as exc:
        instance_for(survey_, answer(**fields), MENTEE_IN_G1, held, "me", T0 + timedelta(days=now_days, hours=1))
    assert exc.value.loc == ["body", field] and exc.value.status == 422


def test_check_ins_are_answerable_for_any_period_come_round_while_the_group_is_active() -> None:
    now = T0 + timedelta(days=65)
    assert instance_for(CHECKIN, answer(period=1), MENTEE_IN_G1, None, "me", now).key == "checkin:g1:1"
    closed = Membership("g1", "p1", Role.MENTEE, matched_at=T0, closed_at=T0 + timedelta(days=64))
    with pytest.raises(DomainError, match="check-ins are over"):
        instance_for(CHECKIN, answer(period=1), closed, None, "me", now)
    assert instance_for(PROGRAM, answer(), closed, None, "me", now).key == "program:g1"


def test_scores_cover_the_questions_of_the_role_once_each_within_the_scale() -> None:
    got = scores(CHECKIN, Role.MENTEE, [ScoreIn(question_id="helps", score=5), ScoreIn(question_id="fit", score=1)])
    assert [(s.question_id, s.measure, s.score, s.scale_min, s.scale_max) for s in got] == [
        ("helps", Measure.MENTOR_HELPS, 5, 1, 5),
        ("fit", Measure.PAIRING_FIT, 1, 1, 5),
    ]
    assert scores(PROGRAM, Role.PEER, [ScoreIn(question_id="recommend", score=0)])[0].score == 0


@pytest.mark.parametrize(
    ("items", "loc", "msg"),
    [
        ([("helps", 6), ("fit", 3)], ["body", "answers", 0, "score"], "between 1 and 5"),
        ([("helps", 0), ("fit", 3)], ["body", "answers", 0, "score"], "between 1 and 5"),
        ([("helps", 3), ("nope", 3)], ["body", "answers", 1, "question_id"], "no question nope"),
        ([("helps", 3), ("engaged", 3)], ["body", "answers", 1, "question_id"], "not asked of mentees"),
        ([("helps", 3), ("helps", 3)], ["body", "answers", 1, "question_id"], "answered twice"),
        ([("helps", 3)], ["body", "answers"], "unanswered question(s): fit"),
    ],
)
def test_bad_scores_are_refused_naming_the_field(items: list[tuple[str, int]], loc: list[object], msg: str) -> None:
    with pytest.raises(DomainError) as exc:
        scores(CHECKIN, Role.MENTEE, [ScoreIn(question_id=q, score=s) for q, s in items])
    assert exc.value.loc == loc and msg in exc.value.message


def test_survey_specs_are_checked_and_editing_keeps_the_kind() -> None:
    with pytest.raises(ValidationError, match="unique"):
        SurveySpec(name="x", kind=SurveyKind.SESSION, questions=[RATING, RATING])
    with pytest.raises(ValidationError, match="check-in surveys only"):
        SurveySpec(name="x", kind=SurveyKind.SESSION, questions=[RATING], every_days=7)
    with pytest.raises(ValidationError, match="scale_min must be below scale_max"):
        Question(question_id="q", text="t", measure=Measure.OTHER, scale_min=5, scale_max=5)
    edited = next_version(SESSION, SurveySpec(name="New", kind=SurveyKind.SESSION, questions=[RATING]), by="a", at=T0)
    assert (edited.survey_id, edited.version, edited.name) == (SESSION.survey_id, 2, "New")
    with pytest.raises(DomainError) as exc:
        next_version(SESSION, SurveySpec(name="x", kind=SurveyKind.PROGRAM, questions=[RECOMMEND]), by="a", at=T0)
    assert exc.value.loc == ["body", "kind"]
