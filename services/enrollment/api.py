"""Enrollment's HTTP API: thin routes over the handlers; errors carry the field at fault.

Every 404, 409 and 422 has FastAPI's own shape, ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``:
``loc`` starts with where the input was (``body``, ``path``, ``query``); an upload's row errors are at
``["body", <row>, <field>]`` (the CSV line, header = line 1, or the 1-based position in a JSON list)
and an error about the upload as a whole at ``["body"]``. ``type`` is pydantic's error type, or
``not_found``, ``conflict``, ``value_error`` for the domain's rules. 401 and 403 have the same shape
(``runtime/errors.py``), and every operation's OpenAPI entry lists the errors it can give.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.base import message
from contracts.events import ParticipantProfile
from contracts.policy import Form, MatchingPolicy
from contracts.timestamps import UtcDateTime
from runtime.auth import ApiRole, Principal, require
from runtime.errors import ErrorItem
from runtime.errors import error_responses as _errors
from runtime.service import ServiceContext, context
from services.enrollment import handlers
from services.enrollment.adapters import repository as repo
from services.enrollment.domain.model import (
    Conflict,
    DomainError,
    EnrolmentPatch,
    EnrolmentRequest,
    NotFound,
    OrgPerson,
    Program,
    ProgramPatch,
    ProgramSpec,
    RowError,
    RowErrors,
)
from services.enrollment.domain.uploads import Upload, parse_upload

router = APIRouter()
Ctx = Annotated[ServiceContext, Depends(context)]
Admin = Annotated[Principal, Depends(require(ApiRole.ADMIN))]
AnyReader = Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.INTEGRATION, ApiRole.PARTICIPANT))]
Staff = Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.INTEGRATION))]
Member = Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.PARTICIPANT))]


class ProgramOut(BaseModel):
    """A program as it stands: its form, cadence, dates, matching policy and whether it is open."""

    program_id: str = Field(examples=["prg-1a2b3c4d"])
    name: str
    form: Form
    cadence_days: int = Field(description="expected days between a relationship's sessions")
    starts_on: date
    ends_on: date | None
    policy: MatchingPolicy
    status: Literal["open", "closed"]

    @classmethod
    def of(cls, p: Program) -> ProgramOut:
        return cls(
            program_id=p.program_id,
            name=p.name,
            form=p.form,
            cadence_days=p.cadence_days,
            starts_on=p.starts_on,
            ends_on=p.ends_on,
            policy=p.policy,
            status=p.status,
        )


class EnrolmentOut(ParticipantProfile):
    """An enrolment: the profile matching works with (org data from the chart plus what the person
    declared), the program, and whether the enrolment is active."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "program_id": "prg-1a2b3c4d",
                    "status": "active",
                    "enrolled_at": "2026-11-30T03:03:49.235295Z",
                    "participant_id": "E000123",
                    "role": "mentee",
                    "department": "Sales",
                    "level": 2,
                    "manager_id": "E000042",
                    "manager_chain": ["E000042", "E000001"],
                    "location": "Milan",
                    "utc_offset_minutes": 60,
                    "languages": ["en", "it"],
                    "skills_sought": ["negotiation"],
                    "goals": ["leadership"],
                }
            ]
        }
    )

    program_id: str
    status: Literal["active", "withdrawn"]
    enrolled_at: UtcDateTime

    @classmethod
    def of(cls, row: Any) -> EnrolmentOut:
        return cls.model_validate(row.as_dict())


class EnrolmentPage(BaseModel):
    items: list[EnrolmentOut]
    next_after: str | None = Field(description="pass as ``after`` for the next page; null on the last page")


class MyEnrolments(BaseModel):
    items: list[EnrolmentOut]


class OrgChartImported(BaseModel):
    imported: int = Field(description="rows upserted")
    profiles_updated: int = Field(description="active enrolments whose org data changed (participant.updated each)")


class BulkEnrolled(BaseModel):
    enrolled: int = Field(description="enrolments created (participant.enrolled each)")


def _only_self(who: Principal, participant_id: str) -> None:
    """Participants act for themselves only; admins for anyone."""
    if not who.has(ApiRole.ADMIN) and who.subject != participant_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="participants may act only on their own enrolment")


@router.post("/programs", status_code=201, response_model=ProgramOut, tags=["programs"], responses=_errors(422))
async def open_program(spec: ProgramSpec, ctx: Ctx, _: Admin) -> ProgramOut:
    """Open a program; the matching policy defaults per form when not given. Publishes program.opened."""
    return ProgramOut.of(await handlers.open_program(ctx.pool, spec))


@router.get("/programs", response_model=list[ProgramOut], tags=["programs"])
async def list_programs(ctx: Ctx, _: AnyReader) -> list[ProgramOut]:
    async with ctx.pool.acquire() as conn:
        return [ProgramOut.of(p) for p in await repo.list_programs(conn)]


@router.get("/programs/{program_id}", response_model=ProgramOut, tags=["programs"], responses=_errors(404))
async def get_program(program_id: str, ctx: Ctx, _: AnyReader) -> ProgramOut:
    return ProgramOut.of(await handlers.get_program(ctx.pool, program_id))


@router.patch("/programs/{program_id}", response_model=ProgramOut, tags=["programs"], responses=_errors(404, 409, 422))
async def update_program(program_id: str, patch: ProgramPatch, ctx: Ctx, _: Admin) -> ProgramOut:
    """Change name, cadence, end date or policy. Publishes program.updated."""
    return ProgramOut.of(await handlers.update_program(ctx.pool, program_id, patch))


@router.post("/programs/{program_id}/close", response_model=ProgramOut, tags=["programs"], responses=_errors(404))
async def close_program(program_id: str, ctx: Ctx, _: Admin) -> ProgramOut:
    return ProgramOut.of(await handlers.close_program(ctx.pool, program_id))


async def _upload(request: Request, model: type[Any], key: str) -> Upload[Any]:
    """Parsed rows and parse errors; the handler adds the domain's errors and reports all together."""
    content_type = request.headers.get("content-type", "application/json")
    return parse_upload(await request.body(), content_type, model, key=key)


_COMPONENTS = "#/components/schemas/"
_ORG_COLUMNS = "employee_id,manager_id,department,level,location,utc_offset_minutes,languages (';'-separated)"


def _upload_doc(row: type[BaseModel], columns: str) -> dict[str, Any]:
    """An upload's body: a JSON list of rows, or CSV with a header line naming the same fields."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"$ref": _COMPONENTS + row.__name__}}},
                "text/csv": {
                    "schema": {"type": "string", "description": f"a header line, then one row per line: {columns}"}
                },
            },
        }
    }


@router.post(
    "/org-chart",
    response_model=OrgChartImported,
    tags=["org chart"],
    openapi_extra=_upload_doc(OrgPerson, _ORG_COLUMNS),
    responses=_errors(422),
)
async def import_org_chart(request: Request, ctx: Ctx, _: Admin) -> OrgChartImported:
    """Import (upsert) the org chart from the HRIS as CSV or JSON rows: employee_id, manager_id,
    department, level, location, utc_offset_minutes, languages (``en;it``). Unknown managers, cycles
    and duplicate ids are reported with their rows and nothing is imported."""
    upload = await _upload(request, OrgPerson, "employee_id")
    result = await handlers.import_org_chart(
        ctx.pool, upload.rows, rows=upload.numbers, errors=upload.errors, unreadable=upload.unreadable_keys
    )
    return OrgChartImported(imported=result.imported, profiles_updated=result.profiles_updated)


@router.get("/org-chart/{employee_id}", response_model=OrgPerson, tags=["org chart"], responses=_errors(404))
async def get_person(
    employee_id: str, ctx: Ctx, _: Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.INTEGRATION))]
) -> OrgPerson:
    from services.enrollment.adapters.repository import get_person as _get

    async with ctx.pool.acquire() as conn:
        person = await _get(conn, employee_id)
    if person is None:
        raise NotFound(f"no employee {employee_id}", "employee_id", "path")
    return person


@router.post(
    "/programs/{program_id}/enrolments",
    status_code=201,
    response_model=EnrolmentOut,
    tags=["enrolments"],
    responses=_errors(404, 409, 422),
)
async def enrol(program_id: str, body: EnrolmentRequest, ctx: Ctx, who: Member) -> EnrolmentOut:
    """Enrol a person (a participant enrols themself). Publishes participant.enrolled."""
    _only_self(who, body.participant_id)
    return EnrolmentOut.of(await handlers.enrol(ctx.pool, program_id, body))


_ENROLMENT_COLUMNS = (
    "participant_id,role,team_id,skills_offered,skills_sought,goals,capacity,languages,conflicts_with "
    "(lists separated by ';')"
)


@router.post(
    "/programs/{program_id}/enrolments/bulk",
    response_model=BulkEnrolled,
    tags=["enrolments"],
    openapi_extra=_upload_doc(EnrolmentRequest, _ENROLMENT_COLUMNS),
    responses=_errors(404, 409, 422),
)
async def bulk_enrol(program_id: str, request: Request, ctx: Ctx, _: Admin) -> BulkEnrolled:
    """Thousands of enrolments as CSV or JSON rows, all or nothing. Every bad row is reported in one
    422, parse errors and the domain's (unknown people, duplicates, already enrolled) together, at
    ``["body", <row>, <field>]``: the CSV line (header = line 1) or the position in the JSON list."""
    upload = await _upload(request, EnrolmentRequest, "participant_id")
    enrolled = await handlers.bulk_enrol(ctx.pool, program_id, upload.rows, rows=upload.numbers, errors=upload.errors)
    return BulkEnrolled(enrolled=enrolled)


@router.get(
    "/programs/{program_id}/enrolments", response_model=EnrolmentPage, tags=["enrolments"], responses=_errors(404)
)
async def list_enrolments(
    program_id: str,
    ctx: Ctx,
    _: Staff,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    after: str | None = None,
    status_: Annotated[Literal["active", "withdrawn"] | None, Query(alias="status")] = None,
) -> EnrolmentPage:
    """A page of enrolments ordered by participant id; pass the last id as ``after`` for the next."""
    await handlers.get_program(ctx.pool, program_id)
    async with ctx.pool.acquire() as conn:
        rows = await repo.list_enrolments(conn, program_id, limit=limit, after=after, status=status_)
    items = [EnrolmentOut.of(r) for r in rows]
    return EnrolmentPage(items=items, next_after=items[-1].participant_id if len(items) == limit else None)


@router.get("/me/enrolments", response_model=MyEnrolments, tags=["enrolments"])
async def my_enrolments(ctx: Ctx, who: Annotated[Principal, Depends(require(ApiRole.PARTICIPANT))]) -> MyEnrolments:
    """The caller's own enrolments in every program, active and withdrawn (participant role; the
    token's subject is the participant id)."""
    return MyEnrolments(items=[EnrolmentOut.of(r) for r in await handlers.my_enrolments(ctx.pool, who.subject)])


@router.get(
    "/programs/{program_id}/enrolments/{participant_id}",
    response_model=EnrolmentOut,
    tags=["enrolments"],
    responses=_errors(404),
)
async def get_enrolment(program_id: str, participant_id: str, ctx: Ctx, who: AnyReader) -> EnrolmentOut:
    """One enrolment (a participant reads only their own: 403 for anyone else's)."""
    if who.roles == {ApiRole.PARTICIPANT}:
        _only_self(who, participant_id)
    return EnrolmentOut.of(await handlers.get_enrolment(ctx.pool, program_id, participant_id))


@router.patch(
    "/programs/{program_id}/enrolments/{participant_id}",
    response_model=EnrolmentOut,
    tags=["enrolments"],
    responses=_errors(404, 409, 422),
)
async def update_enrolment(
    program_id: str,
    participant_id: str,
    patch: EnrolmentPatch,
    ctx: Ctx,
    who: Member,
    on_over_capacity: Annotated[
        Literal["refuse", "keep_groups"],
        Query(
            description="a mentor's capacity cut below the groups they lead now: refuse (409 naming the groups), "
            "or keep_groups (they run on until they close; no new group until the load is under the capacity)"
        ),
    ] = "refuse",
) -> EnrolmentOut:
    """Change skills, goals, capacity, languages or conflicts. Publishes participant.updated."""
    _only_self(who, participant_id)
    keep = on_over_capacity == "keep_groups"
    return EnrolmentOut.of(
        await handlers.update_enrolment(ctx.pool, program_id, participant_id, patch, keep_groups=keep)
    )


@router.delete(
    "/programs/{program_id}/enrolments/{participant_id}",
    status_code=204,
    tags=["enrolments"],
    responses=_errors(404),
)
async def withdraw(program_id: str, participant_id: str, ctx: Ctx, who: Member) -> None:
    """Leave a program. Publishes participant.withdrawn."""
    _only_self(who, participant_id)
    await handlers.withdraw(ctx.pool, program_id, participant_id)


def _row_loc(error: RowError) -> list[str | int]:
    if error.row == 0:
        return ["body"]
    fields = error.field.split(".") if error.field else []
    return ["body", error.row, *(int(f) if f.isdigit() else f for f in fields)]


def _error(loc: list[str | int], msg: str, type_: str) -> dict[str, Any]:
    return ErrorItem(loc=loc, msg=msg, type=type_).model_dump()


def install_error_handlers(app: FastAPI) -> None:
    """Domain errors, row errors and validation errors raised inside a handler all become FastAPI's
    422 shape, naming the field at fault (404 and 409 too, with their own ``type``)."""

    async def row_errors(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RowErrors)
        detail = [_error(_row_loc(e), e.message, e.kind) for e in exc.errors]
        return JSONResponse({"detail": detail}, status_code=422)

    async def domain_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        code = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 422
        return JSONResponse({"detail": [_error(exc.loc, exc.message, exc.kind)]}, status_code=code)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        """A model validated inside a handler (a patched enrolment): the body's field is at fault."""
        assert isinstance(exc, ValidationError)
        detail = [_error(["body", *err["loc"]], message(err), err["type"]) for err in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(RowErrors, row_errors)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(ValidationError, validation_error)
