"""Surveys are data: questions with a scale and what each measures, versioned, edited by admins.

Editing a survey creates its next version; answers name the version they answered, so a score is
always read against the questions and scale that were asked. ``measure`` tells the metrics service
what a question is evidence of (``mentor_helps``, ``would_recommend``...), whatever its wording.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from contracts.base import Id, Text
from contracts.events import Measure, SurveyKind
from contracts.policy import Role
from contracts.timestamps import UtcDateTime
from services.feedback.domain.errors import DomainError

DEFAULT_CHECKIN_EVERY_DAYS = 30
"""The default check-in comes round monthly: the cadence the guides give as typical for a relationship."""

QuestionId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class _Strict(BaseModel):
    """Admin input: unknown fields are refused (a typo must not silently drop a setting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Question(_Strict):
    question_id: QuestionId = Field(description="unique within the survey, e.g. 'rating'")
    text: Text = Field(min_length=1, max_length=300)
    measure: Measure
    scale_min: int = Field(ge=0, le=10)
    scale_max: int = Field(ge=1, le=10)
    asked_of: list[Role] = Field(
        default_factory=lambda: list(Role), min_length=1, description="the roles this question is asked of"
    )

    @model_validator(mode="after")
    def _scale_runs_upwards(self) -> Question:
        if self.scale_min >= self.scale_max:
            raise ValueError("scale_min must be below scale_max")
        return self


class SurveySpec(_Strict):
    """What an administrator writes to create a survey or its next version."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "Workshop follow-up",
                    "kind": "session",
                    "questions": [
                        {
                            "question_id": "useful",
                            "text": "How useful was this workshop?",
                            "measure": "session_rating",
                            "scale_min": 1,
                            "scale_max": 5,
                        }
                    ],
                }
            ]
        },
    )

    name: Text = Field(min_length=1, max_length=200)
    kind: SurveyKind = Field(
        description="session: after each session attended; checkin: every `every_days` per active group; "
        "program: once when a relationship closes"
    )
    questions: list[Question] = Field(min_length=1, max_length=30)
    every_days: int | None = Field(
        default=None,
        ge=1,
        le=366,
        description=f"check-ins only: days between two (default {DEFAULT_CHECKIN_EVERY_DAYS})",
    )
    active: bool = Field(default=True, description="false retires the survey: it is no longer due")

    @model_validator(mode="after")
    def _consistent(self) -> SurveySpec:
        ids = [q.question_id for q in self.questions]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"question ids must be unique, repeated: {', '.join(duplicates)}")
        if self.kind is not SurveyKind.CHECKIN and self.every_days is not None:
            raise ValueError("every_days applies to check-in surveys only")
        if self.kind is SurveyKind.CHECKIN and self.every_days is None:
            object.__setattr__(self, "every_days", DEFAULT_CHECKIN_EVERY_DAYS)
        return self


class Survey(SurveySpec):
    """One version of a survey, as stored."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "survey_id": "default-program",
                    "version": 1,
                    "name": "At the end of the relationship",
                    "kind": "program",
                    "questions": [
                        {
                            "question_id": "recommend",
                            "text": "Would you recommend the program to a colleague?",
                            "measure": "would_recommend",
                            "scale_min": 0,
                            "scale_max": 10,
                            "asked_of": ["mentor", "mentee", "peer"],
                        }
                    ],
                    "every_days": None,
                    "active": True,
                    "created_at": "2026-03-01T09:00:00Z",
                    "created_by": "defaults",
                }
            ]
        },
    )

    survey_id: Id
    version: int = Field(ge=1)
    created_at: UtcDateTime
    created_by: str

    def questions_for(self, role: Role) -> list[Question]:
        return [q for q in self.questions if role in q.asked_of]

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.question_id == question_id), None)


def next_version(current: Survey, spec: SurveySpec, *, by: str, at: datetime) -> Survey:
    """The edited survey as its next version; its kind is what it is due for, so it never changes."""
    if spec.kind is not current.kind:
        raise DomainError(f"a survey's kind cannot change (it is {current.kind.value})", "kind")
    return Survey(
        **spec.model_dump(), survey_id=current.survey_id, version=current.version + 1, created_at=at, created_by=by
    )
