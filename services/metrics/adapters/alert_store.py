"""Raising and clearing alerts: the state row and its event commit together (transactional outbox)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from contracts.envelope import Envelope
from contracts.events import AlertClearedV2, AlertKindV2, AlertRaisedV2
from runtime.outbox import add_to_outbox
from services.metrics.adapters.queries import AlertRow
from services.metrics.domain.alerts import Condition

EVALUATION_LOCK = "metrics:alert-evaluation"


async def lock_evaluation(conn: asyncpg.Connection) -> bool:
    """One evaluator at a time across replicas (transaction-scoped); False = another one is running."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", EVALUATION_LOCK))


async def record_evaluation(
    conn: asyncpg.Connection, as_of: datetime, started_at: datetime, raised: int, cleared: int
) -> None:
    """Counts the evaluation and keeps its times, in the transaction of its raises and clears."""
    await conn.execute(
        "INSERT INTO alert_evaluation (evaluations, as_of, started_at, finished_at, raised, cleared)"
        " VALUES (1, $1, $2, clock_timestamp(), $3, $4) ON CONFLICT (only_row) DO UPDATE SET"
        " evaluations = alert_evaluation.evaluations + 1, as_of = $1, started_at = $2,"
        " finished_at = clock_timestamp(), raised = $3, cleared = $4",
        as_of, started_at, raised, cleared,
    )  # fmt: skip


async def raise_alerts(conn: asyncpg.Connection, conditions: list[Condition], now: datetime) -> list[Envelope]:
    envelopes = []
    for c in conditions:
        alert_id = f"alr-{uuid.uuid4().hex[:16]}"
        await conn.execute(
            "INSERT INTO alerts (alert_id, kind, subject, program_id, group_id, mentor_id, severity, detail,"
            " risk_score, raised_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            alert_id, c.key.kind, c.key.subject, c.program_id, c.group_id, c.mentor_id, c.severity, c.detail,
            c.risk_score, now,
        )  # fmt: skip
        envelopes.append(
            Envelope(
                data=AlertRaisedV2(
                    alert_id=alert_id,
                    program_id=c.program_id,
                    group_id=c.group_id,
                    mentor_id=c.mentor_id,
                    kind=AlertKindV2(c.key.kind),
                    severity=c.severity,
                    detail=c.detail,
                    risk_score=c.risk_score,
                    raised_at=now,
                )
            )
        )
    await add_to_outbox(conn, *envelopes)
    return envelopes


async def clear_alerts(conn: asyncpg.Connection, rows: list[AlertRow], now: datetime) -> list[Envelope]:
    envelopes = []
    for row in rows:
        await conn.execute("UPDATE alerts SET cleared_at=$2 WHERE alert_id=$1", row.alert_id, now)
        envelopes.append(
            Envelope(
                data=AlertClearedV2(
                    alert_id=row.alert_id,
                    program_id=row.program_id,
                    group_id=row.group_id,
                    mentor_id=row.mentor_id,
                    kind=AlertKindV2(row.kind),
                    cleared_at=now,
                )
            )
        )
    await add_to_outbox(conn, *envelopes)
    return envelopes
