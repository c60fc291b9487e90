"""Matching's HTTP API: run (or rehearse) a matching, watch it, read its groups and explanations."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from contracts.policy import MatchingPolicy, PolicyChanges, PolicyRejected, Role
from runtime.auth import ApiRole, Principal, require
from runtime.service import ServiceContext, context
from services.matching import handlers
from services.matching.adapters import runs as repo
from services.matching.domain.audit import explain_mentor, overrides_about
from services.matching.domain.model import MatchingInput, MatchingResult, OverrideKind

router = APIRouter()
Ctx = Annotated[ServiceContext, Depends(context)]
Admin = Annotated[Principal, Depends(require(ApiRole.ADMIN))]
Staff = Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.INTEGRATION))]


class RunBody(BaseModel):
    dry_run: bool = Field(default=False, description="compute and explain, publish nothing")
    seed: int | None = Field(default=None, ge=0, le=2**62, description="the lottery seed; random when absent")
    policy: PolicyChanges | None = Field(
        default=None,
        description="dry runs only: what-if changes, any subset of the policy's fields (weights too), merged over "
        "the program's own policy and checked against its form exactly as enrollment checks a program's policy",
    )
    against_last_run: bool = Field(default=False, description="dry run on the last published run's exact input")
    wait: bool = Field(default=False, description="answer when the run has finished (small programs)")


class OverrideBody(BaseModel):
    kind: OverrideKind
    participant_ids: tuple[str, str]
    reason: str = Field(min_length=3, max_length=500)


def _invalid(field: str, message: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": ["body", field], "msg": message, "type": "value_error"}])


def _run_view(row: Any) -> dict[str, Any]:
    out = {
        k: row[k]
        for k in ("run_id", "program_id", "dry_run", "seed", "status", "progress", "started_at", "completed_at")
    }
    summary = row.get("summary") if hasattr(row, "get") else row["summary"]
    out["summary"] = json.loads(summary) if summary else None
    if "input_digest" in row:
        out["input_digest"] = row["input_digest"]
        out["error"] = row["error"]
    return out


@router.post("/programs/{program_id}/runs", status_code=202, tags=["runs"])
async def run_matching(program_id: str, body: RunBody, request: Request, ctx: Ctx, who: Admin) -> JSONResponse:
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
        raise HTTPException(404, detail=str(exc)) from exc
    except (handlers.Busy, handlers.ProgramClosed) as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    except PolicyRejected as exc:
        loc = ["body", "policy", *exc.field.split(".")] if exc.field else ["body", "policy"]
        raise HTTPException(422, detail=[{"loc": loc, "msg": exc.message, "type": "value_error"}]) from exc
    tasks: set[asyncio.Task[None]] = request.app.state.runs
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    if body.wait:
        await asyncio.shield(task)
    async with ctx.pool.acquire() as conn:
        row = await repo.get_run(conn, run_id)
    return JSONResponse(json.loads(json.dumps(_run_view(row), default=str)), status_code=200 if body.wait else 202)


@router.post("/runs/{run_id}/publish", tags=["runs"])
async def publish_dry_run(run_id: str, ctx: Ctx, who: Admin) -> dict[str, Any]:
    """Publish a completed dry run as it is: the same groups, re-validated against the rules, the current
    mentor loads and the current pool, so what an administrator rehearsed is what people get. Recorded as
    a new run (``published_from`` names the dry run); 409 when the program moved on since the rehearsal."""
    try:
        published = await handlers.publish_dry_run(ctx.pool, run_id, who.subject)
    except handlers.NotFound as exc:
        raise HTTPException(404, detail=str(exc)) from exc
    except (handlers.Busy, handlers.ProgramClosed, handlers.NotPublishable) as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    return _jsonable(_run_view(await _run_or_404(ctx, published)))


class RunRecord(BaseModel):
    """A run as an auditor replays it."""

    run_id: str
    program_id: str
    dry_run: bool
    seed: int
    policy: MatchingPolicy = Field(description="the policy the run solved under (the program's, or a what-if's)")
    code_version: str | None = Field(description="package version + digest of the matching core's source")
    requested_by: str
    started_at: datetime
    input_digest: str | None
    published_from: str | None = Field(description="the dry run this run published as it was, if any")
    input: MatchingInput = Field(description="the exact input: pool, policy, existing mentor loads, overrides")


@router.get("/runs/{run_id}/input", tags=["runs"])
async def run_input(run_id: str, ctx: Ctx, _: Staff) -> RunRecord:
    """The run's audit record: its exact input, policy, seed, code version, who started it and when.

    Save the document and replay offline: ``python -m services.matching.cli match record.json`` (the CLI
    reads this whole document and uses its seed) gives the same groups."""
    row = await _run_or_404(ctx, run_id)
    if row["input"] is None:
        raise HTTPException(409, detail=f"run {run_id} recorded no input")
    return RunRecord(
        run_id=row["run_id"], program_id=row["program_id"], dry_run=row["dry_run"], seed=row["seed"],
        policy=MatchingPolicy.model_validate_json(row["policy"]), code_version=row["code_version"],
        requested_by=row["requested_by"], started_at=row["started_at"], input_digest=row["input_digest"],
        published_from=row["published_from"], input=MatchingInput.model_validate_json(row["input"]),
    )  # fmt: skip


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return out


@router.get("/programs/{program_id}/pool", tags=["runs"])
async def pool_summary(program_id: str, ctx: Ctx, _: Staff) -> dict[str, Any]:
    """Who matching knows about in this program (built from enrollment events), and who is grouped."""
    async with ctx.pool.acquire() as conn:
        if await repo.get_program(conn, program_id) is None:
            raise HTTPException(404, detail=f"no program {program_id}")
        return await repo.pool_counts(conn, program_id)


@router.get("/programs/{program_id}/runs", tags=["runs"])
async def list_runs(program_id: str, ctx: Ctx, _: Staff) -> list[dict[str, Any]]:
    async with ctx.pool.acquire() as conn:
        return [_run_view(r) for r in await repo.list_runs(conn, program_id)]


async def _run_or_404(ctx: ServiceContext, run_id: str) -> Any:
    async with ctx.pool.acquire() as conn:
        row = await repo.get_run(conn, run_id)
    if row is None:
        raise HTTPException(404, detail=f"no run {run_id}")
    return row


@router.get("/runs/{run_id}", tags=["runs"])
async def get_run(run_id: str, ctx: Ctx, _: Staff) -> dict[str, Any]:
    """Status, progress while running, then the summary: placed, unplaced by reason, fit, load, solver."""
    return _run_view(await _run_or_404(ctx, run_id))


@router.get("/runs/{run_id}/groups", tags=["runs"])
async def run_groups(
    run_id: str, ctx: Ctx, _: Staff, offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:  # fmt: skip
    """The run's groups, each with the contribution of every fit criterion (its explanation)."""
    row = await _run_or_404(ctx, run_id)
    result = json.loads(row["result"]) if row["result"] else {"groups": []}
    groups = result["groups"]
    return {"total": len(groups), "items": groups[offset : offset + limit]}


@router.get("/runs/{run_id}/unplaced", tags=["runs"])
async def run_unplaced(run_id: str, ctx: Ctx, _: Staff) -> dict[str, Any]:
    """Everyone not placed, with a concrete reason."""
    row = await _run_or_404(ctx, run_id)
    result = json.loads(row["result"]) if row["result"] else {"unplaced": []}
    return {"total": len(result["unplaced"]), "items": result["unplaced"]}


@router.get("/runs/{run_id}/explanations/{participant_id}", tags=["runs"])
async def explain(run_id: str, participant_id: str, ctx: Ctx, _: Staff) -> dict[str, Any]:
    """Why this person is where they are: their group and its fit, or the reason they were not placed,
    and their lottery rank (reproducible from the seed)."""
    row = await _run_or_404(ctx, run_id)
    result = json.loads(row["result"]) if row["result"] else None
    if result is None:
        raise HTTPException(409, detail=f"run {run_id} has no result ({row['status']})")
    rank = result["lottery"].get(participant_id)
    inp = MatchingInput.model_validate_json(row["input"]) if row["input"] else None
    overrides = overrides_about(inp, participant_id) if inp else []
    mentor = inp is not None and any(
        p.participant_id == participant_id and p.role is Role.MENTOR for p in inp.participants
    )
    if mentor:
        assert inp is not None
        placed = MatchingResult.model_validate(result)
        return {"participant_id": participant_id, **explain_mentor(inp, placed, participant_id),
                "overrides": overrides}  # fmt: skip
    for g in result["groups"]:
        if any(m["participant_id"] == participant_id for m in g["members"]):
            return {"participant_id": participant_id, "placed": True, "group": g, "lottery_rank": rank,
                    "overrides": overrides}  # fmt: skip
    for u in result["unplaced"]:
        if u["participant_id"] == participant_id:
            return {"participant_id": participant_id, "placed": False, **u, "lottery_rank": rank,
                    "overrides": overrides}  # fmt: skip
    raise HTTPException(404, detail=f"{participant_id} was not in run {run_id}")


@router.post("/programs/{program_id}/overrides", status_code=201, tags=["overrides"])
async def add_override(program_id: str, body: OverrideBody, ctx: Ctx, who: Admin) -> dict[str, Any]:
    """Record an admin override with its reason; the next runs (and dry runs) apply and count it.

    Moving a person is a ``lock_pair`` of that person and the mentor (or peer) they should join: a dry
    run shows the effect before anything is published."""
    first, second = body.participant_ids
    if first == second:
        raise _invalid("participant_ids", "an override needs two different participants")
    async with ctx.pool.acquire() as conn:
        if await repo.get_program(conn, program_id) is None:
            raise HTTPException(404, detail=f"no program {program_id}")
        missing = sorted(set(body.participant_ids) - await repo.active_in_pool(conn, program_id, [first, second]))
        if missing:
            raise _invalid("participant_ids", f"not enrolled in program {program_id}: {', '.join(missing)}")
        await _check_override_takes_effect(conn, program_id, body)
        oid = await repo.add_override(conn, program_id, body.kind.value, [first, second], body.reason, who.subject)
    return {"override_id": oid, **body.model_dump(mode="json")}


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


@router.get("/programs/{program_id}/overrides", tags=["overrides"])
async def list_overrides(program_id: str, ctx: Ctx, _: Admin) -> dict[str, Any]:
    """Every override of the program with who made it and why, revoked ones included (the audit trail).

    Admins only: a reason often names a personal conflict between two people."""
    async with ctx.pool.acquire() as conn:
        if await repo.get_program(conn, program_id) is None:
            raise HTTPException(404, detail=f"no program {program_id}")
        items = await repo.list_overrides(conn, program_id)
    return {"total": len(items), "items": [_override_view(o) for o in items]}


class RevokeBody(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


@router.post("/programs/{program_id}/overrides/{override_id}/revoke", tags=["overrides"])
async def revoke_override(
    program_id: str,
    override_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    body: RevokeBody,
    ctx: Ctx,
    who: Admin,
) -> dict[str, Any]:
    """Stop applying an override from the next run on; it stays on record with who revoked it and why."""
    async with ctx.pool.acquire() as conn:
        revoked = await repo.revoke_override(conn, program_id, override_id, body.reason, who.subject)
    if revoked is None:
        raise HTTPException(404, detail=f"no active override {override_id} in program {program_id}")
    return _override_view(revoked)


def _override_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **row,
        "participant_ids": list(row["participant_ids"]),
        "created_at": row["created_at"].isoformat(),
        "revoked_at": row["revoked_at"].isoformat() if row["revoked_at"] else None,
    }


def install(app: FastAPI) -> None:
    app.state.runs = set()
    app.state.on_stop.append(lambda: handlers.cancel_runs(app.state.runs))
