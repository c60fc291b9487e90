"""Matching's HTTP API: run (or rehearse) a matching, watch it, read its groups and explanations."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from contracts.base import Id, RequestModel, Text
from contracts.policy import MatchingPolicy, PolicyChanges, PolicyRejected, Role
from contracts.timestamps import UtcDateTime
from runtime.auth import ApiRole, Principal, require
from runtime.errors import error_responses
from runtime.service import ServiceContext, context
from services.matching import handlers
from services.matching.adapters import runs as repo
from services.matching.domain.audit import explain_mentor, overrides_about
from services.matching.domain.model import Group, MatchingInput, MatchingResult, OverrideKind, Unplaced
from services.matching.views import (
    Explanation,
    GroupsPage,
    MentorExplanation,
    OverrideEffect,
    OverrideOut,
    OverridesPage,
    PlacedExplanation,
    PoolOut,
    RunOut,
    UnplacedExplanation,
    UnplacedPage,
)

router = APIRouter()
Ctx = Annotated[ServiceContext, Depends(context)]
Admin = Annotated[Principal, Depends(require(ApiRole.ADMIN))]
Staff = Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.INTEGRATION))]


class RunBody(RequestModel):
    dry_run: bool = Field(default=False, description="compute and explain, publish nothing")
    seed: int | None = Field(default=None, ge=0, le=2**62, description="the lottery seed; random when absent")
    policy: PolicyChanges | None = Field(
        default=None,
        description="dry runs only: what-if changes, any subset of the policy's fields (weights too), merged over "
        "the program's own policy and checked against its form exactly as enrollment checks a program's policy",
    )
    against_last_run: bool = Field(default=False, description="dry run on the last published run's exact input")
    wait: bool = Field(default=False, description="answer when the run has finished (small programs)")


class OverrideBody(RequestModel):
    kind: OverrideKind
    participant_ids: tuple[Id, Id]
    reason: Text = Field(min_length=3, max_length=500)


def _invalid(field: str, message: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}])


def _not_found(message: str, *loc: str) -> HTTPException:
    """A 404 in the one error shape, naming the path parameter that names nothing."""
    return HTTPException(404, detail=[{"loc": ["path", *loc], "msg": message, "type": "not_found"}])


def _conflict(message: str, *loc: str) -> HTTPException:
    return HTTPException(409, detail=[{"loc": list(loc), "msg": message, "type": "conflict"}])


_RUN_WAITED: dict[int | str, dict[str, Any]] = {
    200: {"model": RunOut, "description": "with ``wait``: the run has finished (completed or failed)"}
}


@router.post(
    "/programs/{program_id}/runs",
    status_code=202,
    response_model=RunOut,
    tags=["runs"],
    responses={**_RUN_WAITED, **error_responses(404, 409)},
)
async def run_matching(
    program_id: str, body: RunBody, request: Request, response: Response, ctx: Ctx, who: Admin
) -> RunOut:
    """Start a matching run (only people not yet in an active group are matched). Publishes
    group.matched per group, participant.unmatched per unplaced person, then matching.completed;
    a dry run publishes nothing and, when a run was published before, says what would change."""
    if body.policy is not None and not body.dry_run:
        raise _invalid("policy", "a what-if policy needs dry_run (the program's own policy lives in enrollment)")
    if body.against_last_run and not body.dry_run:
        raise _invalid("against_last_run", "only for dry runs")
    req = handlers.RunRequest(
        dry_run=body.dry_run, seed=body.seed, policy_changes=body.policy, against_last_run=body.against_last_run
    )
    try:
        run_id, task = await handlers.start_run(ctx.pool, program_id, req, who.subject, ctx.metrics)
    except handlers.NotFound as exc:
        raise _not_found(str(exc), "program_id") from exc
    except (handlers.Busy, handlers.ProgramClosed) as exc:
        raise _conflict(str(exc), "path", "program_id") from exc
    except PolicyRejected as exc:
        loc = ["body", "policy", *exc.field.split(".")] if exc.field else ["body", "policy"]
        raise HTTPException(422, detail=[{"loc": loc, "msg": exc.message, "type": "value_error"}]) from exc
    tasks: set[asyncio.Task[None]] = request.app.state.runs
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    if body.wait:
        await asyncio.shield(task)
        response.status_code = 200
    return RunOut.of(await _run_or_404(ctx, run_id))


@router.post("/runs/{run_id}/publish", response_model=RunOut, tags=["runs"], responses=error_responses(404, 409))
async def publish_dry_run(run_id: str, ctx: Ctx, who: Admin) -> RunOut:
    """Publish a completed dry run as it is: the same groups, re-validated against the rules, the current
    mentor loads and the current pool, so what an administrator rehearsed is what people get. Recorded as
    a new run (``published_from`` names the dry run); 409 when the program moved on since the rehearsal."""
    try:
        published = await handlers.publish_dry_run(ctx.pool, run_id, who.subject)
    except handlers.NotFound as exc:
        raise _not_found(str(exc), "run_id") from exc
    except (handlers.Busy, handlers.ProgramClosed, handlers.NotPublishable) as exc:
        raise _conflict(str(exc), "path", "run_id") from exc
    return RunOut.of(await _run_or_404(ctx, published))


class RunRecord(BaseModel):
    """A run as an auditor replays it."""

    run_id: str
    program_id: str
    dry_run: bool
    seed: int
    policy: MatchingPolicy = Field(description="the policy the run solved under (the program's, or a what-if's)")
    code_version: str | None = Field(description="package version + digest of the matching core's source")
    requested_by: str
    started_at: UtcDateTime
    input_digest: str | None
    published_from: str | None = Field(description="the dry run this run published as it was, if any")
    input: MatchingInput = Field(description="the exact input: pool, policy, existing mentor loads, overrides")


@router.get("/runs/{run_id}/input", response_model=RunRecord, tags=["runs"], responses=error_responses(404, 409))
async def run_input(run_id: str, ctx: Ctx, _: Staff) -> RunRecord:
    """The run's audit record: its exact input, policy, seed, code version, who started it and when.

    Save the document and replay offline: ``python -m services.matching.cli match record.json`` (the CLI
    reads this whole document and uses its seed) gives the same groups."""
    row = await _run_or_404(ctx, run_id)
    if row["input"] is None:
        raise _conflict(f"run {run_id} recorded no input", "path", "run_id")
    return RunRecord(
        run_id=row["run_id"], program_id=row["program_id"], dry_run=row["dry_run"], seed=row["seed"],
        policy=MatchingPolicy.model_validate_json(row["policy"]), code_version=row["code_version"],
        requested_by=row["requested_by"], started_at=row["started_at"], input_digest=row["input_digest"],
        published_from=row["published_from"], input=MatchingInput.model_validate_json(row["input"]),
    )  # fmt: skip


@router.get("/programs/{program_id}/pool", response_model=PoolOut, tags=["runs"], responses=error_responses(404))
async def pool_summary(program_id: str, ctx: Ctx, _: Staff) -> PoolOut:
    """Who matching knows about in this program (built from enrollment events), and who is grouped."""
    async with ctx.pool.acquire() as conn:
        if await repo.get_program(conn, program_id) is None:
            raise _not_found(f"no program {program_id}", "program_id")
        return PoolOut.model_validate(await repo.pool_counts(conn, program_id))


@router.get("/programs/{program_id}/runs", response_model=list[RunOut], tags=["runs"])
async def list_runs(program_id: str, ctx: Ctx, _: Staff) -> list[RunOut]:
    """The program's runs, newest first (an unknown program has none)."""
    async with ctx.pool.acquire() as conn:
        return [RunOut.of(r) for r in await repo.list_runs(conn, program_id)]


async def _run_or_404(ctx: ServiceContext, run_id: str) -> Any:
    async with ctx.pool.acquire() as conn:
        row = await repo.get_run(conn, run_id)
    if row is None:
        raise _not_found(f"no run {run_id}", "run_id")
    return row


@router.get("/runs/{run_id}", response_model=RunOut, tags=["runs"], responses=error_responses(404))
async def get_run(run_id: str, ctx: Ctx, _: Staff) -> RunOut:
    """Status, progress while running, then the summary: placed, unplaced by reason, fit, load, solver."""
    return RunOut.of(await _run_or_404(ctx, run_id))


@router.get("/runs/{run_id}/groups", response_model=GroupsPage, tags=["runs"], responses=error_responses(404))
async def run_groups(
    run_id: str, ctx: Ctx, _: Staff, offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> GroupsPage:  # fmt: skip
    """The run's groups, each with the contribution of every fit criterion (its explanation); none until
    the run has completed."""
    row = await _run_or_404(ctx, run_id)
    groups = json.loads(row["result"])["groups"] if row["result"] else []
    return GroupsPage(total=len(groups), items=[Group.model_validate(g) for g in groups[offset : offset + limit]])


@router.get("/runs/{run_id}/unplaced", response_model=UnplacedPage, tags=["runs"], responses=error_responses(404))
async def run_unplaced(run_id: str, ctx: Ctx, _: Staff) -> UnplacedPage:
    """Everyone not placed, with a concrete reason."""
    row = await _run_or_404(ctx, run_id)
    unplaced = json.loads(row["result"])["unplaced"] if row["result"] else []
    return UnplacedPage(total=len(unplaced), items=[Unplaced.model_validate(u) for u in unplaced])


@router.get(
    "/runs/{run_id}/explanations/{participant_id}",
    response_model=Explanation,
    tags=["runs"],
    responses=error_responses(404, 409),
)
async def explain(run_id: str, participant_id: str, ctx: Ctx, _: Staff) -> Explanation:
    """Why this person is where they are: a mentor's load and why, a placed person's group and its fit,
    or the reason they were not placed, with their lottery rank (reproducible from the seed)."""
    row = await _run_or_404(ctx, run_id)
    if not row["result"]:
        raise _conflict(f"run {run_id} has no result ({row['status']})", "path", "run_id")
    result = MatchingResult.model_validate_json(row["result"])
    rank = result.lottery.get(participant_id)
    inp = MatchingInput.model_validate_json(row["input"]) if row["input"] else None
    overrides = [OverrideEffect.model_validate(o) for o in (overrides_about(inp, participant_id) if inp else [])]
    if inp is not None and any(p.participant_id == participant_id and p.role is Role.MENTOR for p in inp.participants):
        why = explain_mentor(inp, result, participant_id)
        return MentorExplanation(participant_id=participant_id, overrides=overrides, **why)
    for g in result.groups:
        if any(m.participant_id == participant_id for m in g.members):
            return PlacedExplanation(participant_id=participant_id, group=g, lottery_rank=rank, overrides=overrides)
    for u in result.unplaced:
        if u.participant_id == participant_id:
            return UnplacedExplanation(participant_id=participant_id, reason_code=u.reason_code, reason=u.reason,
                                       lottery_rank=rank, overrides=overrides)  # fmt: skip
    raise _not_found(f"{participant_id} was not in run {run_id}", "participant_id")


@router.post(
    "/programs/{program_id}/overrides",
    status_code=201,
    response_model=OverrideOut,
    tags=["overrides"],
    responses=error_responses(404, 409),
)
async def add_override(program_id: str, body: OverrideBody, ctx: Ctx, who: Admin) -> OverrideOut:
    """Record an admin override with its reason; the next runs (and dry runs) apply and count it.

    Moving a person is a ``lock_pair`` of that person and the mentor (or peer) they should join: a dry
    run shows the effect before anything is published."""
    first, second = body.participant_ids
    if first == second:
        raise _invalid("participant_ids", "an override needs two different participants")
    async with ctx.pool.acquire() as conn:
        if await repo.get_program(conn, program_id) is None:
            raise _not_found(f"no program {program_id}", "program_id")
        missing = sorted(set(body.participant_ids) - await repo.active_in_pool(conn, program_id, [first, second]))
        if missing:
            raise _invalid("participant_ids", f"not enrolled in program {program_id}: {', '.join(missing)}")
        await _check_override_takes_effect(conn, program_id, body)
        oid = await repo.add_override(conn, program_id, body.kind.value, [first, second], body.reason, who.subject)
        recorded = next(o for o in await repo.list_overrides(conn, program_id) if o["override_id"] == oid)
    return _override_view(recorded)


async def _check_override_takes_effect(conn: Any, program_id: str, body: OverrideBody) -> None:
    """An override the next run could not apply is refused with the reason, never accepted silently."""
    pair = list(body.participant_ids)
    together = await repo.active_groups_with_all(conn, program_id, pair)
    if body.kind is OverrideKind.EXCLUDE_PAIR and together:
        raise HTTPException(409, detail=[{
            "loc": ["body", "participant_ids"], "type": "conflict",
            "msg": f"already together in active group {together[0]}: close that relationship (sessions) first; "
                   "an exclusion only applies to groups formed by later runs",
        }])  # fmt: skip
    if body.kind is OverrideKind.LOCK_PAIR and not together:
        mentors = set(await repo.mentors_among(conn, program_id, pair))
        grouped = sorted(set(await repo.already_grouped(conn, program_id, pair)) - mentors)
        if grouped:
            raise HTTPException(409, detail=[{
                "loc": ["body", "participant_ids"], "type": "conflict",
                "msg": f"{', '.join(grouped)} already in an active group: a lock only applies to people a later "
                       "run can place",
            }])  # fmt: skip
        if len(mentors) == 2:
            raise _invalid("participant_ids", "a lock joins a mentor with a mentee (or two peers), not two mentors")


@router.get(
    "/programs/{program_id}/overrides", response_model=OverridesPage, tags=["overrides"], responses=error_responses(404)
)
async def list_overrides(program_id: str, ctx: Ctx, _: Admin) -> OverridesPage:
    """Every override of the program with who made it and why, revoked ones included (the audit trail).

    Admins only: a reason often names a personal conflict between two people."""
    async with ctx.pool.acquire() as conn:
        if await repo.get_program(conn, program_id) is None:
            raise _not_found(f"no program {program_id}", "program_id")
        items = await repo.list_overrides(conn, program_id)
    return OverridesPage(total=len(items), items=[_override_view(o) for o in items])


class RevokeBody(RequestModel):
    reason: Text = Field(min_length=3, max_length=500)


@router.post(
    "/programs/{program_id}/overrides/{override_id}/revoke",
    response_model=OverrideOut,
    tags=["overrides"],
    responses=error_responses(404),
)
async def revoke_override(
    program_id: str,
    override_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: RevokeBody,
    ctx: Ctx,
    who: Admin,
) -> OverrideOut:
    """Stop applying an override from the next run on; it stays on record with who revoked it and why."""
    async with ctx.pool.acquire() as conn:
        revoked = await repo.revoke_override(conn, program_id, override_id, body.reason, who.subject)
    if revoked is None:
        raise _not_found(f"no active override {override_id} in program {program_id}", "override_id")
    return _override_view(revoked)


def _override_view(row: dict[str, Any]) -> OverrideOut:
    return OverrideOut.model_validate({**row, "participant_ids": list(row["participant_ids"])})


def install(app: FastAPI) -> None:
    app.state.runs = set()
    app.state.on_stop.append(lambda: handlers.cancel_runs(app.state.runs))
