"""Enrollment's domain: programs, the org chart and enrolments, as plain values with no I/O.

Reporting lines and departments come from the HRIS import, never from what people type, because
matching's conflict-of-interest rules are only as good as that data.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, WithJsonSchema, field_validator
from pydantic.json_schema import SkipJsonSchema

from contracts.base import Id, RequestModel, Tag, Text
from contracts.events import ParticipantProfile
from contracts.policy import Form, MatchingPolicy, PolicyChanges, PolicyRejected, Role, default_policy
from contracts.policy import resolve_policy as resolve_contract_policy
from contracts.timestamps import DateIn

MAX_CHAIN = 20
"""Manager levels kept per person: deeper than any reporting-line rule a policy may set."""


Where = Literal["body", "path", "query"]


class DomainError(Exception):
    """A command that cannot be carried out; ``field`` names the input at fault (for HTTP 422).

    ``field`` may be dotted (``policy.mentors_per_group``); ``where`` says which part of the request
    it came from, so an unknown id in the URL is reported at ``["path", "program_id"]``.
    """

    def __init__(self, message: str, field: str | None = None, where: Where = "body") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.where = where

    kind = "value_error"

    @property
    def loc(self) -> list[str | int]:
        return [self.where, *(self.field.split(".") if self.field else [])]


class NotFound(DomainError):
    kind = "not_found"


class Conflict(DomainError):
    kind = "conflict"


@dataclass(frozen=True)
class RowError:
    """One bad row of an upload; all are returned together so a file is fixed in one pass.

    ``row`` is the CSV file's line number (the header is line 1, so the first data row is 2) or the
    1-based position in a JSON list; 0 means the upload as a whole.
    """

    row: int
    field: str | None
    message: str
    kind: str = "value_error"
    """``not_found``, ``conflict`` or ``value_error``: what an HTTP error item calls its ``type``."""


class RowErrors(DomainError):
    def __init__(self, errors: list[RowError]) -> None:
        super().__init__(f"{len(errors)} row(s) rejected, nothing stored")
        self.errors = errors


# --- programs ----------------------------------------------------------------------------------


_POLICY_DOC = (
    "any subset of the matching policy's fields (see MatchingPolicy); the fields not given keep the"
    " form's defaults on create and the program's current values on update"
)


def _refuse_null(value: object, info: Any) -> object:
    """For fields that may be left out of a request but never set to null."""
    if value is None:
        raise ValueError(f"{info.field_name} may be left out but not set to null")
    return value


class ProgramSpec(RequestModel):
    """What an administrator states to open a program; the policy defaults per form."""

    name: Text = Field(min_length=1, max_length=200)
    form: Form
    cadence_days: int = Field(default=14, ge=1, le=366)
    starts_on: DateIn
    ends_on: DateIn | None = None
    policy: PolicyChanges | None = Field(default=None, description=_POLICY_DOC)

    @field_validator("ends_on")
    @classmethod
    def _after_start(cls, ends_on: date | None, info: ValidationInfo) -> date | None:
        starts_on = info.data.get("starts_on")
        if ends_on is not None and starts_on is not None and ends_on < starts_on:
            raise ValueError("ends_on must not be before starts_on")
        return ends_on

    def effective_policy(self) -> MatchingPolicy:
        """The form's defaults with the stated fields merged over them, checked against the form."""
        return resolve_policy(self.form, default_policy(self.form), self.policy or {})


_PolicyPatch = Annotated[dict[str, Any], WithJsonSchema({"allOf": [{"$ref": "#/components/schemas/MatchingPolicy"}]})]
"""PolicyChanges where null is refused: its bare ``$ref`` wrapped, so pydantic can document it without ``null``."""


class ProgramPatch(RequestModel):
    """Fields left out keep their value; ``ends_on: null`` removes the end date; other nulls are refused
    (422), so the other fields are documented as not nullable."""

    name: Annotated[Text, Field(min_length=1, max_length=200)] | SkipJsonSchema[None] = None
    cadence_days: Annotated[int, Field(ge=1, le=366)] | SkipJsonSchema[None] = None
    ends_on: DateIn | None = None
    policy: _PolicyPatch | SkipJsonSchema[None] = Field(default=None, description=_POLICY_DOC)

    _not_null = field_validator("name", "cadence_days", "policy", mode="before")(_refuse_null)


def resolve_policy(form: Form, base: MatchingPolicy, changes: Mapping[str, Any]) -> MatchingPolicy:
    """The contracts' :func:`contracts.policy.resolve_policy`, its refusal as a DomainError naming the
    policy field at fault (``policy.mentors_per_group``)."""
    try:
        return resolve_contract_policy(form, base, changes)
    except PolicyRejected as exc:
        raise DomainError(exc.message, f"policy.{exc.field}" if exc.field else "policy") from exc


@dataclass(frozen=True)
class Program:
    program_id: str
    name: str
    form: Form
    cadence_days: int
    starts_on: date
    ends_on: date | None
    policy: MatchingPolicy
    status: str
    opened_at: datetime

    @property
    def is_open(self) -> bool:
        return self.status == "open"


# --- org chart ---------------------------------------------------------------------------------


class OrgPerson(RequestModel):
    employee_id: Id
    manager_id: Id | None = None
    department: Text = Field(min_length=1, max_length=120)
    level: int = Field(ge=0, le=30)
    location: Text | None = Field(default=None, max_length=120)
    utc_offset_minutes: int = Field(default=0, ge=-720, le=840)
    languages: list[Tag] = Field(default_factory=list)


def validate_org_chart(
    rows: Sequence[OrgPerson],
    existing: dict[str, str | None],
    numbers: Sequence[int] | None = None,
    unreadable: Collection[str] = (),
) -> list[RowError]:
    """Duplicate ids, unknown managers and cycles, each with its row.

    ``existing`` maps employee id to manager id for people already imported: an upload may add
    people under managers imported earlier, and the merged chart must still be a forest.
    ``numbers`` are the rows' numbers in the file (default 1, 2, ...); ``unreadable`` the ids of rows
    of the same upload that failed to parse: they are reported already, so not as unknown managers.
    """
    numbers = list(numbers) if numbers is not None else list(range(1, len(rows) + 1))
    errors: list[RowError] = []
    first_row: dict[str, int] = {}
    for i, person in zip(numbers, rows, strict=True):
        if person.employee_id in first_row:
            errors.append(
                RowError(
                    i,
                    "employee_id",
                    f"duplicate employee_id {person.employee_id} (first on row {first_row[person.employee_id]})",
                )
            )
        else:
            first_row[person.employee_id] = i
    managers = dict(existing)
    managers.update({p.employee_id: p.manager_id for p in rows})
    for i, person in zip(numbers, rows, strict=True):
        if person.manager_id is not None and person.manager_id not in managers and person.manager_id not in unreadable:
            errors.append(RowError(i, "manager_id", f"unknown manager_id {person.manager_id}"))
        if person.manager_id == person.employee_id:
            errors.append(RowError(i, "manager_id", "a person cannot be their own manager"))
    reported: set[str] = set()
    for person in rows:
        cycle = _cycle_from(person.employee_id, managers)
        if cycle and not reported.intersection(cycle) and len(cycle) > 1:
            reported.update(cycle)
            row = first_row[person.employee_id]
            errors.append(RowError(row, "manager_id", f"cycle in the manager chain: {' -> '.join([*cycle, cycle[0]])}"))
    return sorted(errors, key=lambda e: e.row)


def _cycle_from(start: str, managers: dict[str, str | None]) -> list[str] | None:
    path: list[str] = []
    index: dict[str, int] = {}
    current: str | None = start
    while current is not None and current in managers:
        if current in index:
            return path[index[current] :]
        index[current] = len(path)
        path.append(current)
        current = managers[current]
    return None


def manager_chain(employee_id: str, managers: dict[str, str | None]) -> list[str]:
    """Managers upwards from the direct one, at most ``MAX_CHAIN`` (the chart is validated acyclic)."""
    chain: list[str] = []
    current = managers.get(employee_id)
    while current is not None and len(chain) < MAX_CHAIN and current not in chain:
        chain.append(current)
        current = managers.get(current)
    return chain


# --- enrolment ---------------------------------------------------------------------------------


class EnrolmentRequest(RequestModel):
    """What a person declares when enrolling; org data is added from the chart."""

    participant_id: Id
    role: Role
    team_id: Id | None = None
    skills_offered: list[Tag] = Field(default_factory=list, max_length=50)
    skills_sought: list[Tag] = Field(default_factory=list, max_length=50)
    goals: list[Tag] = Field(default_factory=list, max_length=20)
    capacity: int | None = Field(
        default=None,
        ge=0,
        le=50,
        description="mentors only: mentees or groups at once, one number across all programs (setting it here"
        " sets it in the mentor's other programs; left out, the one declared there is kept)",
    )
    languages: list[Tag] | None = Field(default=None, description="overrides the HRIS languages when given")
    conflicts_with: list[Id] = Field(default_factory=list, max_length=100)


class EnrolmentPatch(RequestModel):
    """Fields left out keep their value. ``null`` clears ``team_id``, ``capacity`` and ``languages``
    (back to the HRIS languages); the lists are emptied with ``[]``, never with ``null``."""

    team_id: Id | None = None
    skills_offered: Annotated[list[Tag], Field(max_length=50)] | SkipJsonSchema[None] = None
    skills_sought: Annotated[list[Tag], Field(max_length=50)] | SkipJsonSchema[None] = None
    goals: Annotated[list[Tag], Field(max_length=20)] | SkipJsonSchema[None] = None
    capacity: int | None = Field(default=None, ge=0, le=50)
    languages: list[Tag] | None = None
    conflicts_with: Annotated[list[Id], Field(max_length=100)] | SkipJsonSchema[None] = None

    _not_null = field_validator("skills_offered", "skills_sought", "goals", "conflicts_with", mode="before")(
        _refuse_null
    )


ROLES_BY_FORM: dict[Form, frozenset[Role]] = {
    Form.ONE_TO_ONE: frozenset({Role.MENTOR, Role.MENTEE}),
    Form.FACILITATED_GROUP: frozenset({Role.MENTOR, Role.MENTEE}),
    Form.TEAM: frozenset({Role.MENTOR, Role.MENTEE}),
    Form.REVERSE: frozenset({Role.MENTOR, Role.MENTEE}),
    Form.PEER_GROUP: frozenset({Role.PEER}),
}


def check_enrolment(program: Program, request: EnrolmentRequest) -> None:
    """The rules an enrolment must meet before anything is stored; raises with the field at fault."""
    if not program.is_open:
        raise Conflict(f"program {program.program_id} is closed", "program_id", "path")
    allowed = ROLES_BY_FORM[program.form]
    if request.role not in allowed:
        roles = ", ".join(sorted(allowed))
        raise DomainError(f"a {program.form} program takes roles {roles}, not {request.role}", "role")
    if request.role is Role.MENTOR and not request.capacity:
        raise DomainError("a mentor needs a capacity of at least 1 (mentees or groups at once)", "capacity")
    if request.role is not Role.MENTOR and request.capacity:
        raise DomainError("only mentors declare a capacity", "capacity")
    if program.form is not Form.TEAM and request.team_id is not None:
        raise DomainError(f"a {program.form} program has no teams: leave team_id out", "team_id")
    if program.form is Form.TEAM and request.role is Role.MENTEE and request.team_id is None:
        raise DomainError("team mentoring needs the mentee's team_id", "team_id")
    if program.form is Form.TEAM and request.role is Role.MENTOR and request.team_id is not None:
        raise DomainError("mentors are assigned to teams by matching: leave team_id out", "team_id")
    if request.participant_id in request.conflicts_with:
        raise DomainError("a person cannot declare a conflict with themself", "conflicts_with")


@dataclass(frozen=True)
class OrgIndex:
    """The org chart in memory, for building many profiles without a query each.

    ``people`` may hold only the people being enrolled; ``managers`` must cover the whole chart so
    that reporting chains reach the top.
    """

    people: dict[str, OrgPerson]
    managers: dict[str, str | None]
    _chains: dict[str, list[str]] = field(default_factory=dict)

    def chain(self, employee_id: str) -> list[str]:
        """``manager_chain`` memoised: a manager's chain is shared by everyone below them."""
        cached = self._chains.get(employee_id)
        if cached is None:
            manager = self.managers.get(employee_id)
            cached = [] if manager is None else [manager, *self.chain(manager)][:MAX_CHAIN]
            self._chains[employee_id] = cached
        return cached

    @classmethod
    def of(cls, people: dict[str, OrgPerson]) -> OrgIndex:
        return cls(people, {p.employee_id: p.manager_id for p in people.values()})

    def profile(self, request: EnrolmentRequest) -> ParticipantProfile:
        person = self.people.get(request.participant_id)
        if person is None:
            raise NotFound(f"{request.participant_id} is not in the org chart: import it first", "participant_id")
        # every value below was validated already (the request on arrival, the person on import):
        # constructing without validating again matters when thousands are enrolled at once
        return ParticipantProfile.model_construct(
            participant_id=request.participant_id,
            role=request.role,
            team_id=request.team_id,
            department=person.department,
            level=person.level,
            manager_id=person.manager_id,
            manager_chain=list(self.chain(person.employee_id)),
            location=person.location,
            utc_offset_minutes=person.utc_offset_minutes,
            languages=request.languages if request.languages is not None else person.languages,
            skills_offered=request.skills_offered,
            skills_sought=request.skills_sought,
            goals=request.goals,
            capacity=request.capacity,
            conflicts_with=request.conflicts_with,
        )


def apply_patch(request: EnrolmentRequest, patch: EnrolmentPatch) -> EnrolmentRequest:
    """The patched request, validated again as a whole."""
    return EnrolmentRequest.model_validate({**request.model_dump(), **patch.model_dump(exclude_unset=True)})
