"""The tallies of a scope and a window, counted by PostgreSQL: what a KPI request runs.

Each function is one statement that returns the counts, sums and quantiles of one section, so a request
on a 50,000-person program moves a few rows into Python instead of every enrolment, group, session
and answer. The statements say in SQL what :mod:`services.metrics.domain.tally` says in Python (the
reference; a test holds the two equal on a fixture that exercises every rule), and the formulas that
turn tallies into figures stay in the domain. Only the open relationships come back one row each,
with what their risk scores need, because the risk score is the domain's.

Every statement takes the scope, the window's start and its end (:mod:`services.metrics.adapters.sql`),
and :func:`tallies` runs them in one repeatable-read snapshot.

Sums and means of fractional values (fits, scores, sessions expected per cadence) are taken over
``numeric``, then cast back: a ``float8`` sum depends on the order the plan reads its rows in, which
may follow how they were stored, so a schema rebuilt from the topics (its rows written in other
batches) gave some figures one unit in the last place apart from the live one's, and a test comparing
the two failed now and then. Each value converts to ``numeric`` the same way wherever it is read, and
the ``numeric`` sum is exact, so the same events give the same figures whatever order they were
projected in.
"""

from __future__ import annotations

import json

import asyncpg

from services.metrics.adapters.sql import GROUPS, SEEKERS, active, days, in_window, scope, snapshot, statement
from services.metrics.adapters.states import open_relationships
from services.metrics.domain.report import Window
from services.metrics.domain.stats import DETRACTOR, PROMOTER
from services.metrics.domain.tallies import (
    CLOSED_OUTCOMES,
    ROLES,
    UNPLACED_REASONS,
    Accountability,
    Engagement,
    FairnessCell,
    Matching,
    Outcomes,
    Participation,
    Tallies,
)
from services.metrics.domain.tally import AGREE, DIMENSIONS

PARTICIPATION = statement(f"""
WITH {GROUPS},
sp AS (SELECT * FROM participants p WHERE {scope("p.program_id")}),
people AS (SELECT DISTINCT sp.participant_id FROM sp WHERE {active("sp")}),
relationships AS (
    SELECT m.participant_id FROM members m JOIN all_groups g ON g.group_id = m.group_id WHERE g.is_open
    GROUP BY m.participant_id HAVING count(*) >= 2),
programs AS (
    SELECT p.participant_id FROM participants p WHERE {active("p")}
    GROUP BY p.participant_id HAVING count(*) >= 2),
mentee_since AS (
    SELECT p.participant_id, min(p.enrolled_at) AS since FROM participants p
    WHERE p.role = 'mentee' AND p.participant_id IN (SELECT participant_id FROM sp WHERE role = 'mentor')
    GROUP BY p.participant_id)
SELECT
    count(*) FILTER (WHERE sp.role = 'mentor' AND {in_window("sp.enrolled_at")}) AS mentor,
    count(*) FILTER (WHERE sp.role = 'mentee' AND {in_window("sp.enrolled_at")}) AS mentee,
    count(*) FILTER (WHERE sp.role = 'peer' AND {in_window("sp.enrolled_at")}) AS peer,
    count(*) FILTER (WHERE {active("sp")}) AS active,
    count(*) FILTER (WHERE {active("sp")} AND sp.role = 'mentor') AS active_mentors,
    count(*) FILTER (WHERE {active("sp")} AND sp.role = 'mentee') AS active_mentees,
    (SELECT count(*) FROM people WHERE participant_id IN (SELECT participant_id FROM relationships))
        AS several_relationships,
    (SELECT count(*) FROM people WHERE participant_id IN (SELECT participant_id FROM programs)) AS several_programs,
    (SELECT count(DISTINCT b.participant_id) FROM sp b JOIN mentee_since ms ON ms.participant_id = b.participant_id
     WHERE b.role = 'mentor' AND {in_window("b.enrolled_at")} AND ms.since < b.enrolled_at) AS became,
    count(*) FILTER (WHERE {in_window("sp.withdrawn_at")}) AS withdrawn
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


MATCHING = statement(f"""
WITH {SEEKERS},
days AS (
    SELECT GREATEST(0, {days("f.at", "p.enrolled_at")}) AS d
    FROM first_placed f JOIN participants p ON p.program_id = f.program_id AND p.participant_id = f.participant_id
    WHERE p.role <> 'mentor' AND {in_window("f.at")}),
formed AS (SELECT g.group_id, g.fit FROM groups g WHERE {scope("g.program_id")} AND {in_window("g.matched_at")}),
unplaced AS (
    SELECT COALESCE(u.reason_code, 'not_yet_matched') AS reason, count(*) AS n
    FROM seekers s LEFT JOIN unmatched u
      ON u.program_id = s.program_id AND u.participant_id = s.participant_id AND u.at < $3
    WHERE NOT s.placed GROUP BY 1),
overridden AS (SELECT * FROM overrides o WHERE {scope("o.program_id")} AND {in_window("o.at")})
SELECT
    (SELECT count(*) FROM seekers) AS seekers,
    (SELECT count(*) FROM seekers WHERE placed) AS placed,
    (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d) FROM days) AS days_median,
    (SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY d) FROM days) AS days_p90,
    (SELECT count(*) FROM days) AS days_n,
    (SELECT avg(fit::numeric)::float8 FROM formed) AS mean_fit,
    (SELECT count(DISTINCT m.participant_id) FROM formed JOIN members m ON m.group_id = formed.group_id) AS fit_people,
    (SELECT COALESCE(jsonb_object_agg(reason, n), '{{}}') FROM unplaced)::text AS unplaced,
    (SELECT count(*) FROM overridden) AS overrides,
    (SELECT count(DISTINCT pid) FROM overridden, unnest(overridden.participant_ids) AS pid) AS override_people""")

LOADS = statement(f"""
WITH {GROUPS},
mentors AS (
    SELECT DISTINCT p.participant_id FROM participants p
    WHERE {scope("p.program_id")} AND p.role = 'mentor' AND {active("p")}),
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


ENGAGEMENT = statement(f"""
WITH {GROUPS},
sg AS (SELECT * FROM all_groups g WHERE {scope("g.program_id")}),
size AS (SELECT m.group_id, count(*) AS size FROM members m JOIN sg ON sg.group_id = m.group_id GROUP BY m.group_id),
held AS (
    SELECT s.group_id, s.attendees, COALESCE(size.size, 0) AS size
    FROM sessions_held s JOIN sg ON sg.group_id = s.group_id LEFT JOIN size ON size.group_id = s.group_id
    WHERE {scope("s.program_id")} AND {in_window("s.held_at")}),
slipped AS (
    SELECT x.kind, x.group_id FROM slips x JOIN sg ON sg.group_id = x.group_id
    WHERE {scope("x.program_id")} AND {in_window("x.at")}),
first_held AS (
    SELECT s.group_id, min(s.held_at) AS at FROM sessions_held s WHERE {scope("s.program_id")} GROUP BY s.group_id),
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
    WHERE sg.closure IS NOT NULL AND {in_window("sg.closure_at")} GROUP BY sg.closure)
SELECT
    (SELECT count(*) FROM held) AS held,
    (SELECT count(DISTINCT m.participant_id) FROM members m WHERE m.group_id IN (SELECT group_id FROM held))
        AS held_people,
    (SELECT COALESCE(sum(({days("stop", "start")} / cadence)::numeric)::float8, 0) FROM counted) AS expected,
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


OUTCOMES = statement(f"""
WITH goal AS (SELECT * FROM goals g WHERE {scope("g.program_id")}),
moved AS (SELECT * FROM goal WHERE {in_window("goal.progressed_at")} AND goal.steps_done > 0),
answer AS (SELECT * FROM feedback f WHERE {scope("f.program_id")} AND {in_window("f.given_at")}),
cohort AS (
    SELECT {active("p")} AS kept FROM participants p
    WHERE {scope("p.program_id")} AND p.enrolled_at < $3
    AND ($2::timestamptz IS NULL OR {active("p", "$2")} OR {in_window("p.enrolled_at")}))
SELECT
    (SELECT count(*) FROM goal WHERE {in_window("goal.set_at")}) AS goals_set,
    (SELECT count(DISTINCT participant_id) FROM goal WHERE {in_window("goal.set_at")}) AS goals_set_people,
    (SELECT count(*) FROM moved) AS progressed,
    (SELECT count(DISTINCT participant_id) FROM moved) AS progressed_people,
    (SELECT count(*) FROM moved WHERE steps_done >= steps_total) AS completed,
    (SELECT count(DISTINCT participant_id) FROM moved WHERE steps_done >= steps_total) AS completed_people,
    a.*,
    (SELECT count(*) FROM cohort) AS cohort,
    (SELECT count(*) FROM cohort WHERE kept) AS kept
FROM (SELECT
    avg(session_rating::numeric)::float8 AS mean_rating, count(session_rating) AS ratings,
    count(*) FILTER (WHERE would_recommend >= $4) AS promoters,
    count(*) FILTER (WHERE would_recommend <= $5) AS detractors,
    count(would_recommend) AS recommend,
    count(*) FILTER (WHERE mentor_helps >= $6) AS helps_agree, count(mentor_helps) AS helps,
    count(*) FILTER (WHERE mentee_engaged >= $6) AS engaged_agree, count(mentee_engaged) AS engaged,
    avg(pairing_fit::numeric)::float8 AS mean_pairing_fit, count(pairing_fit) AS pairing
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


FAIRNESS = statement(f"""
WITH {SEEKERS},
placed_in AS (
    SELECT g.group_id, g.program_id, g.fit FROM groups g WHERE {scope("g.program_id")} AND g.matched_at < $3),
rated AS (
    SELECT f.group_id, f.respondent_role, sum(f.session_rating::numeric) AS total, count(f.session_rating) AS n
    FROM feedback f WHERE {scope("f.program_id")} AND {in_window("f.given_at")} GROUP BY f.group_id, f.respondent_role),
per_person AS (
    SELECT s.program_id, s.participant_id, sum(g.fit::numeric) AS fit_sum, count(*) AS fit_n,
        sum(r.total) AS rating_sum, sum(r.n) AS rating_n
    FROM seekers s JOIN members m ON m.participant_id = s.participant_id
    JOIN placed_in g ON g.group_id = m.group_id AND g.program_id = s.program_id
    LEFT JOIN rated r ON r.group_id = g.group_id AND r.respondent_role = s.role
    WHERE s.placed GROUP BY s.program_id, s.participant_id),
person AS (
    SELECT s.department, s.level::text AS level, COALESCE(s.location, 'unknown') AS location, s.placed,
        CASE WHEN s.placed THEN GREATEST(0, {days("s.first_at", "s.enrolled_at")}) END AS days,
        pp.fit_sum, pp.fit_n, pp.rating_sum, pp.rating_n
    FROM seekers s LEFT JOIN per_person pp ON pp.program_id = s.program_id AND pp.participant_id = s.participant_id)
SELECT GROUPING(department) = 0 AS by_department, GROUPING(level) = 0 AS by_level, department, level, location,
    count(*) AS people, count(*) FILTER (WHERE placed) AS placed,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY days) AS days_median,
    (sum(fit_sum) / NULLIF(sum(fit_n), 0))::float8 AS mean_fit,
    (sum(rating_sum) / NULLIF(sum(rating_n), 0))::float8 AS mean_rating
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


ACCOUNTABILITY = statement(f"""
WITH {GROUPS},
open_groups AS (SELECT * FROM all_groups g WHERE {scope("g.program_id")} AND g.is_open),
with_goal AS (SELECT DISTINCT x.group_id FROM goals x WHERE {scope("x.program_id")} AND x.set_at < $3)
SELECT count(*) AS open_groups,
    count(*) FILTER (WHERE o.agreed AND o.group_id IN (SELECT group_id FROM with_goal)) AS both,
    (SELECT count(DISTINCT m.participant_id) FROM members m WHERE m.group_id IN (SELECT group_id FROM open_groups))
        AS people
FROM open_groups o""")


async def accountability(conn: asyncpg.Connection, args: tuple[object, ...]) -> Accountability:
    r = await conn.fetchrow(ACCOUNTABILITY, *args)
    return Accountability(r["open_groups"], r["both"], r["people"])


async def tallies(
    conn: asyncpg.Connection, program_ids: list[str] | None, w: Window, *, with_fairness: bool = True
) -> Tallies:
    """Every tally of the scope (``program_ids``; None = the organisation) over ``w``, in one snapshot."""
    args = (program_ids, w.start, w.end)
    async with snapshot(conn):
        return Tallies(
            participation=await participation(conn, args),
            matching=await matching(conn, args),
            engagement=await engagement(conn, args),
            outcomes=await outcomes(conn, args),
            accountability=await accountability(conn, args),
            fairness=await fairness(conn, args) if with_fairness else {},
        )
