"""What the sessions API answers. A text field is ``None`` for a reader not entitled to it (staff,
integrations, a guest for group texts), so one model serves every reader and the rule lives in one place:
the handler that fills it. Instants are RFC 3339 in UTC with a ``Z`` (``contracts/timestamps.py``)."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from contracts.events import ClosureReason, GoalCategory, MeetingFormat
from contracts.policy import Form, Role
from contracts.timestamps import UtcDateTime
from services.sessions.domain.model import NoteKind, RelationshipStatus, SessionStatus


class MemberOut(BaseModel):
    participant_id: str
    role: Role
    active: bool = Field(description="false once their part ended (a withdrawal)")


class RelationshipOut(BaseModel):
    group_id: str
    program_id: str
    form: Form
    term: int = Field(description="1 for the first term, +1 per renewal")
    status: RelationshipStatus
    outcome: ClosureReason | None
    started_on: date
    cadence_days: int = Field(description="the program's cadence, or the one the group agreed")
    my_role: Role | None = Field(default=None, description="the caller's role, for a member")
    members: list[MemberOut] = Field(description="for a member: the other members; for staff: everyone")


class RelationshipPage(BaseModel):
    items: list[RelationshipOut]
    next_after: str | None = Field(description="pass as ``after`` for the next page; null on the last")


class ExpectationsOut(BaseModel):
    group_id: str
    agreed: bool = Field(description="false until the group first sets them (the program's cadence applies)")
    cadence_days: int
    format: MeetingFormat | None
    agenda_template: str | None
    boundaries: str | None
    updated_by: str | None
    updated_at: UtcDateTime | None


class SessionOut(BaseModel):
    session_id: str
    group_id: str
    term: int
    status: SessionStatus
    scheduled_for: UtcDateTime
    duration_minutes: int
    topic: str | None = Field(description="members and the guest only")
    guest_id: str | None
    held_at: UtcDateTime | None
    attendees: list[str]
    reschedules: int
    reason: str | None = Field(description="the last cancellation or move reason: members only")


class StepOut(BaseModel):
    position: int
    wording: str | None = Field(description="members only")
    done: bool


class GoalOut(BaseModel):
    goal_id: str
    group_id: str
    participant_id: str
    category: GoalCategory
    wording: str | None = Field(description="members only")
    steps: list[StepOut]
    steps_done: int
    steps_total: int
    set_at: UtcDateTime


class NoteOut(BaseModel):
    note_id: str
    session_id: str
    author_id: str
    kind: NoteKind
    text: str
    shared: bool
    done: bool
    created_at: UtcDateTime
