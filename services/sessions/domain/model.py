"""Sessions' domain: relationships, their members, sessions, goals and notes, as plain values with no I/O.

The rules here decide; the handlers load, call them, and save. Nothing in this module sees a key, a
connection or a request. Error messages name ids and fields, never a text a participant typed.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from contracts.events import ClosureReason
from contracts.policy import Form, MatchingPolicy, Role, default_policy
from runtime.errors import ConflictError, FieldError, ForbiddenError, NotFoundError

PAST_LIMIT = timedelta(days=90)
"""A session may be logged as held, or scheduled, at most this long ago: a late record of a meeting
is normal, a record of one a season ago is almost always a wrong year or month."""

FUTURE_LIMIT = timedelta(days=366)
"""A session may be scheduled at most a year (and a day, for a leap year) ahead: cadences go up to
366 days, and anything later is a typo, not a plan."""

HELD_SLACK = timedelta(minutes=15)
"""A session logged as held may start this far in the future, for clocks that disagree a little."""


class RelationshipStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class SessionStatus(StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"
    CANCELLED = "cancelled"


class NoteKind(StrEnum):
    NOTE = "note"
    ACTION_ITEM = "action_item"


@dataclass(frozen=True)
class ProgramInfo:
    """What sessions keeps of a program (from program.opened/updated): cadence, form and group sizes."""

    program_id: str
    form: Form
    cadence_days: int
    mentors_per_group: int
    members_min: int
    status: str = "open"

    @classmethod
    def assumed(cls, program_id: str, form: Form, cadence_days: int) -> ProgramInfo:
        """When a group arrives before its program's event: the form's default sizes."""
        policy = default_policy(form)
        return cls.of(program_id, form, cadence_days, policy)

    @classmethod
    def of(
        cls, program_id: str, form: Form, cadence_days: int, policy: MatchingPolicy, status: str = "open"
    ) -> ProgramInfo:
        return cls(program_id, form, cadence_days, policy.mentors_per_group, policy.group_members_min, status)


@dataclass(frozen=True)
class Member:
    participant_id: str
    role: Role
    active: bool = True


@dataclass(frozen=True)
class Relationship:
    group_id: str
    program_id: str
    form: Form
    term: int
    status: RelationshipStatus
    started_on: date
    cadence_days: int
    members: tuple[Member, ...]
    outcome: ClosureReason | None = None

    @property
    def is_open(self) -> bool:
        return self.status is RelationshipStatus.OPEN

    @property
    def active_ids(self) -> frozenset[str]:
        return frozenset(m.participant_id for m in self.members if m.active)

    def member(self, participant_id: str) -> Member | None:
        return next((m for m in self.members if m.participant_id == participant_id), None)


# --- access -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who asks, as the API's token says: a participant (``subject`` = their participant id), an admin,
    or a read-only integration. Text is for participants who are members; staff read metadata only."""

    subject: str
    participant: bool = False
    admin: bool = False
    integration: bool = False

    @property
    def staff(self) -> bool:
        return self.admin or self.integration


def reader_of(rel: Relationship, caller: Caller) -> Member | None:
    """The caller's membership when they read as a member (texts included), None when they read as
    staff (metadata only); 404 for anyone else."""
    if caller.participant:
        m = rel.member(caller.subject)
        if m is not None and m.active:
            return m
    if caller.staff:
        return None
    raise NotFoundError(f"no relationship {rel.group_id}", "group_id", where="path")


def member_or_404(rel: Relationship, participant_id: str) -> Member:
    """A participant reaches only relationships they are an active member of; anyone else is told the
    group does not exist (404), so a participant cannot probe which groups others are in."""
    m = rel.member(participant_id)
    if m is None or not m.active:
        raise NotFoundError(f"no relationship {rel.group_id}", "group_id", where="path")
    return m


def may_set_expectations(rel: Relationship, participant_id: str) -> None:
    """The mentor agrees the expectations; in a group without a mentor (peers), any member does."""
    m = member_or_404(rel, participant_id)
    has_mentor = any(x.role is Role.MENTOR and x.active for x in rel.members)
    if has_mentor and m.role is not Role.MENTOR:
        raise ForbiddenError("only the group's mentor changes its expectations", "group_id", where="path")


def writable(rel: Relationship) -> None:
    if not rel.is_open:
        raise ConflictError(f"relationship {rel.group_id} is closed", "group_id", where="path")


# --- lifecycle --------------------------------------------------------------------------------------


def still_viable(rel: Relationship, program: ProgramInfo) -> bool:
    """A group goes on while it keeps a mentor (where its program has mentors) and at least the
    program's minimum of mentees or peers. Below that it is no longer the relationship that was agreed."""
    active = [m for m in rel.members if m.active]
    mentors = sum(1 for m in active if m.role is Role.MENTOR)
    others = len(active) - mentors
    if program.mentors_per_group > 0 and mentors == 0:
        return False
    return others >= max(program.members_min, 1)


def without(rel: Relationship, participant_id: str) -> Relationship:
    """The relationship after one member's part ended (a withdrawal)."""
    members = tuple(
        Member(m.participant_id, m.role, active=False) if m.participant_id == participant_id else m for m in rel.members
    )
    return replace(rel, members=members)


# --- sessions ---------------------------------------------------------------------------------------


def check_when(when: datetime, now: datetime, field: str, *, held: bool) -> None:
    """Session times must be timezone-aware and within [now - 90 days, now + 366 days]; a session
    logged as held must have started (give or take a few minutes of clock skew)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise FieldError("give a time zone (e.g. 2026-05-04T10:00:00Z)", field)
    if when < now - PAST_LIMIT:
        raise FieldError(f"more than {PAST_LIMIT.days} days in the past", field)
    latest = now + (HELD_SLACK if held else FUTURE_LIMIT)
    if when > latest:
        raise FieldError(
            "in the future: a session is logged as held once it took place"
            if held
            else f"more than {FUTURE_LIMIT.days} days ahead",
            field,
        )


def check_attendance(rel: Relationship, attendees: Sequence[str], guest_id: str | None) -> None:
    """Attendance names active members (and the session's guest), each once."""
    allowed = rel.active_ids | ({guest_id} if guest_id else set())
    seen: set[str] = set()
    for i, pid in enumerate(attendees):
        if pid not in allowed:
            raise FieldError(f"{pid} is not a member of group {rel.group_id}", "attendees", i)
        if pid in seen:
            raise FieldError(f"{pid} is listed twice", "attendees", i)
        seen.add(pid)


def check_guest(rel: Relationship, guest_id: str | None) -> None:
    """A guest facilitator comes from outside the group."""
    if guest_id is not None and rel.member(guest_id) is not None:
        raise FieldError(f"{guest_id} is a member of the group, not a guest", "guest_id")


def may_change_session(status: SessionStatus, session_id: str) -> None:
    """Held and cancelled sessions are history: they are not cancelled, moved or logged again."""
    if status is not SessionStatus.SCHEDULED:
        raise ConflictError(f"session {session_id} is {status.value}", "session_id", where="path")


# --- goals ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoalProgress:
    steps_done: int
    steps_total: int


def tick(done: Collection[int], steps_total: int, step: int, goal_id: str) -> GoalProgress:
    """Ticking step ``step`` (1-based) off; ticking a ticked step again is a conflict, not progress."""
    if not 1 <= step <= steps_total:
        raise NotFoundError(f"goal {goal_id} has steps 1 to {steps_total}", "step", where="path")
    if step in done:
        raise ConflictError(f"step {step} is already done", "step", where="path")
    return GoalProgress(len(done) + 1, steps_total)
