"""Metrics' HTTP API: KPIs, fairness audit, culture scorecard, risks, alerts, CSV export, thresholds.

Admins and ``integration`` read everything (integration read-only); only admins change thresholds.
Every figure comes with the number of people behind it (``n``); a figure from fewer than five people
has ``value`` and ``n`` null, ``suppressed`` true and ``display`` "< 5", and so has any cell hidden by
complementary suppression. No participant id is ever returned.

Windows: ``week`` = the 7 days before ``as_of``, ``month`` = the 30 days before it, ``program_to_date``
= everything before it (``as_of`` defaults to now). Flows (enrolments, sessions, answers) count inside
the window; stocks (active, placed, loads, relationship states) are taken at its end.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from contracts.policy import Form
from contracts.timestamps import InstantIn, UtcDateTime, rfc3339
from runtime.auth import ApiRole, Principal, require
from runtime.errors import error_responses
from runtime.service import ServiceContext, context
from services.metrics import handlers
from services.metrics.adapters import queries
from services.metrics.domain.fairness import MEASURES
from services.metrics.domain.report import FORMULAS, Section, WindowName
from services.metrics.domain.scorecard import as_section
from services.metrics.domain.suppression import Figure
from services.metrics.domain.thresholds import DEFAULT_THRESHOLDS, Thresholds

router = APIRouter()
Ctx = Annotated[ServiceContext, Depends(context)]
Admin = Annotated[Principal, Depends(require(ApiRole.ADMIN))]
Reader = Annotated[Principal, Depends(require(ApiRole.ADMIN, ApiRole.INTEGRATION))]


def formulas_text() -> str:
    lines = [f"- `{k}` ({f.label}): {f.formula}" for k, f in FORMULAS.items()]
    return "KPI formulas:\n\n" + "\n".join(lines)


def now(request: Request) -> datetime:
    clock: handlers.Clock = request.app.state.clock
    return clock()


WindowQ = Annotated[WindowName, Query(description="week (7 days), month (30 days) or program_to_date")]
AsOfQ = Annotated[InstantIn | None, Query(description="end of the window (default: now), RFC 3339 with a time zone")]


NOT_FOUND = error_responses(404)


class FigureOut(BaseModel):
    value: float | None = Field(description="null when suppressed or when there is nothing to measure")
    n: int | None = Field(description="people (or answers) behind the figure; null when suppressed")
    suppressed: bool
    display: str = Field(description="as shown on the page and in the CSV: '< 5' when suppressed")

    @classmethod
    def of(cls, f: Figure) -> FigureOut:
        return cls(value=f.value, n=None if f.suppressed else f.n, suppressed=f.suppressed, display=f.display)


class KpiOut(BaseModel):
    key: str
    label: str
    formula: str
    measurable: bool = Field(description="false when events cannot show it (the formula says why)")
    figure: FigureOut


class BreakdownOut(BaseModel):
    key: str
    label: str
    formula: str
    cells: dict[str, FigureOut]


class SectionOut(BaseModel):
    name: str
    kpis: list[KpiOut]
    breakdowns: list[BreakdownOut]

    @classmethod
    def of(cls, s: Section) -> SectionOut:
        return cls(
            name=s.name,
            kpis=[
                KpiOut(
                    key=k.key,
                    label=FORMULAS[k.key].label,
                    formula=FORMULAS[k.key].formula,
                    measurable=k.measurable,
                    figure=FigureOut.of(k.figure),
                )
                for k in s.kpis
            ],
            breakdowns=[
                BreakdownOut(
                    key=b.key,
                    label=FORMULAS[b.key].label,
                    formula=FORMULAS[b.key].formula,
                    cells={c: FigureOut.of(f) for c, f in b.cells.items()},
                )
                for b in s.breakdowns
            ],
        )


class WindowOut(BaseModel):
    name: WindowName
    start: UtcDateTime | None
    end: UtcDateTime


class KpiReportOut(BaseModel):
    scope: str = Field(examples=["program prg-1a2b3c"])
    window: WindowOut
    sections: list[SectionOut]


class FairnessCellOut(BaseModel):
    people: FigureOut
    measures: dict[str, FigureOut]


class DimensionOut(BaseModel):
    dimension: str = Field(examples=["department"])
    cells: dict[str, FairnessCellOut]
    gaps: dict[str, FigureOut] = Field(description="best - worst over visible cells, per measure")


class FairnessOut(BaseModel):
    scope: str
    window: WindowOut
    measures: dict[str, str] = Field(description="measure -> formula")
    dimensions: list[DimensionOut]


class HallmarkOut(BaseModel):
    hallmark: str
    indicator: str
    measurable: bool
    figure: FigureOut | None
    statement: str


class ScorecardOut(BaseModel):
    scope: str
    window: WindowOut
    hallmarks: list[HallmarkOut]


class RiskOut(BaseModel):
    group_id: str
    score: float = Field(description="0-100, the sum of its parts")
    parts: dict[str, float] = Field(description="overdue (0-40), slips (0-20), ratings (0-20), pairing_fit (0-20)")


class AlertOut(BaseModel):
    alert_id: str
    kind: str
    program_id: str
    group_id: str | None
    severity: str
    detail: str
    risk_score: float | None
    raised_at: UtcDateTime
    cleared_at: UtcDateTime | None

    @classmethod
    def of(cls, a: queries.AlertRow) -> AlertOut:
        return cls(**{k: getattr(a, k) for k in cls.model_fields})


class AlertEvaluationOut(BaseModel):
    """The safety nets' last evaluation. An evaluation's raises and clears are visible together with it,
    so a client that waits for ``evaluations`` to grow by two after a change of its own reads alerts that
    take the change into account (the first may have started before it)."""

    evaluations: int = Field(
        ge=0, description="evaluations completed since the service's schema was created", examples=[42]
    )
    as_of: UtcDateTime | None = Field(
        description="the instant the last evaluation judged (the service's clock)", examples=["2026-11-30T09:00:00Z"]
    )
    started_at: UtcDateTime | None = Field(
        description="when the last evaluation started reading", examples=["2026-11-30T09:00:00Z"]
    )
    finished_at: UtcDateTime | None = Field(
        description="when it committed its raises and clears", examples=["2026-11-30T09:00:03Z"]
    )
    raised: int = Field(ge=0, description="alerts the last evaluation raised", examples=[2])
    cleared: int = Field(ge=0, description="alerts the last evaluation cleared", examples=[1])

    @classmethod
    def of(cls, row: queries.EvaluationRow | None) -> AlertEvaluationOut:
        if row is None:
            return cls(evaluations=0, as_of=None, started_at=None, finished_at=None, raised=0, cleared=0)
        return cls(**{k: getattr(row, k) for k in cls.model_fields})


def _window(r: handlers.Report) -> WindowOut:
    return WindowOut(name=r.window.name, start=r.window.start, end=r.window.end)


async def _report(
    ctx: ServiceContext,
    request: Request,
    scope: handlers.Scope,
    window: WindowName,
    as_of: datetime | None,
    *,
    fairness: bool = True,
    culture: bool = True,
) -> handlers.Report:
    at = as_of or now(request)
    return await handlers.report(ctx.pool, scope, window, at, fairness=fairness, culture=culture)


def _kpis_out(r: handlers.Report) -> KpiReportOut:
    return KpiReportOut(scope=r.scope.label, window=_window(r), sections=[SectionOut.of(s) for s in r.sections])


def _fairness_out(r: handlers.Report) -> FairnessOut:
    return FairnessOut(
        scope=r.scope.label,
        window=_window(r),
        measures={m: FORMULAS[m].formula for m in MEASURES},
        dimensions=[
            DimensionOut(
                dimension=d.dimension,
                cells={
                    k: FairnessCellOut(
                        people=FigureOut.of(c.people), measures={m: FigureOut.of(f) for m, f in c.measures.items()}
                    )
                    for k, c in d.cells.items()
                },
                gaps={m: FigureOut.of(f) for m, f in d.gaps.items()},
            )
            for d in r.fairness
        ],
    )


def _scorecard_out(r: handlers.Report) -> ScorecardOut:
    return ScorecardOut(
        scope=r.scope.label,
        window=_window(r),
        hallmarks=[
            HallmarkOut(
                hallmark=h.hallmark,
                indicator=h.indicator,
                measurable=h.measurable,
                figure=FigureOut.of(h.figure) if h.figure else None,
                statement=h.statement,
            )
            for h in r.scorecard
        ],
    )


@router.get("/kpis", response_model=KpiReportOut, description=formulas_text())
async def org_kpis(
    ctx: Ctx, request: Request, _: Reader, window: WindowQ = WindowName.MONTH, as_of: AsOfQ = None
) -> KpiReportOut:
    """The organisation's KPIs for one window."""
    return _kpis_out(await _report(ctx, request, handlers.Scope(), window, as_of, fairness=False, culture=False))


@router.get("/forms/{form}/kpis", response_model=KpiReportOut, description=formulas_text())
async def form_kpis(
    form: Form, ctx: Ctx, request: Request, _: Reader, window: WindowQ = WindowName.MONTH, as_of: AsOfQ = None
) -> KpiReportOut:
    """The KPIs of every program of one form, together."""
    return _kpis_out(
        await _report(ctx, request, handlers.Scope(form=form.value), window, as_of, fairness=False, culture=False)
    )


@router.get(
    "/programs/{program_id}/kpis", response_model=KpiReportOut, responses=NOT_FOUND, description=formulas_text()
)
async def program_kpis(
    program_id: str, ctx: Ctx, request: Request, _: Reader, window: WindowQ = WindowName.MONTH, as_of: AsOfQ = None
) -> KpiReportOut:
    """One program's KPIs for one window."""
    return _kpis_out(
        await _report(ctx, request, handlers.Scope(program_id=program_id), window, as_of, fairness=False, culture=False)
    )


@router.get("/fairness", response_model=FairnessOut)
async def org_fairness(
    ctx: Ctx, request: Request, _: Reader, window: WindowQ = WindowName.PROGRAM_TO_DATE, as_of: AsOfQ = None
) -> FairnessOut:
    """Fairness audit of the organisation: match rate, time to match, fit and satisfaction by department,
    level and location, with the best-worst gap over visible cells; cells under 5 people are suppressed,
    with complementary suppression."""
    return _fairness_out(await _report(ctx, request, handlers.Scope(), window, as_of, culture=False))


@router.get("/programs/{program_id}/fairness", response_model=FairnessOut, responses=NOT_FOUND)
async def program_fairness(
    program_id: str,
    ctx: Ctx,
    request: Request,
    _: Reader,
    window: WindowQ = WindowName.PROGRAM_TO_DATE,
    as_of: AsOfQ = None,
) -> FairnessOut:
    """Fairness audit of one program (see ``GET /fairness``)."""
    return _fairness_out(
        await _report(ctx, request, handlers.Scope(program_id=program_id), window, as_of, culture=False)
    )


@router.get("/scorecard", response_model=ScorecardOut)
async def org_scorecard(
    ctx: Ctx, request: Request, _: Reader, window: WindowQ = WindowName.PROGRAM_TO_DATE, as_of: AsOfQ = None
) -> ScorecardOut:
    """The mentoring-culture scorecard: one indicator per hallmark, or why it cannot be measured."""
    return _scorecard_out(await _report(ctx, request, handlers.Scope(), window, as_of, fairness=False))


@router.get("/programs/{program_id}/scorecard", response_model=ScorecardOut, responses=NOT_FOUND)
async def program_scorecard(
    program_id: str,
    ctx: Ctx,
    request: Request,
    _: Reader,
    window: WindowQ = WindowName.PROGRAM_TO_DATE,
    as_of: AsOfQ = None,
) -> ScorecardOut:
    """One program's culture scorecard."""
    return _scorecard_out(
        await _report(ctx, request, handlers.Scope(program_id=program_id), window, as_of, fairness=False)
    )


@router.get("/programs/{program_id}/risks", response_model=list[RiskOut], responses=NOT_FOUND)
async def program_risks(program_id: str, ctx: Ctx, request: Request, _: Reader, as_of: AsOfQ = None) -> list[RiskOut]:
    """Risk score of every open relationship of the program, highest first, with the parts that add up to
    it (see the risk formula in the service's README section)."""
    found = await handlers.risks(ctx.pool, program_id, as_of or now(request))
    return [RiskOut(group_id=r.group_id, score=r.risk.score, parts=r.risk.parts) for r in found]


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(
    ctx: Ctx,
    _: Reader,
    status: Annotated[str, Query(pattern="^(open|all)$", description="open, or all (history)")] = "open",
    program_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AlertOut]:
    """Alerts raised by the safety nets, newest first: the open ones, or the history with clearings.
    A mentor's alert names no one here (the event carries the mentor id to HR systems)."""
    async with ctx.pool.acquire() as conn:
        rows = await queries.alerts(conn, open_only=status == "open", program_id=program_id, limit=limit)
    return [AlertOut.of(a) for a in rows]


@router.get("/alerts/evaluation", response_model=AlertEvaluationOut)
async def last_alert_evaluation(ctx: Ctx, _: Reader) -> AlertEvaluationOut:
    """How many times the safety nets have been evaluated, and the last evaluation's times and counts
    (they run every ``METRICS_EVALUATE_EVERY_SECONDS``, 60 by default)."""
    async with ctx.pool.acquire() as conn:
        return AlertEvaluationOut.of(await queries.last_evaluation(conn))


@router.get("/programs/{program_id}/thresholds", response_model=Thresholds)
async def get_thresholds(program_id: str, ctx: Ctx, _: Reader) -> Thresholds:
    """The program's alert thresholds (the defaults until an admin sets them)."""
    async with ctx.pool.acquire() as conn:
        return (await queries.thresholds(conn)).get(program_id, DEFAULT_THRESHOLDS)


@router.put("/programs/{program_id}/thresholds", response_model=Thresholds)
async def put_thresholds(program_id: str, body: Thresholds, ctx: Ctx, _: Admin) -> Thresholds:
    """Set the program's alert thresholds (every field; omitted ones take their defaults)."""
    async with ctx.pool.acquire() as conn:
        await queries.set_thresholds(conn, program_id, body)
    return body


CSV_COLUMNS = ["scope", "window", "window_end", "section", "kpi", "cell", "measure", "value", "people"]


def csv_rows(r: handlers.Report) -> list[list[str]]:
    """Every figure of a report as rows: suppressed ones show '< 5' and an empty people column."""
    head = [r.scope.label, r.window.name.value, rfc3339(r.window.end)]

    def row(section: str, kpi: str, cell: str, measure: str, f: Figure) -> list[str]:
        return [*head, section, kpi, cell, measure, f.display, "" if f.suppressed else str(f.n)]

    rows = []
    for s in [*r.sections, as_section(r.scorecard)]:
        rows += [row(s.name, k.key, "", "", k.figure) for k in s.kpis]
        rows += [row(s.name, b.key, cell, "", f) for b in s.breakdowns for cell, f in b.cells.items()]
    for d in r.fairness:
        for cell, c in d.cells.items():
            rows.append(row("fairness", d.dimension, cell, "people", c.people))
            rows += [row("fairness", d.dimension, cell, m, f) for m, f in c.measures.items()]
        rows += [row("fairness", d.dimension, "gap", m, f) for m, f in d.gaps.items()]
    return rows


_CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "one row per figure, with a header line",
        "content": {"text/csv": {"schema": {"type": "string", "examples": [",".join(CSV_COLUMNS)]}}},
    }
}


@router.get("/kpis.csv", response_class=Response, responses={**_CSV, **NOT_FOUND})
async def export_csv(
    ctx: Ctx,
    request: Request,
    _: Reader,
    window: WindowQ = WindowName.MONTH,
    as_of: AsOfQ = None,
    program_id: str | None = None,
    form: Form | None = None,
) -> Response:
    """KPIs, scorecard and fairness audit as CSV for HR reporting (organisation, one form with ``form``, or
    one program with ``program_id``); columns: scope, window, window_end, section, kpi, cell, measure,
    value, people. Suppressed figures read '< 5' with no people count."""
    scope = handlers.Scope(program_id=program_id, form=form.value if form and not program_id else None)
    r = await _report(ctx, request, scope, window, as_of)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(r))
    name = f"kpis-{program_id or (form.value if form else 'organisation')}-{window.value}.csv"
    return Response(
        out.getvalue(), media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(handlers.NotFound)
    async def not_found(request: Request, exc: handlers.NotFound) -> JSONResponse:
        where = "path" if request.url.path.startswith("/programs/") else "query"
        loc = [where, exc.field]
        return JSONResponse({"detail": [{"loc": loc, "msg": str(exc), "type": "not_found"}]}, status_code=404)
