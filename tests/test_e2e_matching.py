"""End to end on the real stack: a program enrolled through the enrollment API is matched by the
matching service from the events alone, and integration teams read explained groups on Kafka."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.synthetic_org import Person, enrolments, org_chart
from conftest import StackEndpoints, TopicTail, eventually, unique
from contracts.envelope import from_kafka
from contracts.events import GroupMatched, MatchingCompleted, ParticipantUnmatched
from contracts.topics import MATCHING
from runtime.auth import issue_token
from runtime.tail import wait_for_consumer_group
from services.enrollment.app import EnrollmentSettings
from services.enrollment.app import create as create_enrollment
from services.matching.app import MatchingSettings
from services.matching.app import create as create_matching

pytestmark = pytest.mark.stack


class Platform:
    def __init__(self, enrollment: httpx.AsyncClient, matching: httpx.AsyncClient, admin: dict[str, str],
                 matching_schema: str, dsn: str) -> None:  # fmt: skip
        self.enrollment, self.matching, self.admin = enrollment, matching, admin
        self.matching_schema, self.dsn = matching_schema, dsn
        self.enrollment_schema = ""

    async def enrolled_program(
        self, name: str, *, org_size: int, org_seed: int, enrol: int, enrol_seed: int
    ) -> tuple[str, list[dict[str, Any]]]:
        """An org chart, a one-to-one program and a bulk enrolment through the enrollment API, once
        matching has built the program's pool from the events: (program id, enrolment rows)."""
        people = org_chart(org_size, seed=org_seed)
        rows = enrolments(people, enrol, seed=enrol_seed)
        program_id = await self.enrolled(people, {"name": name, "form": "one_to_one"}, rows)
        return program_id, rows

    async def enrolled(self, people: list[Person], program: dict[str, Any], rows: list[dict[str, Any]]) -> str:
        """The org chart, the program (``program``: the body, ``starts_on`` 2026-01-01 unless given) and the
        enrolment ``rows`` in one bulk, once matching has built the program's pool: the program's id."""
        r = await self.enrollment.post("/org-chart", json=[x.row() for x in people], headers=self.admin)
        assert r.status_code == 200, r.text
        r = await self.enrollment.post("/programs", json={"starts_on": "2026-01-01", **program}, headers=self.admin)
        assert r.status_code == 201, r.text
        program_id: str = r.json()["program_id"]
        r = await self.enrollment.post(f"/programs/{program_id}/enrolments/bulk", json=rows, headers=self.admin)
        assert r.status_code == 200, r.text

        async def pool_complete() -> bool:
            return await self.pool_size(program_id) == len(rows)

        await eventually(pool_complete, 60, "matching to build the pool from enrollment events")
        return program_id

    async def pool_size(self, program_id: str) -> int:
        conn = await asyncpg.connect(self.dsn)
        try:
            return int(
                await conn.fetchval(
                    f'SELECT count(*) FROM "{self.matching_schema}".pool WHERE program_id = $1 AND active', program_id
                )
            )
        except asyncpg.UndefinedTableError:
            return 0
        finally:
            await conn.close()


@pytest.fixture
async def platform(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[Platform]:
    e_schema, m_schema = unique("enrollment_e2e"), unique("matching_e2e")
    scratch_schemas += [e_schema, m_schema]
    dsn, kafka = stack.admin_dsn, stack.kafka_bootstrap
    matching = create_matching(
        MatchingSettings(
            database_url=dsn,
            kafka_bootstrap=kafka,
            db_schema=m_schema,
            consumer_offset_reset="latest",
            log_level="WARNING",
        )
    )
    enrollment = create_enrollment(
        EnrollmentSettings(
            database_url=dsn, kafka_bootstrap=kafka, db_schema=e_schema, consumer_offset_reset="latest",
            log_level="WARNING",
        )
    )  # fmt: skip
    async with AsyncExitStack() as stack_:
        await stack_.enter_async_context(matching.router.lifespan_context(matching))
        await wait_for_consumer_group(stack.kafka_bootstrap, f"{m_schema}-pools")
        await stack_.enter_async_context(enrollment.router.lifespan_context(enrollment))
        await wait_for_consumer_group(stack.kafka_bootstrap, f"{e_schema}-loads")
        e = await stack_.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=enrollment), base_url="http://enrollment", timeout=120)
        )
        m = await stack_.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=matching), base_url="http://matching", timeout=120)
        )
        admin = {"Authorization": f"Bearer {issue_token(enrollment.state.jwt, 'admin-e2e', ['admin'])}"}
        platform = Platform(e, m, admin, m_schema, stack.admin_dsn)
        platform.enrollment_schema = e_schema
        yield platform


async def test_enrol_then_match_publishes_explained_groups(platform: Platform, stack: StackEndpoints) -> None:
    p = platform
    program_id, rows = await p.enrolled_program("E2E", org_size=400, org_seed=5, enrol=250, enrol_seed=3)

    async with TopicTail(stack.kafka_bootstrap, MATCHING.name) as tail:
        r = await p.matching.post(f"/programs/{program_id}/runs", json={"wait": True, "seed": 7}, headers=p.admin)
        assert r.status_code == 200, r.text
        run = r.json()
        assert run["status"] == "completed", run
        summary = run["summary"]
        expected = summary["groups"] + summary["unplaced"] + 1
        records = await tail.collect(lambda rec: rec.key == program_id.encode(), count=expected)

    events = [from_kafka(rec.headers, rec.value).data for rec in records]
    assert len(events) == expected
    groups = [e for e in events if isinstance(e, GroupMatched)]
    unmatched = [e for e in events if isinstance(e, ParticipantUnmatched)]
    assert isinstance(events[-1], MatchingCompleted), "completion comes after the groups it announces"
    completed = events[-1]
    assert completed.placed_count == len(groups) == summary["placed"] > 0
    assert completed.seed == 7 and completed.input_digest.startswith("sha256:")
    assert completed.solver.status in {"OPTIMAL", "FEASIBLE"}
    mentors = {row["participant_id"] for row in rows if row["role"] == "mentor"}
    for g in groups:
        assert g.run_id == run["run_id"]
        assert [m.role.value for m in g.members] == ["mentor", "mentee"]
        assert g.members[0].participant_id in mentors
        assert g.explanation, "each placement names the criteria that made it"
        assert g.fit == sum(c.points for c in g.explanation)
        assert {c.criterion for c in g.explanation} <= {"skill", "goal", "cross_department"}
    for u in unmatched:
        assert u.reason and u.reason_code.value in {"no_eligible_partner", "capacity_exhausted", "lost_lottery"}

    # an administrator reads one person's explanation
    mentee = next(m.participant_id for m in groups[0].members if m.role.value == "mentee")
    r = await p.matching.get(f"/runs/{run['run_id']}/explanations/{mentee}", headers=p.admin)
    assert r.status_code == 200 and r.json()["placed"] is True

    # re-running matches only people not yet in an active group
    r = await p.matching.post(f"/programs/{program_id}/runs", json={"wait": True, "seed": 7}, headers=p.admin)
    again = r.json()["summary"]
    assert again["placed"] <= summary["unplaced"]

    # a dry run with other weights says what would change, and publishes nothing
    policy = {"weights": {"skill": 0, "goal": 5, "cross_department": 0}}
    r = await p.matching.post(
        f"/programs/{program_id}/runs",
        json={"wait": True, "dry_run": True, "against_last_run": True, "policy": policy},
        headers=p.admin,
    )
    assert r.status_code == 200, r.text
    dry = r.json()["summary"]
    assert "diff" in dry and "people_moved" in dry["diff"]

    # operations see the three runs by outcome, and their requests by route template, on /metrics
    exposition = (await p.matching.get("/metrics")).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }
    assert samples[("matching_runs_total", (("dry_run", "false"), ("outcome", "completed")))] == 2
    assert samples[("matching_runs_total", (("dry_run", "true"), ("outcome", "completed")))] == 1
    route = (("method", "POST"), ("route", "/programs/{program_id}/runs"), ("status", "200"))
    assert samples[("matching_http_request_duration_seconds_count", route)] == 3


async def test_matching_api_errors(platform: Platform) -> None:
    p = platform
    r = await p.matching.post("/programs/prg-nope/runs", json={}, headers=p.admin)
    assert r.status_code == 404
    r = await p.matching.post("/programs/prg-nope/runs", json={"policy": {}}, headers=p.admin)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "policy"]
    r = await p.matching.get("/runs/run-nope")
    assert r.status_code == 401


async def test_overrides_are_recorded_applied_counted_and_revoked(platform: Platform) -> None:
    p = platform
    program_id, _ = await p.enrolled_program("Overrides", org_size=150, org_seed=9, enrol=90, enrol_seed=4)

    async def dry_run() -> tuple[dict[str, Any], set[tuple[str, str]]]:
        r = await p.matching.post(
            f"/programs/{program_id}/runs", json={"wait": True, "dry_run": True, "seed": 3}, headers=p.admin
        )
        assert r.status_code == 200, r.text
        run = r.json()
        r = await p.matching.get(f"/runs/{run['run_id']}/groups", params={"limit": 1000}, headers=p.admin)
        pairs = {(g["members"][0]["participant_id"], g["members"][1]["participant_id"]) for g in r.json()["items"]}
        return run["summary"], pairs

    before, pairs = await dry_run()
    assert before["overrides_applied"] == 0
    mentor_id, mentee_id = sorted(pairs)[0]

    # bad overrides: one person twice, someone not in the program
    url = f"/programs/{program_id}/overrides"
    r = await p.matching.post(
        url, json={"kind": "exclude_pair", "participant_ids": [mentee_id, mentee_id], "reason": "typo"}, headers=p.admin
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "participant_ids"]
    r = await p.matching.post(
        url, json={"kind": "exclude_pair", "participant_ids": [mentee_id, "E999999"], "reason": "nope"}, headers=p.admin
    )
    assert r.status_code == 422 and "E999999" in r.json()["detail"][0]["msg"]

    reason = "they share a project the HRIS does not know"
    r = await p.matching.post(
        url, json={"kind": "exclude_pair", "participant_ids": [mentor_id, mentee_id], "reason": reason}, headers=p.admin
    )
    assert r.status_code == 201, r.text
    override_id = r.json()["override_id"]
    excluded, pairs_excluded = await dry_run()
    assert excluded["overrides_applied"] == 1
    assert (mentor_id, mentee_id) not in pairs_excluded

    r = await p.matching.post(f"{url}/{override_id}/revoke", json={"reason": "project ended"}, headers=p.admin)
    assert r.status_code == 200 and r.json()["active"] is False and r.json()["revoked_reason"] == "project ended"
    r = await p.matching.post(f"{url}/{override_id}/revoke", json={"reason": "again"}, headers=p.admin)
    assert r.status_code == 404
    r = await p.matching.get(url, headers=p.admin)
    (record,) = r.json()["items"]
    assert record["reason"] == reason and record["created_by"] == "admin-e2e" and record["revoked_by"] == "admin-e2e"

    after, pairs_after = await dry_run()
    assert after["overrides_applied"] == 0
    assert pairs_after == pairs, "same input and seed, the override gone: the same groups as before"
