"""Metrics' use cases: read the facts, compute (domain), and for alerts store the decision with its
events in one transaction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from services.metrics.adapters import aggregates, alert_store, queries, states
from services.metrics.adapters.sql import snapshot
from services.metrics.domain.alerts import (
    AlertKey,
    Condition,
    MentorState,
    ProgramPlacement,
    decide,
    wanted,
)
from services.metrics.domain.facts import Facts
from services.metrics.domain.fairness import DimensionAudit, audit
from services.metrics.domain.kpis import at_risk, kpis
from services.metrics.domain.relationships import relationship_states
from services.metrics.domain.report import Section, Window, WindowName
from services.metrics.domain.risk import Risk, risk
from services.metrics.domain.scorecard import Hallmark, scorecard
from services.metrics.domain.suppression import Figure
from services.metrics.domain.tallies import Tallies
from services.metrics.domain.tally import (
    active_seekers,
    first_placement,
    mentor_capacities,
    mentor_loads,
    recent,
    tally,
)
from services.metrics.domain.thresholds import Thresholds
from services.metrics.domain.trends import WeekPoint, funnel, load_histogram, weekly

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class NotFound(Exception):
    def __init__(self, what: str, field: str) -> None:
        super().__init__(what)
        self.field = field


@dataclass(frozen=True)
class Scope:
    """The organisation (both None), one form, or one program."""

    program_id: str | None = None
    form: str | None = None

    @property
    def label(self) -> str:
        return f"program {self.program_id}" if self.program_id else f"form {self.form}" if self.form else "organisation"

    def narrow(self, facts: Facts) -> Facts:
        if self.program_id is not None:
            if not any(p.program_id == self.program_id for p in facts.programs):
                raise NotFound(f"no program {self.program_id}", "program_id")
            return facts.only({self.program_id})
        if self.form is not None:
            return facts.only({p.program_id for p in facts.programs if p.form == self.form})
        return facts


@dataclass(frozen=True)
class Report:
    scope: Scope
    window: Window
    sections: list[Section]
    fairness: list[DimensionAudit]
    scorecard: list[Hallmark]


@dataclass(frozen=True)
class RelationshipRisk:
    group_id: str
    program_id: str
    risk: Risk


@dataclass(frozen=True)
class Loaded:
    facts: Facts
    limits: dict[str, Thresholds]
    open_alerts: list[queries.AlertRow]


async def _load(pool: asyncpg.Pool, scope: Scope | None = None) -> Loaded:
    """The facts of ``scope`` (everything without one)."""
    async with pool.acquire() as conn:
        ids: list[str] | None = None
        if scope is not None and scope.program_id is not None:
            ids = [scope.program_id]
        elif scope is not None and scope.form is not None:
            ids = await queries.program_ids(conn, scope.form)
        facts = await queries.load_facts(conn, ids)
        limits = await queries.thresholds(conn)
        open_alerts = await queries.alerts(conn, open_only=True, limit=1_000_000)
    return Loaded(facts, limits, open_alerts)


def _report(
    loaded: Loaded, scope: Scope, window: WindowName, as_of: datetime, *, fairness: bool = True, culture: bool = True
) -> Report:
    """The report from loaded facts (the dashboard's path: it needs the facts for its series anyway)."""
    narrowed = scope.narrow(loaded.facts)
    w = Window.ending(window, as_of)
    programs = {p.program_id for p in narrowed.programs}
    open_alerts = sum(1 for a in loaded.open_alerts if a.program_id in programs)
    return report_from_tallies(
        tally(narrowed, w, with_fairness=fairness), scope, w, loaded.limits, open_alerts, culture=culture
    )


def report_from_tallies(
    t: Tallies, scope: Scope, w: Window, limits: dict[str, Thresholds], open_alerts: int, *, culture: bool
) -> Report:
    """The KPIs, and the fairness audit and the culture scorecard when their tallies are there."""
    sections = kpis(t, w, limits)
    fair = audit(t.fairness)
    if not culture:
        return Report(scope, w, sections, fair, [])
    risky = sum(1 for r in t.engagement.open_relationships if at_risk(r, w.end, limits))
    return Report(scope, w, sections, fair, scorecard(t.accountability, sections, open_alerts, risky))


async def _scope_ids(conn: asyncpg.Connection, scope: Scope) -> list[str] | None:
    """The scope's program ids (None for the organisation); an unknown program is :class:`NotFound`."""
    if scope.program_id is not None:
        if not await queries.program_exists(conn, scope.program_id):
            raise NotFound(f"no program {scope.program_id}", "program_id")
        return [scope.program_id]
    if scope.form is not None:
        return await queries.program_ids(conn, scope.form)
    return None


async def report(
    pool: asyncpg.Pool,
    scope: Scope,
    window: WindowName,
    as_of: datetime,
    *,
    fairness: bool = True,
    culture: bool = True,
) -> Report:
    """The report the API serves: tallies counted by SQL aggregates, formulas in the domain."""
    w = Window.ending(window, as_of)
    async with pool.acquire() as conn:
        ids = await _scope_ids(conn, scope)
        t = await aggregates.tallies(conn, ids, w, with_fairness=fairness)
        limits = await queries.thresholds(conn)
        open_alerts = await queries.open_alert_count(conn, ids) if culture else 0
    return report_from_tallies(t, scope, w, limits, open_alerts, culture=culture)


async def risks(pool: asyncpg.Pool, program_id: str, at: datetime) -> list[RelationshipRisk]:
    """The risk of every open relationship of a program, highest first (states read by SQL)."""
    async with pool.acquire() as conn:
        ids = await _scope_ids(conn, Scope(program_id=program_id))
        async with snapshot(conn):
            found = await states.open_relationships(conn, (ids, None, at))
    scored = [RelationshipRisk(r.state.group_id, r.state.program_id, risk(r.state, at)) for r in found]
    return sorted(scored, key=lambda r: (-r.risk.score, r.group_id))


def conditions(facts: Facts, limits: dict[str, Thresholds], now: datetime) -> list[Condition]:
    """Every alert that should be open now, from loaded facts: the reference the SQL path is tested against."""
    states = [recent(s) for s in relationship_states(facts, now).values()]
    return wanted(states, _mentor_states(facts, now), _placements(facts, now), limits, now)


def _mentor_states(facts: Facts, now: datetime) -> list[MentorState]:
    programs: dict[str, list[str]] = {}
    for p in facts.participants:
        if p.role == "mentor" and p.active_at(now):
            programs.setdefault(p.participant_id, []).append(p.program_id)
    load: dict[str, int] = {}
    spread: dict[str, set[str]] = {}
    for g in facts.groups:
        if g.open_at(now):
            for m in g.mentors():
                load[m] = load.get(m, 0) + 1
                spread.setdefault(m, set()).add(g.program_id)
    capacity = mentor_capacities(facts)
    return [
        MentorState(m, tuple(sorted(ps)), load.get(m, 0), capacity.get(m), len(spread.get(m, ())))
        for m, ps in programs.items()
    ]


def _placements(facts: Facts, now: datetime) -> list[ProgramPlacement]:
    found = []
    first = first_placement(facts)
    for program in facts.programs:
        if program.status != "open":
            continue
        seekers = [p for p in active_seekers(facts, now) if p.program_id == program.program_id]
        placed = sum(1 for p in seekers if first.get((p.program_id, p.participant_id), now) < now)
        has_run = any(r.completed_at <= now for r in facts.runs if r.program_id == program.program_id)
        found.append(ProgramPlacement(program.program_id, len(seekers), placed, has_run))
    return found


async def conditions_now(conn: asyncpg.Connection, limits: dict[str, Thresholds], now: datetime) -> list[Condition]:
    """The same from SQL aggregates, in one snapshot: what the schedule runs (no facts loaded)."""
    async with snapshot(conn):
        relationships = [r.state for r in await states.open_relationships(conn, (None, None, now))]
        mentors = await states.mentor_states(conn, now)
        placements = await states.placements(conn, now)
    return wanted(relationships, mentors, placements, limits, now)


@dataclass(frozen=True)
class Evaluation:
    raised: int
    cleared: int


async def evaluate_alerts(pool: asyncpg.Pool, now: datetime) -> Evaluation:
    """Raise what should be open, clear what should not, in one transaction with their events and the
    evaluation's record (``GET /alerts/evaluation``)."""
    started_at = datetime.now(UTC)
    async with pool.acquire() as conn:
        limits = await queries.thresholds(conn)
        should = await conditions_now(conn, limits, now)
    async with pool.acquire() as conn, conn.transaction():
        if not await alert_store.lock_evaluation(conn):
            return Evaluation(0, 0)
        open_rows = {(a.kind, a.subject): a for a in await queries.alerts(conn, open_only=True, limit=1_000_000)}
        decision = decide(should, [AlertKey(k, s) for k, s in open_rows])
        await alert_store.raise_alerts(conn, decision.raise_, now)
        await alert_store.clear_alerts(conn, [open_rows[(k.kind, k.subject)] for k in decision.clear], now)
        await alert_store.record_evaluation(conn, now, started_at, len(decision.raise_), len(decision.clear))
    if decision.raise_ or decision.clear:
        log.info("alerts evaluated", extra={"raised": len(decision.raise_), "cleared": len(decision.clear)})
    return Evaluation(len(decision.raise_), len(decision.clear))


async def evaluate_forever(pool: asyncpg.Pool, clock: Clock, every_seconds: float) -> None:
    """The schedule: evaluate, wait, repeat; a failed evaluation is logged and tried again next time."""
    while True:
        try:
            await evaluate_alerts(pool, clock())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("alert evaluation failed, will retry", extra={"error_type": type(exc).__name__})
        await asyncio.sleep(every_seconds)


@dataclass(frozen=True)
class DashboardData:
    report: Report
    programs: list[tuple[str, str]]
    """(program id, name) of the scope, for links"""
    funnel: dict[str, Figure]
    weeks: list[WeekPoint]
    loads: dict[str, Figure]
    alerts: list[tuple[queries.AlertRow, Risk | None]]


async def dashboard(pool: asyncpg.Pool, scope: Scope, as_of: datetime) -> DashboardData:
    loaded = await _load(pool, scope)
    narrowed = scope.narrow(loaded.facts)
    r = _report(loaded, scope, WindowName.PROGRAM_TO_DATE, as_of)
    states = relationship_states(narrowed, as_of)
    programs = {p.program_id for p in narrowed.programs}
    open_alerts = [a for a in loaded.open_alerts if a.program_id in programs]
    return DashboardData(
        report=r,
        programs=sorted((p.program_id, p.name) for p in narrowed.programs),
        funnel=funnel(narrowed, as_of),
        weeks=weekly(narrowed, as_of),
        loads=load_histogram(mentor_loads(narrowed, as_of)),
        alerts=[(a, risk(states[a.group_id], as_of) if a.group_id in states else None) for a in open_alerts],
    )
