"""The tallies of a scope and a window, counted by PostgreSQL: what a KPI request runs.

Each function is one statement that returns the counts, sums and quantiles of one section, so a request
on a 50,000-person program moves a few rows into Python instead of every enrolment, group, session
and answer. The statements say in SQL what :mod:`services.metrics.domain.tally` says in Python (the
reference; a test holds the two equal on a fixture that exercises every rule), and the formulas that
turn tallies into figures stay in the domain. Only the open relationships come back one row each,
with what their risk scores need, because the risk score is the domain's.

Every statement takes ``$1`` the scope's program ids (NULL: the organisation), ``$2`` the window's
start (NULL: since the beginning) and ``$3`` its end, and runs in one repeatable-read snapshot.
"""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from services.metrics.domain.alerts import MentorState, ProgramPlacement
from services.metrics.domain.report import Window
from services.metrics.domain.risk import HISTORY, RelationshipState
from services.metrics.domain.stats import DETRACTOR, PROMOTER
from services.metrics.domain.tallies import (
    CLOSED_OUTCOMES,
    ROLES,
    UNPLACED_REASONS,
    Accountability,
    Engagement,
    FairnessCell,
    Matching,
    OpenRelationship,
    Outcomes,
    Participation,
    Tallies,
)
from services.metrics.domain.tally import AGREE, DIMENSIONS


def _scope(column: str) -> str:
    return f"($1::text[] IS NULL OR {column} = ANY($1::text[]))"


def _in_window(column: str) -> str:
    """``Window.contains``: inside [start, end)."""
    return f"({column} < $3 AND ($2::timestamptz IS NULL OR {column} >= $2))"


def _active(p: str, at: str = "$3") -> str:
    """``ParticipantFact.active_at``: enrolled by then and not withdrawn by then."""
    return f"({p}.enrolled_at <= {at} AND ({p}.withdrawn_at IS NULL OR {p}.withdrawn_at > {at}))"


_LAST_CLOSURE = """last_closure AS (
    SELECT DISTINCT ON (c.group_id) c.group_id, NULLIF(c.reason, 'renewed') AS closure, c.closed_at
    FROM closures c WHERE c.closed_at <= $3 ORDER BY c.group_id, c.closed_at DESC)"""
"""``GroupFact.closed_by($3)`` of every group that has one: the latest closure at or before the end, whose
``closure`` is NULL for a renewal (the relationship goes on as its next term)."""

_GROUPS = f"""{_LAST_CLOSURE},
all_groups AS (
    SELECT g.group_id, g.program_id, g.fit, g.matched_at,
        COALESCE(NULLIF(e.cadence_days, 0), g.cadence_days) AS cadence, e.cadence_days IS NOT NULL AS agreed,
        lc.closure, lc.closed_at AS closure_at, g.matched_at <= $3 AND lc.closure IS NULL AS is_open
    FROM groups g LEFT JOIN expectations e ON e.group_id = g.group_id
    LEFT JOIN last_closure lc ON lc.group_id = g.group_id)"""
"""Every group with its cadence (the agreed one, else the program's), the closure in force at the end, and
whether it is open then (``GroupFact.open_at($3)``); ``WITH`` it and filter by scope where it matters."""


def _statement(body: str) -> str:
    """A statement with its three parameters typed, whichever it uses."""
    typed = "WITH params AS (SELECT $1::text[] AS scope, $2::timestamptz AS start, $3::timestamptz AS stop)"
    body = body.strip()
    return f"{typed}, {body[5:]}" if body.startswith("WITH ") else f"{typed} {body}"


def _days(later: str, earlier: str) -> str:
    """Days between two times as Python's ``timedelta.total_seconds() / 86400`` gives them."""
    return f"(EXTRACT(EPOCH FROM ({later} - {earlier}))::float8 / 86400)"


_FIRST_PLACEMENT = f"""first_placed AS (
    SELECT g.program_id, m.participant_id, min(g.matched_at) AS at
    FROM groups g JOIN members m ON m.group_id = g.group_id
    WHERE {_scope("g.program_id")} GROUP BY 1, 2)"""

PARTICIPATION = _statement(f"""
WITH {_GROUPS},
sp AS (SELECT * FROM participants p WHERE {_scope("p.program_id")}),
people AS (SELECT DISTINCT sp.participant_id FROM sp WHERE {_active("sp")}),
relationships AS (
    SELECT m.participant_id FROM people JOIN members m ON m.participant_id = people.participant_id
    JOIN all_groups g ON g.group_id = m.group_id WHERE g.is_open
    GROUP BY m.participant_id HAVING count(*) >= 2),
programs AS (
    SELECT p.participant_id FROM people JOIN participants p ON p.participant_id = people.participant_id
    WHERE {_active("p")} GROUP BY p.participant_id HAVING count(*) >= 2),
mentee_since AS (
    SELECT p.participant_id, min(p.enrolled_at) AS since FROM participants p
    WHERE p.role = 'mentee' AND p.participant_id IN (SELECT participant_id FROM sp WHERE role = 'mentor')
    GROUP BY p.participant_id)
SELECT
    count(*) FILTER (WHERE sp.role = 'mentor' AND {_in_window("sp.enrolled_at")}) AS mentor,
    count(*) FILTER (WHERE sp.role = 'mentee' AND {_in_window("sp.enrolled_at")}) AS mentee,
    count(*) FILTER (WHERE sp.role = 'peer' AND {_in_window("sp.enrolled_at")}) AS peer,
    count(*) FILTER (WHERE {_active("sp")}) AS active,
    count(*) FILTER (WHERE {_active("sp")} AND sp.role = 'mentor') AS active_mentors,
    count(*) FILTER (WHERE {_active("sp")} AND sp.role = 'mentee') AS active_mentees,
    (SELECT count(*) FROM relationships) AS several_relationships,
    (SELECT count(*) FROM programs) AS several_programs,
    (SELECT count(DISTINCT b.participant_id) FROM sp b JOIN mentee_since ms ON ms.participant_id = b.participant_id
     WHERE b.role = 'mentor' AND {_in_window("b.enrolled_at")} AND ms.since < b.enrolled_at) AS became,
    count(*) FILTER (WHERE {_in_window("sp.withdrawn_at")}) AS withdrawn
FROM sp""")


async def participation(conn: asyncpg.Connection, args: tuple[object, ...]) -> Participation:
    r = await conn.fetchrow(PARTICIPATION, *args)
    return Participation(
        enrolled_by_role={role: r[role] for role in ROLES},
        active=r["active"],
        active_mentors=r["active_mentors"],
        active_mentees=r["active_mentees"],
        in_several_relationships=r["several_relationships"],
        in_several_programs=r["several_programs"],
        became_mentors=r["became"],
        withdrawn=r["withdrawn"],
    )


SEEKERS = f"""{_FIRST_PLACEMENT},
seekers AS (
    SELECT p.*, f.at AS first_at, COALESCE(f.at < $3, false) AS placed
    FROM participants p LEFT JOIN first_placed f ON f.program_id = p.program_id AND f.participant_id = p.participant_id
    WHERE {_scope("p.program_id")} AND p.role <> 'mentor' AND {_active("p")})"""

MATCHING = _statement(f"""
WITH {SEEKERS},
days AS (
    SELECT GREATEST(0, {_days("f.at", "p.enrolled_at")}) AS d
    FROM first_placed f JOIN participants p ON p.program_id = f.program_id AND p.participant_id = f.participant_id
    WHERE p.role <> 'mentor' AND {_in_window("f.at")}),
formed AS (SELECT g.group_id, g.fit FROM groups g WHERE {_scope("g.program_id")} AND {_in_window("g.matched_at")}),
unplaced AS (
    SELECT COALESCE(u.reason_code, 'not_yet_matched') AS reason, count(*) AS n
    FROM seekers s LEFT JOIN unmatched u
      ON u.program_id = s.program_id AND u.participant_id = s.participant_id AND u.at < $3
    WHERE NOT s.placed GROUP BY 1),
overridden AS (SELECT * FROM overrides o WHERE {_scope("o.program_id")} AND {_in_window("o.at")})
SELECT
    (SELECT count(*) FROM seekers) AS seekers,
    (SELECT count(*) FROM seekers WHERE placed) AS placed,
    (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) FROM days) AS days_median,
    (SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY d) FROM days) AS days_p90,
    (SELECT count(*) FROM days) AS days_n,
    (SELECT avg(fit) FROM formed) AS mean_fit,
    (SELECT count(DISTINCT m.participant_id) FROM formed JOIN members m ON m.group_id = formed.group_id) AS fit_people,
    (SELECT COALESCE(jsonb_object_agg(reason, n), '{{}}') FROM unplaced)::text AS unplaced,
    (SELECT count(*) FROM overridden) AS overrides,
    (SELECT count(DISTINCT pid) FROM overridden, unnest(overridden.participant_ids) AS pid) AS override_people""")

LOADS = _statement(f"""
WITH {_GROUPS},
mentors AS (
    SELECT DISTINCT p.participant_id FROM participants p
    WHERE {_scope("p.program_id")} AND p.role = 'mentor' AND {_active("p")}),
carried AS (
    SELECT m.participant_id, count(*) AS n FROM members m JOIN all_groups g ON g.group_id = m.group_id
    WHERE m.role = 'mentor' AND g.is_open GROUP BY m.participant_id),
capacity AS (
    SELECT DISTINCT ON (p.participant_id) p.participant_id, p.capacity
    FROM participants p JOIN mentors ON mentors.participant_id = p.participant_id WHERE p.role = 'mentor'
    ORDER BY p.participant_id, p.enrolled_at DESC),
loads AS (
    SELECT COALESCE(c.n, 0) AS load, capacity.capacity FROM mentors
    LEFT JOIN carried c ON c.participant_id = mentors.participant_id
    LEFT JOIN capacity ON capacity.participant_id = mentors.participant_id)
SELECT load, count(*) AS mentors, max(load::float8 / NULLIF(capacity, 0)) AS max_ratio FROM loads GROUP BY load""")
"""Active mentors of the scope per load (open relationships in every program), with the highest load /
capacity among them (the capacity a mentor declared last, in any program)."""


async def matching(conn: asyncpg.Connection, args: tuple[object, ...]) -> Matching:
    r = await conn.fetchrow(MATCHING, *args)
    loads = await conn.fetch(LOADS, *args)
    unplaced = json.loads(r["unplaced"])
    ratios = [x["max_ratio"] for x in loads if x["max_ratio"] is not None]
    return Matching(
        seekers=r["seekers"],
        placed=r["placed"],
        days_to_match_median=r["days_median"],
        days_to_match_p90=r["days_p90"],
        days_to_match_n=r["days_n"],
        mean_fit=r["mean_fit"],
        fit_people=r["fit_people"],
        loads={x["load"]: x["mentors"] for x in loads},
        max_load_ratio=max(ratios) if ratios else None,
        unplaced={reason: unplaced.get(reason, 0) for reason in UNPLACED_REASONS},
        overrides=r["overrides"],
        override_people=r["override_people"],
    )


ENGAGEMENT = _statement(f"""
WITH {_GROUPS},
sg AS (SELECT * FROM all_groups g WHERE {_scope("g.program_id")}),
size AS (SELECT m.group_id, count(*) AS size FROM members m JOIN sg ON sg.group_id = m.group_id GROUP BY m.group_id),
held AS (
    SELECT s.group_id, s.attendees, COALESCE(size.size, 0) AS size
    FROM sessions_held s JOIN sg ON sg.group_id = s.group_id LEFT JOIN size ON size.group_id = s.group_id
    WHERE {_scope("s.program_id")} AND {_in_window("s.held_at")}),
slipped AS (
    SELECT x.kind, x.group_id FROM slips x JOIN sg ON sg.group_id = x.group_id
    WHERE {_scope("x.program_id")} AND {_in_window("x.at")}),
first_held AS (
    SELECT s.group_id, min(s.held_at) AS at FROM sessions_held s WHERE {_scope("s.program_id")} GROUP BY s.group_id),
spans AS (
    SELECT sg.group_id, sg.cadence,
        CASE WHEN $2::timestamptz IS NULL THEN LEAST(sg.matched_at, f.at)
             ELSE GREATEST(LEAST(sg.matched_at, f.at), $2) END AS start,
        CASE WHEN sg.closure IS NULL THEN $3 ELSE LEAST($3, sg.closure_at) END AS stop
    FROM sg LEFT JOIN first_held f ON f.group_id = sg.group_id),
counted AS (SELECT * FROM spans WHERE stop > start),
closed AS (
    SELECT sg.closure AS outcome, count(DISTINCT sg.group_id) AS groups, count(DISTINCT m.participant_id) AS people
    FROM sg LEFT JOIN members m ON m.group_id = sg.group_id
    WHERE sg.closure IS NOT NULL AND {_in_window("sg.closure_at")} GROUP BY sg.closure)
SELECT
    (SELECT count(*) FROM held) AS held,
    (SELECT count(DISTINCT m.participant_id) FROM members m WHERE m.group_id IN (SELECT group_id FROM held))
        AS held_people,
    (SELECT COALESCE(sum({_days("stop", "start")} / cadence), 0) FROM counted) AS expected,
    (SELECT count(DISTINCT m.participant_id) FROM members m WHERE m.group_id IN (SELECT group_id FROM counted))
        AS expected_people,
    (SELECT COALESCE(sum(LEAST(attendees, size)), 0)::bigint FROM held) AS attended,
    (SELECT COALESCE(sum(size), 0)::bigint FROM held) AS member_slots,
    (SELECT count(*) FROM slipped WHERE kind = 'cancelled') AS cancelled,
    (SELECT count(DISTINCT m.participant_id) FROM members m
     WHERE m.group_id IN (SELECT group_id FROM slipped WHERE kind = 'cancelled')) AS cancelled_people,
    (SELECT count(*) FROM slipped WHERE kind = 'rescheduled') AS rescheduled,
    (SELECT count(DISTINCT m.participant_id) FROM members m
     WHERE m.group_id IN (SELECT group_id FROM slipped WHERE kind = 'rescheduled')) AS rescheduled_people,
    (SELECT COALESCE(jsonb_object_agg(outcome, jsonb_build_array(groups, people)), '{{}}') FROM closed)::text
        AS closed""")

OPEN_RELATIONSHIPS = _statement(f"""
WITH {_GROUPS},
open_groups AS (SELECT * FROM all_groups g WHERE {_scope("g.program_id")} AND g.is_open),
last AS (
    SELECT s.group_id, max(s.held_at) AS held_at FROM sessions_held s JOIN open_groups o ON o.group_id = s.group_id
    WHERE {_scope("s.program_id")} AND s.held_at <= $3 GROUP BY s.group_id),
slipped AS (
    SELECT x.group_id, count(*) AS n FROM slips x JOIN open_groups o ON o.group_id = x.group_id
    LEFT JOIN last ON last.group_id = x.group_id
    WHERE {_scope("x.program_id")} AND x.at <= $3 AND (last.held_at IS NULL OR x.at > last.held_at)
    GROUP BY x.group_id),
ratings AS (
    SELECT x.group_id, array_agg(x.v ORDER BY x.given_at, x.feedback_id) AS v FROM (
        SELECT f.group_id, f.session_rating AS v, f.given_at, f.feedback_id,
            row_number() OVER (PARTITION BY f.group_id ORDER BY f.given_at DESC, f.feedback_id DESC) AS k
        FROM feedback f JOIN open_groups o ON o.group_id = f.group_id
        WHERE {_scope("f.program_id")} AND f.given_at <= $3 AND f.session_rating IS NOT NULL) x
    WHERE x.k <= {HISTORY} GROUP BY x.group_id),
fits AS (
    SELECT x.group_id, array_agg(x.v ORDER BY x.given_at, x.feedback_id) AS v FROM (
        SELECT f.group_id, f.pairing_fit AS v, f.given_at, f.feedback_id,
            row_number() OVER (PARTITION BY f.group_id ORDER BY f.given_at DESC, f.feedback_id DESC) AS k
        FROM feedback f JOIN open_groups o ON o.group_id = f.group_id
        WHERE {_scope("f.program_id")} AND f.given_at <= $3 AND f.pairing_fit IS NOT NULL) x
    WHERE x.k <= {HISTORY} GROUP BY x.group_id),
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


async def engagement(conn: asyncpg.Connection, args: tuple[object, ...]) -> Engagement:
    r = await conn.fetchrow(ENGAGEMENT, *args)
    closed = json.loads(r["closed"])
    return Engagement(
        held=r["held"],
        held_people=r["held_people"],
        expected=r["expected"],
        expected_people=r["expected_people"],
        attended=r["attended"],
        member_slots=r["member_slots"],
        cancelled=r["cancelled"],
        cancelled_people=r["cancelled_people"],
        rescheduled=r["rescheduled"],
        rescheduled_people=r["rescheduled_people"],
        open_relationships=await open_relationships(conn, args),
        closed={k: (int(closed.get(k, (0, 0))[0]), int(closed.get(k, (0, 0))[1])) for k in CLOSED_OUTCOMES},
    )


OUTCOMES = _statement(f"""
WITH goal AS (SELECT * FROM goals g WHERE {_scope("g.program_id")}),
moved AS (SELECT * FROM goal WHERE {_in_window("goal.progressed_at")} AND goal.steps_done > 0),
answer AS (SELECT * FROM feedback f WHERE {_scope("f.program_id")} AND {_in_window("f.given_at")}),
cohort AS (
    SELECT {_active("p")} AS kept FROM participants p
    WHERE {_scope("p.program_id")} AND p.enrolled_at < $3
    AND ($2::timestamptz IS NULL OR {_active("p", "$2")} OR {_in_window("p.enrolled_at")}))
SELECT
    (SELECT count(*) FROM goal WHERE {_in_window("goal.set_at")}) AS goals_set,
    (SELECT count(DISTINCT participant_id) FROM goal WHERE {_in_window("goal.set_at")}) AS goals_set_people,
    (SELECT count(*) FROM moved) AS progressed,
    (SELECT count(DISTINCT participant_id) FROM moved) AS progressed_people,
    (SELECT count(*) FROM moved WHERE steps_done >= steps_total) AS completed,
    (SELECT count(DISTINCT participant_id) FROM moved WHERE steps_done >= steps_total) AS completed_people,
    a.*,
    (SELECT count(*) FROM cohort) AS cohort,
    (SELECT count(*) FROM cohort WHERE kept) AS kept
FROM (SELECT
    avg(session_rating) AS mean_rating, count(session_rating) AS ratings,
    count(*) FILTER (WHERE would_recommend >= $4) AS promoters,
    count(*) FILTER (WHERE would_recommend <= $5) AS detractors,
    count(would_recommend) AS recommend,
    count(*) FILTER (WHERE mentor_helps >= $6) AS helps_agree, count(mentor_helps) AS helps,
    count(*) FILTER (WHERE mentee_engaged >= $6) AS engaged_agree, count(mentee_engaged) AS engaged,
    avg(pairing_fit) AS mean_pairing_fit, count(pairing_fit) AS pairing
    FROM answer) a""")


async def outcomes(conn: asyncpg.Connection, args: tuple[object, ...]) -> Outcomes:
    r = await conn.fetchrow(OUTCOMES, *args, PROMOTER, DETRACTOR, AGREE)
    return Outcomes(
        goals_set=r["goals_set"],
        goals_set_people=r["goals_set_people"],
        goals_progressed=r["progressed"],
        goals_progressed_people=r["progressed_people"],
        goals_completed=r["completed"],
        goals_completed_people=r["completed_people"],
        mean_rating=r["mean_rating"],
        ratings=r["ratings"],
        promoters=r["promoters"],
        detractors=r["detractors"],
        recommend_answers=r["recommend"],
        helps_agree=r["helps_agree"],
        helps_answers=r["helps"],
        engaged_agree=r["engaged_agree"],
        engaged_answers=r["engaged"],
        mean_pairing_fit=r["mean_pairing_fit"],
        pairing_answers=r["pairing"],
        cohort=r["cohort"],
        kept=r["kept"],
    )


FAIRNESS = _statement(f"""
WITH {SEEKERS},
placed_in AS (
    SELECT g.group_id, g.program_id, g.fit FROM groups g WHERE {_scope("g.program_id")} AND g.matched_at < $3),
rated AS (
    SELECT f.group_id, f.respondent_role, sum(f.session_rating) AS total, count(f.session_rating) AS n FROM feedback f
    WHERE {_scope("f.program_id")} AND {_in_window("f.given_at")} GROUP BY f.group_id, f.respondent_role),
per_person AS (
    SELECT s.program_id, s.participant_id, sum(g.fit) AS fit_sum, count(*) AS fit_n,
        sum(r.total) AS rating_sum, sum(r.n) AS rating_n
    FROM seekers s JOIN members m ON m.participant_id = s.participant_id
    JOIN placed_in g ON g.group_id = m.group_id AND g.program_id = s.program_id
    LEFT JOIN rated r ON r.group_id = g.group_id AND r.respondent_role = s.role
    WHERE s.placed GROUP BY s.program_id, s.participant_id),
person AS (
    SELECT s.department, s.level::text AS level, COALESCE(s.location, 'unknown') AS location, s.placed,
        CASE WHEN s.placed THEN GREATEST(0, {_days("s.first_at", "s.enrolled_at")}) END AS days,
        pp.fit_sum, pp.fit_n, pp.rating_sum, pp.rating_n
    FROM seekers s LEFT JOIN per_person pp ON pp.program_id = s.program_id AND pp.participant_id = s.participant_id)
SELECT GROUPING(department) = 0 AS by_department, GROUPING(level) = 0 AS by_level, department, level, location,
    count(*) AS people, count(*) FILTER (WHERE placed) AS placed,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY days) AS days_median,
    sum(fit_sum) / NULLIF(sum(fit_n), 0)::float8 AS mean_fit,
    sum(rating_sum) / NULLIF(sum(rating_n), 0)::float8 AS mean_rating
FROM person GROUP BY GROUPING SETS ((department), (level), (location))""")


async def fairness(conn: asyncpg.Connection, args: tuple[object, ...]) -> dict[str, dict[str, FairnessCell]]:
    out: dict[str, dict[str, FairnessCell]] = {d: {} for d in DIMENSIONS}
    for r in await conn.fetch(FAIRNESS, *args):
        dimension = "department" if r["by_department"] else "level" if r["by_level"] else "location"
        out[dimension][r[dimension]] = FairnessCell(
            people=r["people"],
            placed=r["placed"],
            days_to_match_median=r["days_median"],
            mean_fit=r["mean_fit"],
            mean_rating=r["mean_rating"],
        )
    return out


ACCOUNTABILITY = _statement(f"""
WITH {_GROUPS},
open_groups AS (SELECT * FROM all_groups g WHERE {_scope("g.program_id")} AND g.is_open),
with_goal AS (SELECT DISTINCT x.group_id FROM goals x WHERE {_scope("x.program_id")} AND x.set_at < $3)
SELECT count(*) AS open_groups,
    count(*) FILTER (WHERE o.agreed AND o.group_id IN (SELECT group_id FROM with_goal)) AS both,
    (SELECT count(DISTINCT m.participant_id) FROM members m WHERE m.group_id IN (SELECT group_id FROM open_groups))
        AS people
FROM open_groups o""")


async def accountability(conn: asyncpg.Connection, args: tuple[object, ...]) -> Accountability:
    r = await conn.fetchrow(ACCOUNTABILITY, *args)
    return Accountability(r["open_groups"], r["both"], r["people"])


MENTOR_STATES = _statement(f"""
WITH {_GROUPS},
mentors AS (
    SELECT p.participant_id, array_agg(p.program_id ORDER BY p.program_id) AS programs FROM participants p
    WHERE p.role = 'mentor' AND {_active("p")} GROUP BY p.participant_id),
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


PLACEMENTS = _statement(f"""
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


async def tallies(
    conn: asyncpg.Connection, program_ids: list[str] | None, w: Window, *, with_fairness: bool = True
) -> Tallies:
    """Every tally of the scope (``program_ids``; None = the organisation) over ``w``, in one snapshot."""
    args = (program_ids, w.start, w.end)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return Tallies(
            participation=await participation(conn, args),
            matching=await matching(conn, args),
            engagement=await engagement(conn, args),
            outcomes=await outcomes(conn, args),
            accountability=await accountability(conn, args),
            fairness=await fairness(conn, args) if with_fairness else {},
        )
