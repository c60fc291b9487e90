"""What participants and admins ask of the sessions service: request bodies, validated at the edge.

Free texts (agenda, boundaries, topic, goal and step wording, notes, reasons) are bounded in length and
stripped; they are sealed before they are stored and never copied into an event, a log line or an error.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contracts.base import TEXT, Id
from contracts.events import ClosureReason, GoalCategory, MeetingFormat
from contracts.timestamps import InstantIn
from services.sessions.domain.model import NoteKind

TopicText = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True, pattern=TEXT)]
StepText = Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True, pattern=TEXT)]
GoalText = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True, pattern=TEXT)]
ReasonText = Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True, pattern=TEXT)]
GroupText = Annotated[str, StringConstraints(min_length=1, max_length=4000, strip_whitespace=True, pattern=TEXT)]
NoteText = Annotated[str, StringConstraints(min_length=1, max_length=10_000, strip_whitespace=True, pattern=TEXT)]


class Command(BaseModel):
    """Closed: an unknown field is a typo to report, not something to drop silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ExpectationsIn(Command):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "cadence_days": 14,
                    "format": "video",
                    "agenda_template": "wins, blockers, next steps",
                    "boundaries": "no performance reviews",
                }
            ]
        }
    )

    cadence_days: int | None = Field(
        default=None, ge=1, le=366, description="days between sessions; the program's cadence when not given"
    )
    format: MeetingFormat
    agenda_template: GroupText | None = Field(default=None, description="the group's agenda format (confidential)")
    boundaries: GroupText | None = Field(default=None, description="what the group agreed to keep out (confidential)")


class ScheduleIn(Command):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "scheduled_for": "2026-05-04T10:00:00Z",
                    "duration_minutes": 60,
                    "topic": "negotiation",
                    "guest_id": "E000777",
                }
            ]
        }
    )

    scheduled_for: InstantIn = Field(description="with a time zone; within 90 days back and 366 days ahead")
    duration_minutes: int = Field(default=60, ge=1, le=1440)
    topic: TopicText | None = Field(default=None, description="readable by the group and the guest only")
    guest_id: Id | None = Field(
        default=None, description="a guest facilitator from outside the group: sees this session only"
    )


class HeldIn(Command):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"held_at": "2026-05-04T10:05:00Z", "duration_minutes": 55, "attendees": ["E000123", "E000456"]}
            ]
        }
    )

    held_at: InstantIn | None = Field(default=None, description="when it started; the scheduled time when not given")
    duration_minutes: int = Field(ge=1, le=1440)
    attendees: list[Id] = Field(min_length=1, max_length=500, description="the members (and guest) present")


class CancelIn(Command):
    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "a client visit moved"}]})

    reason: ReasonText = Field(description="confidential: kept encrypted, never in an event")


class RescheduleIn(Command):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"scheduled_for": "2026-05-11T10:00:00Z", "reason": "travel"}]}
    )

    scheduled_for: InstantIn = Field(description="the new time")
    reason: ReasonText = Field(description="confidential: kept encrypted, never in an event")


class GoalIn(Command):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "category": "communication",
                    "wording": "present at the quarterly review",
                    "steps": ["outline", "rehearse", "present"],
                }
            ]
        }
    )

    category: GoalCategory
    wording: GoalText = Field(description="private to the member and their group")
    steps: list[StepText] = Field(min_length=1, max_length=100, description="smaller steps that show progress")


class NoteIn(Command):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"kind": "action_item", "text": "send the slides", "shared": True}]}
    )

    kind: NoteKind = NoteKind.NOTE
    text: NoteText = Field(description="readable by the author only unless shared")
    shared: bool = Field(default=False, description="share with the group's members")


class NotePatch(Command):
    model_config = ConfigDict(json_schema_extra={"examples": [{"done": True}]})

    shared: bool | None = None
    done: bool | None = Field(default=None, description="for an action item: ticked off")


class CloseIn(Command):
    model_config = ConfigDict(json_schema_extra={"examples": [{"outcome": "completed"}]})

    outcome: ClosureReason = Field(description="completed | withdrawn | faded | renewed (renewed opens the next term)")
