"""The states the safety nets judge (and the KPIs' relationship cells count), read by SQL aggregates:
every open relationship with what its risk score needs, every active mentor across programs, and every
open program's placement. The domain decides from them (:func:`services.metrics.domain.alerts.wanted`);
a test holds them equal to the states built from the facts.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.metrics.adapters.sql import GROUPS, SEEKERS, active, scope, statement
from services.metrics.domain.alerts import MentorState, ProgramPlacement
from services.metrics.domain.risk import HISTORY, RelationshipState
from services.metrics.domain.tallies import OpenRelationship


def _last_answers(column: str) -> str:
    """Each open group's last :data:`HISTORY` answers of one measure, oldest first, as an array."""
    return f"""
    SELECT x.group_id, array_agg(x.v ORDER BY x.given_at, x.feedback_id) AS v FROM (
        SELECT f.group_id, f.{column} AS v, f.given_at, f.feedback_id,
            row_number() OVER (PARTITION BY f.group_id ORDER BY f.given_at DESC, f.feedback_id DESC) AS k
        FROM feedback f JOIN open_groups o ON o.group_id = f.group_id
        WHERE {scope("f.program_id")} AND f.given_at <= $3 AND f.{column} IS NOT NULL) x
    WHERE x.k <= {HISTORY} GROUP BY x.group_id"""


OPEN_RELATIONSHIPS = statement(f"""
WITH {GROUPS},
open_groups AS (SELECT * FROM all_groups g WHERE {scope("g.program_id")} AND g.is_open),
last AS (
    SELECT s.group_id, max(s.held_at) AS held_at FROM sessions_held s JOIN open_groups o ON o.group_id = s.group_id
    WHERE {scope("s.program_id")} AND s.held_at <= $3 GROUP BY s.group_id),
slipped AS (
    SELECT x.group_id, count(*) AS n FROM slips x JOIN open_groups o ON o.group_id = x.group_id
    LEFT JOIN last ON last.group_id = x.group_id
    WHERE {scope("x.program_id")} AND x.at <= $3 AND (last.held_at IS NULL OR x.at > last.held_at)
    GROUP BY x.group_id),
ratings AS ({_last_answers("session_rating")}),
fits AS ({_last_answers("pairing_fit")}),
roster AS (
    SELECT m.group_id, array_agg(m.participant_id) AS members FROM members m
    JOIN open_groups o ON o.group_id = m.group_id GROUP BY m.group_id)
SELECT o.group_id, o.program_id, o.matched_at, o.cadence, last.held_at AS last_held_at, COALESCE(slipped.n, 0) AS slips,
    COALESCE(ratings.v, '{{}}') AS ratings, COALESCE(fits.v, '{{}}') AS pairing_fit,
    COALESCE(roster.members, '{{}}') AS members
FROM open_groups o LEFT JOIN last ON last.group_id = o.group_id LEFT JOIN slipped ON slipped.group_id = o.group_id
LEFT JOIN ratings ON ratings.group_id = o.group_id LEFT JOIN fits ON fits.group_id = o.group_id
LEFT JOIN roster ON roster.group_id = o.group_id""")
"""Every relationship of the scope open at the end, with what its risk score and safety nets need: the
last session held, the slips since, the last six session ratings and pairing-fit answers (oldest first)
and its members."""


async def open_relationships(conn: asyncpg.Connection, args: tuple[object, ...]) -> list[OpenRelationship]:
    """Every relationship of the scope open at ``$3``, with what its risk score needs, by group id."""
    rows = sorted(await conn.fetch(OPEN_RELATIONSHIPS, *args), key=lambda r: r["group_id"])
    return [
        OpenRelationship(
            RelationshipState(
                group_id=r["group_id"],
                program_id=r["program_id"],
                cadence_days=r["cadence"],
                matched_at=r["matched_at"],
                last_held_at=r["last_held_at"],
                slips_since_last_held=r["slips"],
                ratings=tuple(r["ratings"]),
                pairing_fit=tuple(r["pairing_fit"]),
            ),
            tuple(sorted(r["members"])),
        )
        for r in rows
    ]


MENTOR_STATES = statement(f"""
WITH {GROUPS},
mentors AS (
    SELECT p.participant_id, array_agg(p.program_id ORDER BY p.program_id) AS programs FROM participants p
    WHERE p.role = 'mentor' AND {active("p")} GROUP BY p.participant_id),
carried AS (
    SELECT m.participant_id, count(*) AS n, count(DISTINCT g.program_id) AS spread
    FROM members m JOIN all_groups g ON g.group_id = m.group_id
    WHERE m.role = 'mentor' AND g.is_open GROUP BY m.participant_id),
capacity AS (
    SELECT DISTINCT ON (p.participant_id) p.participant_id, p.capacity FROM participants p WHERE p.role = 'mentor'
    ORDER BY p.participant_id, p.enrolled_at DESC)
SELECT mentors.participant_id, mentors.programs, COALESCE(c.n, 0) AS load, COALESCE(c.spread, 0) AS spread,
    capacity.capacity
FROM mentors LEFT JOIN carried c ON c.participant_id = mentors.participant_id
LEFT JOIN capacity ON capacity.participant_id = mentors.participant_id""")
"""Every active mentor at ``$3`` (every program): their programs, load, its spread and capacity."""


async def mentor_states(conn: asyncpg.Connection, at: datetime) -> list[MentorState]:
    return [
        MentorState(r["participant_id"], tuple(sorted(r["programs"])), r["load"], r["capacity"], r["spread"])
        for r in await conn.fetch(MENTOR_STATES, None, None, at)
    ]


PLACEMENTS = statement(f"""
WITH {SEEKERS}
SELECT pr.program_id, count(s.participant_id) AS seekers, count(*) FILTER (WHERE s.placed) AS placed,
    EXISTS (SELECT 1 FROM runs r WHERE r.program_id = pr.program_id AND r.completed_at <= $3) AS has_run
FROM programs pr LEFT JOIN seekers s ON s.program_id = pr.program_id
WHERE pr.status = 'open' GROUP BY pr.program_id""")
"""Every open program's active mentees and peers at ``$3``, those placed, and whether a run completed."""


async def placements(conn: asyncpg.Connection, at: datetime) -> list[ProgramPlacement]:
    return [
        ProgramPlacement(r["program_id"], r["seekers"], r["placed"], r["has_run"])
        for r in await conn.fetch(PLACEMENTS, None, None, at)
    ]
