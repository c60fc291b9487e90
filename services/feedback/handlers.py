"""Feedback's use cases and event handlers: load, decide (domain), save state and its events in one
transaction.

Event handlers project what matching, sessions and enrollment announce (groups and members, sessions
held and who attended, closures, who left a program) and run inside the runtime consumer's transaction,
whose tracking record makes a redelivery a no-op; each is also an upsert, so applying one twice changes
nothing either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from contracts.envelope import Envelope
from contracts.events import (
    ClosureReason,
    Event,
    FeedbackGivenV2,
    GroupMatched,
    ParticipantWithdrawn,
    RelationshipClosed,
    SessionHeld,
    SurveyKind,
)
from runtime.crypto import KeyRing
from runtime.outbox import add_to_outbox
from runtime.tracking import Handler
from services.feedback.adapters import repository as repo
from services.feedback.adapters.repository import AnswerRow
from services.feedback.domain.errors import DomainError, NotFound
from services.feedback.domain.rules import SURVEY_OPEN_DAYS, AnswerIn, Instance, due_instances, instance_for, scores
from services.feedback.domain.surveys import Survey, SurveySpec, next_version

# --- events ------------------------------------------------------------------------------------


async def on_group_matched(conn: asyncpg.Connection, env: Envelope) -> None:
    event = env.data
    assert isinstance(event, GroupMatched)
    await repo.save_group(conn, event)


async def on_session_held(conn: asyncpg.Connection, env: Envelope) -> None:
    event = env.data
    assert isinstance(event, SessionHeld)
    await repo.save_session(conn, event)


async def on_relationship_closed(conn: asyncpg.Connection, env: Envelope) -> None:
    """A renewal goes on with the same group (check-ins continue); any other reason ends it for good."""
    event = env.data
    assert isinstance(event, RelationshipClosed)
    if event.reason is not ClosureReason.RENEWED:
        await repo.save_closure(conn, event)


async def on_participant_withdrawn(conn: asyncpg.Connection, env: Envelope) -> None:
    """Their part in the program's groups ends: no more check-ins, and the program survey is due."""
    event = env.data
    assert isinstance(event, ParticipantWithdrawn)
    await repo.save_withdrawal(conn, event)


HANDLERS: dict[type[Event], Handler] = {
    GroupMatched: on_group_matched,
    ParticipantWithdrawn: on_participant_withdrawn,
    SessionHeld: on_session_held,
    RelationshipClosed: on_relationship_closed,
}


# --- surveys -----------------------------------------------------------------------------------


async def create_survey(pool: asyncpg.Pool, spec: SurveySpec, *, by: str, at: datetime) -> Survey:
    survey = Survey(
        **spec.model_dump(), survey_id=f"srv-{uuid.uuid4().hex[:12]}", version=1, created_at=at, created_by=by
    )
    async with pool.acquire() as conn:
        await repo.insert_survey(conn, survey)
    return survey


async def edit_survey(pool: asyncpg.Pool, survey_id: str, spec: SurveySpec, *, by: str, at: datetime) -> Survey:
    """A new version; answers given to earlier versions keep naming theirs."""
    async with pool.acquire() as conn, conn.transaction():
        await repo.lock_survey(conn, survey_id)
        current = await repo.get_survey(conn, survey_id)
        if current is None:
            raise NotFound(f"no survey {survey_id}", "survey_id", "path")
        edited = next_version(current, spec, by=by, at=at)
        await repo.insert_survey(conn, edited)
    return edited


async def list_surveys(pool: asyncpg.Pool, *, include_retired: bool) -> list[Survey]:
    async with pool.acquire() as conn:
        return await repo.current_surveys(conn, active_only=not include_retired)


async def get_survey(pool: asyncpg.Pool, survey_id: str, version: int | None) -> Survey:
    async with pool.acquire() as conn:
        survey = await repo.get_survey(conn, survey_id, version)
    if survey is None:
        raise NotFound(f"no survey {survey_id}" + (f" version {version}" if version else ""), "survey_id", "path")
    return survey


# --- due surveys and answers -------------------------------------------------------------------


async def due(pool: asyncpg.Pool, respondent: str, now: datetime) -> list[Instance]:
    async with pool.acquire() as conn:
        surveys = await repo.current_surveys(conn, active_only=True)
        memberships = await repo.memberships(conn, respondent)
        attended = await repo.attended_since(conn, respondent, now - timedelta(days=SURVEY_OPEN_DAYS))
        answered = await repo.answered_keys(conn, respondent)
    return due_instances(surveys, memberships, attended, answered, now)


async def _answered_survey(conn: asyncpg.Connection, answer: AnswerIn) -> Survey:
    """The version answered, if the survey is still in use (its latest version active)."""
    latest = await repo.get_survey(conn, answer.survey_id)
    if latest is None:
        raise DomainError(f"no survey {answer.survey_id}", "survey_id")
    if not latest.active:
        raise DomainError(f"survey {answer.survey_id} is retired", "survey_id")
    if latest.version == answer.survey_version:
        return latest
    survey = await repo.get_survey(conn, answer.survey_id, answer.survey_version)
    if survey is None:
        raise DomainError(f"survey {answer.survey_id} has no version {answer.survey_version}", "survey_version")
    return survey


@dataclass(frozen=True)
class Given:
    row: AnswerRow
    replaced: bool


async def give_answer(pool: asyncpg.Pool, ring: KeyRing, respondent: str, answer: AnswerIn, now: datetime) -> Given:
    """Store the answer (replacing the respondent's earlier one to the same instance) and its
    feedback.given event, in one transaction; nothing is stored when any rule refuses it."""
    async with pool.acquire() as conn, conn.transaction():
        survey = await _answered_survey(conn, answer)
        membership = await repo.membership(conn, answer.group_id, respondent)
        session = await repo.held_session(conn, answer.session_id) if answer.session_id else None
        instance = instance_for(survey, answer, membership, session, respondent, now)
        role = instance.membership.role
        scored = scores(survey, role, answer.answers)
        await repo.lock_instance(conn, survey.survey_id, instance.key, respondent)
        earlier = await repo.find_answer(conn, survey.survey_id, instance.key, respondent)
        feedback_id = earlier.feedback_id if earlier else uuid.uuid4()
        comment = ring.seal(answer.comment, context=comment_context(feedback_id)) if answer.comment else None
        row = AnswerRow(
            feedback_id=feedback_id,
            survey_id=survey.survey_id,
            instance_key=instance.key,
            respondent_id=respondent,
            survey_version=survey.version,
            kind=survey.kind,
            program_id=instance.membership.program_id,
            group_id=instance.membership.group_id,
            session_id=instance.session_id,
            period=instance.period,
            respondent_role=role,
            scores=scored,
            comment=comment,
            revision=earlier.revision + 1 if earlier else 1,
            given_at=now,
        )
        await repo.save_answer(conn, row)
        await add_to_outbox(conn, Envelope(data=feedback_given(row)))
    return Given(row, replaced=earlier is not None)


def comment_context(feedback_id: uuid.UUID) -> str:
    """Binds a comment's ciphertext to its answer: copied into another row, it does not open."""
    return f"feedback-comment:{feedback_id}"


def feedback_given(row: AnswerRow) -> FeedbackGivenV2:
    """The event of an answer: scores and ids, never the comment, never the respondent's id."""
    return FeedbackGivenV2(
        program_id=row.program_id,
        group_id=row.group_id,
        feedback_id=str(row.feedback_id),
        revision=row.revision,
        survey_id=row.survey_id,
        survey_version=row.survey_version,
        survey_kind=SurveyKind(row.kind),
        session_id=row.session_id,
        respondent_role=row.respondent_role,
        scores=row.scores,
        given_at=row.given_at,
    )


async def my_answers(pool: asyncpg.Pool, respondent: str) -> list[AnswerRow]:
    async with pool.acquire() as conn:
        return await repo.answers_of(conn, respondent)


async def program_comments(pool: asyncpg.Pool, program_id: str, limit: int) -> list[AnswerRow]:
    async with pool.acquire() as conn:
        return await repo.comments_of_program(conn, program_id, limit=limit)


async def reencrypt(pool: asyncpg.Pool, ring: KeyRing, batch: int = 500) -> int:
    """Moves every comment to the current key, a batch per transaction; returns how many moved.

    Rows are locked with SKIP LOCKED, so two runs at once share the work instead of waiting.
    """
    moved = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await repo.comments_to_reseal(conn, ring.current, batch)
            for row in rows:
                assert row.comment is not None
                resealed = ring.reseal(row.comment, context=comment_context(row.feedback_id))
                if resealed is not None:
                    await repo.set_comment(conn, row.feedback_id, resealed)
        moved += len(rows)
        if len(rows) < batch:
            return moved
