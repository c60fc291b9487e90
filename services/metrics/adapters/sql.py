"""The SQL fragments the metrics statements share: a scope, a window, an active enrolment, the state of
every group at a moment, and each person's first placement, each written once.

Every statement takes ``$1`` the scope's program ids (NULL: the organisation), ``$2`` the window's start
(NULL: since the beginning) and ``$3`` its end (or the moment judged); :func:`statement` types the three
whichever a statement uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


def scope(column: str) -> str:
    """``Facts.only``: in one of the scope's programs (a short array: ``= ANY`` is cheap), or anywhere."""
    return f"($1::text[] IS NULL OR {column} = ANY($1::text[]))"


def in_window(column: str) -> str:
    """``Window.contains``: inside [start, end)."""
    return f"({column} < $3 AND ($2::timestamptz IS NULL OR {column} >= $2))"


def active(p: str, at: str = "$3") -> str:
    """``ParticipantFact.active_at``: enrolled by then and not withdrawn by then."""
    return f"({p}.enrolled_at <= {at} AND ({p}.withdrawn_at IS NULL OR {p}.withdrawn_at > {at}))"


LAST_CLOSURE = """last_closure AS (
    SELECT DISTINCT ON (c.group_id) c.group_id, NULLIF(c.reason, 'renewed') AS closure, c.closed_at
    FROM closures c WHERE c.closed_at <= $3 ORDER BY c.group_id, c.closed_at DESC)"""
"""``GroupFact.closed_by($3)`` of every group that has one: the latest closure at or before the end, whose
``closure`` is NULL for a renewal (the relationship goes on as its next term)."""

GROUPS = f"""{LAST_CLOSURE},
all_groups AS (
    SELECT g.group_id, g.program_id, g.fit, g.matched_at,
        COALESCE(NULLIF(e.cadence_days, 0), g.cadence_days) AS cadence, e.cadence_days IS NOT NULL AS agreed,
        lc.closure, lc.closed_at AS closure_at, g.matched_at <= $3 AND lc.closure IS NULL AS is_open
    FROM groups g LEFT JOIN expectations e ON e.group_id = g.group_id
    LEFT JOIN last_closure lc ON lc.group_id = g.group_id)"""
"""Every group with its cadence (the agreed one, else the program's), the closure in force at the end, and
whether it is open then (``GroupFact.open_at($3)``); ``WITH`` it and filter by scope where it matters."""


def statement(body: str) -> str:
    """A statement with its three parameters typed, whichever it uses."""
    typed = "WITH params AS (SELECT $1::text[] AS scope, $2::timestamptz AS start, $3::timestamptz AS stop)"
    body = body.strip()
    return f"{typed}, {body[5:]}" if body.startswith("WITH ") else f"{typed} {body}"


def days(later: str, earlier: str) -> str:
    """Days between two times as Python's ``timedelta.total_seconds() / 86400`` gives them."""
    return f"(EXTRACT(EPOCH FROM ({later} - {earlier}))::float8 / 86400)"


FIRST_PLACEMENT = f"""first_placed AS (
    SELECT g.program_id, m.participant_id, min(g.matched_at) AS at
    FROM groups g JOIN members m ON m.group_id = g.group_id
    WHERE {scope("g.program_id")} GROUP BY 1, 2)"""


SEEKERS = f"""{FIRST_PLACEMENT},
seekers AS (
    SELECT p.*, f.at AS first_at, COALESCE(f.at < $3, false) AS placed
    FROM participants p LEFT JOIN first_placed f ON f.program_id = p.program_id AND f.participant_id = p.participant_id
    WHERE {scope("p.program_id")} AND p.role <> 'mentor' AND {active("p")})"""


@asynccontextmanager
async def snapshot(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """One read-only repeatable-read snapshot for a report's or an evaluation's statements, planned for
    the values they run with. asyncpg prepares every statement, and after five executions PostgreSQL may
    switch to a generic plan that ignores the window and the scope: on a demo database of many programs
    the sixth alert evaluation's state query went from 3 s to more than 60 s, and the schedule stalled."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
        yield
