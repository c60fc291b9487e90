"""Feedback's HTTP API: surveys (admins), due surveys and answers (participants), comments (only with
the ``feedback:read-text`` permission).

Errors have FastAPI's one shape, ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``, naming the
field at fault, for 401, 403 (a role or permission missing, an answer for someone else's group or a
session missed), 404 and 422 alike (``runtime/errors.py``); ``input`` is never echoed, because a rejected
body may carry a comment.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from contracts.base import message
from contracts.events import QuestionScore, SurveyKind
from contracts.policy import Role
from contracts.timestamps import UtcDateTime
from runtime.auth import ApiRole, Principal, require
from runtime.crypto import KeyRing
from runtime.errors import error_responses as _errors
from runtime.service import ServiceContext, context
from services.feedback import handlers
from services.feedback.adapters.repository import AnswerRow
from services.feedback.domain.errors import DomainError
from services.feedback.domain.rules import AnswerIn, Instance
from services.feedback.domain.surveys import Question, Survey, SurveySpec

READ_TEXT = "feedback:read-text"
"""The permission (a JWT claim) to read participants' free-text comments; the admin role is not enough."""

router = APIRouter()
Ctx = Annotated[ServiceContext, Depends(context)]
Admin = Annotated[Principal, Depends(require(ApiRole.ADMIN))]
Staff = Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.INTEGRATION))]
Anyone = Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.INTEGRATION, ApiRole.PARTICIPANT))]
Participant = Annotated[Principal, Depends(require(ApiRole.PARTICIPANT))]


def _now(request: Request) -> datetime:
    """The service's clock (``app.state.clock``), replaceable in tests to move through time."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def _ring(request: Request) -> KeyRing:
    ring: KeyRing = request.app.state.key_ring
    return ring


Now = Annotated[datetime, Depends(_now)]
Ring = Annotated[KeyRing, Depends(_ring)]


# --- surveys -----------------------------------------------------------------------------------


@router.post("/surveys", status_code=201, response_model=Survey, tags=["surveys"], responses=_errors(422))
async def create_survey(spec: SurveySpec, ctx: Ctx, who: Admin, now: Now) -> Survey:
    """Create a survey (version 1). ``kind`` says when it is due; each question's ``measure`` says what
    its score is evidence of, and ``asked_of`` which roles are asked it."""
    return await handlers.create_survey(ctx.pool, spec, by=who.subject, at=now)


@router.get("/surveys", response_model=list[Survey], tags=["surveys"])
async def list_surveys(ctx: Ctx, _: Staff, include_retired: bool = False) -> list[Survey]:
    """The current version of every survey (the defaults included), active ones unless asked."""
    return await handlers.list_surveys(ctx.pool, include_retired=include_retired)


@router.get("/surveys/{survey_id}", response_model=Survey, tags=["surveys"], responses=_errors(404))
async def get_survey(survey_id: str, ctx: Ctx, _: Anyone, version: Annotated[int | None, Query(ge=1)] = None) -> Survey:
    """One version of a survey, the latest by default: the questions an answer's version refers to."""
    return await handlers.get_survey(ctx.pool, survey_id, version)


@router.put("/surveys/{survey_id}", response_model=Survey, tags=["surveys"], responses=_errors(404, 422))
async def edit_survey(survey_id: str, spec: SurveySpec, ctx: Ctx, who: Admin, now: Now) -> Survey:
    """Edit a survey: stores its next version (``active: false`` retires it). Earlier answers keep the
    version they answered; its kind cannot change."""
    return await handlers.edit_survey(ctx.pool, survey_id, spec, by=who.subject, at=now)


# --- due surveys and answers -------------------------------------------------------------------


class DueSurvey(BaseModel):
    """One survey instance the caller has yet to answer; post an answer with these ids."""

    survey_id: str
    survey_version: int
    kind: SurveyKind
    name: str
    program_id: str
    group_id: str
    role: Role
    session_id: str | None
    period: int | None
    opened_at: UtcDateTime
    questions: list[Question]

    @classmethod
    def of(cls, i: Instance) -> DueSurvey:
        s, m = i.survey, i.membership
        return cls(
            survey_id=s.survey_id,
            survey_version=s.version,
            kind=s.kind,
            name=s.name,
            program_id=m.program_id,
            group_id=m.group_id,
            role=m.role,
            session_id=i.session_id,
            period=i.period,
            opened_at=i.opened_at,
            questions=s.questions_for(m.role),
        )


class DueOut(BaseModel):
    items: list[DueSurvey]


@router.get("/me/surveys/due", response_model=DueOut, tags=["answers"])
async def due_surveys(ctx: Ctx, who: Participant, now: Now) -> DueOut:
    """What the caller has yet to answer: a session survey for each session they attended (open 30 days
    after it), the latest check-in of each active group (every 30 days after matching, by default),
    and the program survey of each relationship that closed for good (open 30 days). Oldest first."""
    return DueOut(items=[DueSurvey.of(i) for i in await handlers.due(ctx.pool, who.subject, now)])


class AnswerOut(BaseModel):
    """One of the caller's own answers, with their own comment."""

    feedback_id: uuid.UUID
    revision: int
    survey_id: str
    survey_version: int
    kind: SurveyKind
    program_id: str
    group_id: str
    session_id: str | None
    period: int | None
    respondent_role: Role
    scores: list[QuestionScore]
    comment: str | None
    given_at: UtcDateTime

    @classmethod
    def of(cls, row: AnswerRow, comment: str | None) -> AnswerOut:
        return cls(
            feedback_id=row.feedback_id,
            revision=row.revision,
            survey_id=row.survey_id,
            survey_version=row.survey_version,
            kind=row.kind,
            program_id=row.program_id,
            group_id=row.group_id,
            session_id=row.session_id,
            period=row.period,
            respondent_role=row.respondent_role,
            scores=row.scores,
            comment=comment,
            given_at=row.given_at,
        )


class AnswersOut(BaseModel):
    items: list[AnswerOut]


def _open_comment(ring: KeyRing, row: AnswerRow) -> str | None:
    return ring.open(row.comment, context=handlers.comment_context(row.feedback_id)) if row.comment else None


@router.post(
    "/me/answers",
    status_code=201,
    response_model=AnswerOut,
    tags=["answers"],
    responses={200: {"model": AnswerOut, "description": "an earlier answer replaced"}, **_errors(403, 422)},
)
async def answer(body: AnswerIn, response: Response, ctx: Ctx, who: Participant, ring: Ring, now: Now) -> AnswerOut:
    """Answer a due survey instance for one of the caller's groups: every question asked of the caller's
    role, each once, within its scale; an optional comment (encrypted at rest, never in an event).
    Answering the same instance again replaces the answer (200, same feedback_id, revision + 1).
    Publishes feedback.given (v2) with the scores."""
    given = await handlers.give_answer(ctx.pool, ring, who.subject, body, now)
    if given.replaced:
        response.status_code = status.HTTP_200_OK
    return AnswerOut.of(given.row, body.comment)


@router.get("/me/answers", response_model=AnswersOut, tags=["answers"])
async def my_answers(ctx: Ctx, who: Participant, ring: Ring) -> AnswersOut:
    """The caller's own answers, newest first, with their comments."""
    rows = await handlers.my_answers(ctx.pool, who.subject)
    return AnswersOut(items=[AnswerOut.of(r, _open_comment(ring, r)) for r in rows])


class CommentOut(BaseModel):
    """A comment and the answer it came with; the respondent is not named (feedback_id is not their id)."""

    feedback_id: uuid.UUID
    revision: int
    survey_id: str
    survey_version: int
    kind: SurveyKind
    group_id: str
    session_id: str | None
    respondent_role: Role
    scores: list[QuestionScore]
    comment: str
    given_at: UtcDateTime


class CommentsOut(BaseModel):
    items: list[CommentOut]


@router.get("/programs/{program_id}/comments", response_model=CommentsOut, tags=["comments"])
async def program_comments(
    program_id: str, ctx: Ctx, who: Admin, ring: Ring, limit: Annotated[int, Query(ge=1, le=5000)] = 500
) -> CommentsOut:
    """The latest comments of a program, newest first. Needs the admin role AND the
    ``feedback:read-text`` permission in the token: a plain admin gets 403."""
    if not who.can(READ_TEXT):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"needs permission: {READ_TEXT}")
    rows = await handlers.program_comments(ctx.pool, program_id, limit)
    return CommentsOut(
        items=[
            CommentOut(
                feedback_id=r.feedback_id,
                revision=r.revision,
                survey_id=r.survey_id,
                survey_version=r.survey_version,
                kind=r.kind,
                group_id=r.group_id,
                session_id=r.session_id,
                respondent_role=r.respondent_role,
                scores=r.scores,
                comment=_open_comment(ring, r) or "",
                given_at=r.given_at,
            )
            for r in rows
        ]
    )


# --- errors ------------------------------------------------------------------------------------


def _item(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors and validation errors become the one error shape, naming the field; a rejected
    value is never echoed (pydantic's ``input`` and ``ctx`` are dropped), since it may be a comment.
    A request's own validation is shaped by ``runtime.errors``, as in every service."""

    async def domain_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return JSONResponse({"detail": [_item(exc.loc, exc.message, exc.kind)]}, status_code=exc.status)

    async def model_invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ValidationError)
        errors = exc.errors(include_url=False, include_input=False)
        return JSONResponse({"detail": [_item(["body", *e["loc"]], message(e), e["type"]) for e in errors]}, 422)

    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(ValidationError, model_invalid)
