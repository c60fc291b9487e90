"""The enrollment API against the real database and broker: what an administrator and a participant
see, and what integration teams receive on Kafka."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from bench.synthetic_org import enrolments, org_chart, to_csv
from conftest import StackEndpoints, TopicTail, unique
from contracts.envelope import from_kafka
from contracts.events import (
    ParticipantEnrolled,
    ParticipantUpdated,
    ParticipantWithdrawn,
    ProgramOpened,
    ProgramUpdated,
)
from contracts.topics import ENROLLMENT
from runtime.auth import JwtConfig, issue_token
from services.enrollment.app import EnrollmentSettings, create
from services.enrollment.domain.model import manager_chain

pytestmark = pytest.mark.stack

ORG_COLUMNS = ["employee_id", "manager_id", "department", "level", "location", "utc_offset_minutes", "languages"]


class Api:
    def __init__(self, client: httpx.AsyncClient, jwt: JwtConfig, pool: asyncpg.Pool) -> None:
        self.client = client
        self.jwt = jwt
        self.pool = pool

    def as_(self, role: str, sub: str = "admin-1") -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.jwt, sub, [role])}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.as_("admin")


@pytest.fixture
async def api(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[Api]:
    schema = unique("enrollment_t")
    scratch_schemas.append(schema)
    settings = EnrollmentSettings(
        database_url=stack.admin_dsn, db_schema=schema, kafka_bootstrap=stack.kafka_bootstrap, log_level="WARNING",
        consumer_offset_reset="latest",  # the shared topics' history (other tests' groups) is not this test's
    )  # fmt: skip
    app: FastAPI = create(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://enrollment") as client:
            yield Api(client, app.state.jwt, app.state.ctx.pool)


async def _open(api: Api, form: str = "one_to_one", **extra: Any) -> dict[str, Any]:
    r = await api.client.post(
        "/programs", json={"name": "Leaders", "form": form, "starts_on": "2026-03-01", **extra}, headers=api.admin
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def _import(api: Api, size: int, seed: int = 7) -> list[Any]:
    people = org_chart(size, seed)
    csv = to_csv([p.row() for p in people], ORG_COLUMNS)
    r = await api.client.post("/org-chart", content=csv, headers={**api.admin, "content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == size
    return people


async def test_program_org_chart_bulk_enrolment_and_withdrawal_publish_ordered_events_once(
    api: Api, stack: StackEndpoints
) -> None:
    async with TopicTail(stack.kafka_bootstrap, ENROLLMENT.name) as tail:
        program = await _open(api)
        pid = program["program_id"]
        assert program["policy"]["group_members_max"] == 1  # defaults per form
        people = await _import(api, 1000)
        rows = enrolments(people, 800)
        r = await api.client.post(f"/programs/{pid}/enrolments/bulk", json=rows, headers=api.admin)
        assert r.status_code == 200, r.text
        assert r.json() == {"enrolled": 800}
        leaver = rows[17]["participant_id"]
        r = await api.client.delete(f"/programs/{pid}/enrolments/{leaver}", headers=api.admin)
        assert r.status_code == 204
        records = await tail.collect(lambda rec: rec.key == pid.encode(), count=802)

    envelopes = [from_kafka(r.headers, r.value) for r in records]
    assert len(envelopes) == 802, "each event exactly once"
    assert len({e.id for e in envelopes}) == 802
    assert len({r.partition for r in records}) == 1, "one program, one partition: its order is kept"
    types = [type(e.data) for e in envelopes]
    assert types[0] is ProgramOpened
    assert types[1:801] == [ParticipantEnrolled] * 800
    assert types[801] is ParticipantWithdrawn
    first = envelopes[1]
    assert first.source == "/mentoring/enrollment" and first.subject == pid
    assert first.type == "org.mentoring.participant.enrolled.v1"
    enrolled = first.data
    assert isinstance(enrolled, ParticipantEnrolled)
    person = next(p for p in people if p.employee_id == enrolled.profile.participant_id)
    assert enrolled.profile.department == person.department
    assert enrolled.profile.manager_chain[0] == person.manager_id

    r = await api.client.get(f"/programs/{pid}/enrolments/{leaver}", headers=api.admin)
    assert r.json()["status"] == "withdrawn"
    r = await api.client.get(
        f"/programs/{pid}/enrolments", params={"status": "active", "limit": 5000}, headers=api.admin
    )
    assert len(r.json()["items"]) == 799


async def test_org_chart_with_cycles_and_unknown_managers_is_rejected_whole(api: Api) -> None:
    rows = [
        {"employee_id": "A", "department": "HR", "level": 9},
        {"employee_id": "B", "manager_id": "C", "department": "HR", "level": 5},
        {"employee_id": "C", "manager_id": "B", "department": "HR", "level": 5},
        {"employee_id": "D", "manager_id": "nobody", "department": "HR", "level": 2},
    ]
    r = await api.client.post("/org-chart", json=rows, headers=api.admin)
    assert r.status_code == 422
    errors = r.json()["detail"]
    cycle = "cycle in the manager chain: B -> C -> B"
    assert {"loc": ["body", 2, "manager_id"], "msg": cycle, "type": "value_error"} in errors
    assert {"loc": ["body", 4, "manager_id"], "msg": "unknown manager_id nobody", "type": "value_error"} in errors
    r = await api.client.get("/org-chart/A", headers=api.admin)
    assert r.status_code == 404, "nothing half-imported"


async def test_bad_enrolments_are_clear_errors_and_store_nothing(api: Api) -> None:
    program = await _open(api)
    pid = program["program_id"]
    people = await _import(api, 50)
    someone, other = people[10].employee_id, people[11].employee_id

    r = await api.client.post(
        f"/programs/{pid}/enrolments", json={"participant_id": someone, "role": "mentor"}, headers=api.admin
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "capacity"]

    r = await api.client.post(
        "/programs/prg-nope/enrolments", json={"participant_id": someone, "role": "mentee"}, headers=api.admin
    )
    assert r.status_code == 404

    r = await api.client.post(
        f"/programs/{pid}/enrolments",
        json={"participant_id": someone, "role": "mentee", "goals": "x" * 5},
        headers=api.admin,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "goals"]

    csv = f"participant_id,role,capacity\n{someone},mentee,\n{other},mentor,many\n"
    r = await api.client.post(
        f"/programs/{pid}/enrolments/bulk", content=csv, headers={**api.admin, "content-type": "text/csv"}
    )
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {
            "loc": ["body", 3, "capacity"],  # the file's line 3: the header is line 1
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]

    as_someone = api.as_("participant", someone)
    r = await api.client.post(
        f"/programs/{pid}/enrolments", json={"participant_id": other, "role": "mentee"}, headers=as_someone
    )
    assert r.status_code == 403

    r = await api.client.get(f"/programs/{pid}/enrolments", headers=api.admin)
    assert r.json()["items"] == [], "nothing stored by any of the above"

    r = await api.client.post(
        f"/programs/{pid}/enrolments", json={"participant_id": someone, "role": "mentee"}, headers=as_someone
    )
    assert r.status_code == 201
    r = await api.client.post(
        f"/programs/{pid}/enrolments", json={"participant_id": someone, "role": "mentee"}, headers=as_someone
    )
    assert r.status_code == 409
    r = await api.client.get(f"/programs/{pid}/enrolments/{other}", headers=as_someone)
    assert r.status_code == 403
    r = await api.client.patch(
        f"/programs/{pid}/enrolments/{someone}", json={"goals": ["leadership"]}, headers=as_someone
    )
    assert r.status_code == 200 and r.json()["goals"] == ["leadership"]


async def test_roles_and_tokens(api: Api) -> None:
    assert (await api.client.get("/programs")).status_code == 401
    r = await api.client.post(
        "/programs", json={"name": "x", "form": "team", "starts_on": "2026-01-01"}, headers=api.as_("integration")
    )
    assert r.status_code == 403
    assert (await api.client.get("/programs", headers=api.as_("integration"))).status_code == 200


async def test_org_change_republishes_affected_profiles(api: Api, stack: StackEndpoints) -> None:
    # The tail opens before anything is in the outbox, so every event of this program is seen: the
    # org change adds exactly one participant.updated after the two earlier events, in order.
    async with TopicTail(stack.kafka_bootstrap, ENROLLMENT.name) as tail:
        program = await _open(api)
        pid = program["program_id"]
        people = await _import(api, 30)
        mentee = people[5]
        r = await api.client.post(
            f"/programs/{pid}/enrolments",
            json={"participant_id": mentee.employee_id, "role": "mentee"},
            headers=api.admin,
        )
        assert r.status_code == 201
        moved = {**mentee.row(), "department": "Moved Dept"}
        r = await api.client.post("/org-chart", json=[moved], headers=api.admin)
        assert r.json() == {"imported": 1, "profiles_updated": 1}
        records = await tail.collect(lambda rec: rec.key == pid.encode(), count=3)
    envelopes = [from_kafka(rec.headers, rec.value) for rec in records]
    assert [type(e.data) for e in envelopes] == [ProgramOpened, ParticipantEnrolled, ParticipantUpdated]
    assert len({e.id for e in envelopes}) == 3
    assert json.loads(records[2].value)["profile"]["department"] == "Moved Dept"


def _locs(r: httpx.Response) -> list[list[Any]]:
    return [e["loc"] for e in r.json()["detail"]]


async def test_explicit_nulls_are_refused_naming_the_field(api: Api) -> None:
    pid = (await _open(api))["program_id"]
    for name in ("name", "cadence_days", "policy"):
        r = await api.client.patch(f"/programs/{pid}", json={name: None}, headers=api.admin)
        assert r.status_code == 422, r.text
        assert _locs(r) == [["body", name]]
    r = await api.client.patch(f"/programs/{pid}", json={"ends_on": "2026-12-31"}, headers=api.admin)
    assert r.status_code == 200 and r.json()["ends_on"] == "2026-12-31"
    r = await api.client.patch(f"/programs/{pid}", json={"ends_on": None}, headers=api.admin)
    assert r.status_code == 200 and r.json()["ends_on"] is None, "ends_on may be cleared"

    people = await _import(api, 20)
    someone = people[3].employee_id
    r = await api.client.post(
        f"/programs/{pid}/enrolments", json={"participant_id": someone, "role": "mentee"}, headers=api.admin
    )
    assert r.status_code == 201
    for name in ("goals", "skills_offered", "skills_sought", "conflicts_with"):
        r = await api.client.patch(f"/programs/{pid}/enrolments/{someone}", json={name: None}, headers=api.admin)
        assert r.status_code == 422, r.text
        assert _locs(r) == [["body", name]]
    r = await api.client.patch(f"/programs/{pid}/enrolments/{someone}", json={"languages": None}, headers=api.admin)
    assert r.status_code == 200, "languages: null means the HRIS languages again"


async def test_a_patched_enrolment_is_checked_again_as_a_whole(api: Api) -> None:
    pid = (await _open(api, "facilitated_group"))["program_id"]
    people = await _import(api, 20)
    mentor = people[2].employee_id
    r = await api.client.post(
        f"/programs/{pid}/enrolments",
        json={"participant_id": mentor, "role": "mentor", "capacity": 3},
        headers=api.admin,
    )
    assert r.status_code == 201
    # the patch itself is valid; the patched enrolment is not (a mentor's capacity is at least 1)
    r = await api.client.patch(f"/programs/{pid}/enrolments/{mentor}", json={"capacity": 0}, headers=api.admin)
    assert r.status_code == 422 and _locs(r) == [["body", "capacity"]]


async def test_a_partial_policy_keeps_the_form_defaults_and_must_fit_the_form(api: Api) -> None:
    program = await _open(api, "peer_group", policy={"reporting_line_depth": 3})
    policy = program["policy"]
    assert (policy["mentors_per_group"], policy["group_members_max"], policy["reporting_line_depth"]) == (0, 6, 3)
    assert policy["seniority_rule"] == "peers_within"

    pid = program["program_id"]
    r = await api.client.patch(
        f"/programs/{pid}", json={"policy": {"group_members_max": 5, "weights": {"skill": 7}}}, headers=api.admin
    )
    assert r.status_code == 200, r.text
    policy = r.json()["policy"]
    assert (policy["group_members_max"], policy["reporting_line_depth"]) == (5, 3), "a patch keeps the rest"
    assert policy["weights"] == {"skill": 7, "goal": 1, "cross_department": 1}

    bad = [
        ("peer_group", {"mentors_per_group": 1}, ["body", "policy", "mentors_per_group"]),
        ("team", {"mentors_per_group": 0}, ["body", "policy", "mentors_per_group"]),
        ("one_to_one", {"group_members_max": 3}, ["body", "policy", "group_members_max"]),
        ("reverse", {"seniority_rule": "mentor_above"}, ["body", "policy", "seniority_rule"]),
        ("team", {"mentor_per_group": 2}, ["body", "policy", "mentor_per_group"]),
        ("facilitated_group", {"weights": {"skill": -1}}, ["body", "policy", "weights", "skill"]),
    ]
    for form, changes, loc in bad:
        r = await api.client.post(
            "/programs",
            json={"name": "x", "form": form, "starts_on": "2026-01-01", "policy": changes},
            headers=api.admin,
        )
        assert r.status_code == 422, (form, changes, r.text)
        assert _locs(r) == [loc]
    r = await api.client.patch(f"/programs/{pid}", json={"policy": {"mentors_per_group": 2}}, headers=api.admin)
    assert r.status_code == 422 and _locs(r) == [["body", "policy", "mentors_per_group"]]


async def test_a_mentors_capacity_is_one_number_across_programs(api: Api, stack: StackEndpoints) -> None:
    people = await _import(api, 30)
    person = people[4].employee_id
    async with TopicTail(stack.kafka_bootstrap, ENROLLMENT.name) as tail:
        a = (await _open(api))["program_id"]
        b = (await _open(api, "facilitated_group"))["program_id"]
        c = (await _open(api))["program_id"]
        for pid, role, capacity in ((a, "mentee", None), (b, "mentor", 2), (c, "mentor", 2)):
            r = await api.client.post(
                f"/programs/{pid}/enrolments",
                json={"participant_id": person, "role": role, "capacity": capacity},
                headers=api.admin,
            )
            assert r.status_code == 201, r.text
        r = await api.client.patch(f"/programs/{b}/enrolments/{person}", json={"capacity": 4}, headers=api.admin)
        assert r.status_code == 200 and r.json()["capacity"] == 4
        updated = ParticipantUpdated.TYPE.encode()
        records = await tail.collect(
            lambda rec: rec.key in (a.encode(), b.encode(), c.encode()) and ("ce_type", updated) in rec.headers,
            count=2,
        )
    by_program = {rec.key.decode(): json.loads(rec.value) for rec in records}
    assert len(records) == 2 and set(by_program) == {b, c}, "one update each in B and C, none in A (a mentee)"
    assert by_program[c]["profile"]["capacity"] == 4
    r = await api.client.get(f"/programs/{c}/enrolments/{person}", headers=api.admin)
    assert r.json()["capacity"] == 4
    r = await api.client.get(f"/programs/{a}/enrolments/{person}", headers=api.admin)
    assert r.json()["capacity"] is None

    # a mentor enrolling elsewhere without a capacity keeps the one they declared, in one upload too
    d = (await _open(api))["program_id"]
    r = await api.client.post(
        f"/programs/{d}/enrolments/bulk", json=[{"participant_id": person, "role": "mentor"}], headers=api.admin
    )
    assert r.status_code == 200, r.text
    r = await api.client.get(f"/programs/{d}/enrolments/{person}", headers=api.admin)
    assert r.json()["capacity"] == 4
    newcomer = people[5].employee_id
    r = await api.client.post(
        f"/programs/{d}/enrolments", json={"participant_id": newcomer, "role": "mentor"}, headers=api.admin
    )
    assert r.status_code == 422 and _locs(r) == [["body", "capacity"]], "no capacity anywhere: refused"


async def test_concurrent_capacity_changes_and_imports_leave_one_capacity(api: Api) -> None:
    """Changes in two programs at once, with org imports in between: the row locks serialise them
    (no deadlock reaches the caller) and the person ends with one capacity everywhere."""
    people = await _import(api, 30)
    person = people[6]
    b = (await _open(api))["program_id"]
    c = (await _open(api))["program_id"]
    for pid in (b, c):
        r = await api.client.post(
            f"/programs/{pid}/enrolments",
            json={"participant_id": person.employee_id, "role": "mentor", "capacity": 1},
            headers=api.admin,
        )
        assert r.status_code == 201
    calls = []
    for i in range(12):
        pid = (b, c)[i % 2]
        calls.append(
            api.client.patch(
                f"/programs/{pid}/enrolments/{person.employee_id}", json={"capacity": 2 + i}, headers=api.admin
            )
        )
        if i % 4 == 0:
            moved = {**person.row(), "department": f"Dept {i}"}
            calls.append(api.client.post("/org-chart", json=[moved], headers=api.admin))
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [200] * len(responses)
    got = [
        (await api.client.get(f"/programs/{pid}/enrolments/{person.employee_id}", headers=api.admin)).json()
        for pid in (b, c)
    ]
    assert got[0]["capacity"] == got[1]["capacity"]
    assert got[0]["department"] == got[1]["department"]


async def test_errors_have_one_shape_with_path_locations_and_rows(api: Api) -> None:
    r = await api.client.get("/programs/prg-nope", headers=api.admin)
    assert r.status_code == 404
    assert r.json() == {"detail": [{"loc": ["path", "program_id"], "msg": "no program prg-nope", "type": "not_found"}]}
    pid = (await _open(api))["program_id"]
    r = await api.client.get(f"/programs/{pid}/enrolments/nobody", headers=api.admin)
    assert r.status_code == 404 and _locs(r) == [["path", "participant_id"]]

    doc = api.client  # the served document declares what the routes return
    spec = (await doc.get("/openapi.json")).json()
    enrol = spec["paths"]["/programs/{program_id}/enrolments"]["post"]["responses"]
    assert {"201", "404", "409", "422"} <= set(enrol)
    assert enrol["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}


async def test_a_bulk_upload_reports_parse_and_domain_errors_together_by_file_line(api: Api) -> None:
    pid = (await _open(api))["program_id"]
    people = await _import(api, 30)
    ids = [p.employee_id for p in people]
    r = await api.client.post(
        f"/programs/{pid}/enrolments", json={"participant_id": ids[0], "role": "mentee"}, headers=api.admin
    )
    assert r.status_code == 201
    csv = (
        "participant_id,role,capacity,skills_sought\n"
        f"{ids[1]},mentor,lots,\n"  # line 2: parse
        "nobody,mentee,,\n"  # line 3: not in the org chart
        f'{ids[0]},mentee,,"sql;\nnegotiation"\n'  # lines 4-5: already enrolled (a cell spans two lines)
        f"{ids[2]},mentee,,\n"  # line 6: fine
        f"{ids[2]},mentee,,\n"  # line 7: twice in the upload
    )
    r = await api.client.post(
        f"/programs/{pid}/enrolments/bulk", content=csv, headers={**api.admin, "content-type": "text/csv"}
    )
    assert r.status_code == 422, r.text
    assert [(e["loc"], e["type"]) for e in r.json()["detail"]] == [
        (["body", 2, "capacity"], "int_parsing"),
        (["body", 3, "participant_id"], "not_found"),
        (["body", 4, "participant_id"], "conflict"),
        (["body", 7, "participant_id"], "conflict"),
    ]
    assert "appears twice (row 6)" in r.json()["detail"][3]["msg"]


async def test_duplicate_org_ids_are_rejected_with_their_rows(api: Api) -> None:
    csv = "employee_id,manager_id,department,level\nA,,HR,9\nB,A,HR,5\nA,,Legal,8\nC,B,HR,x\nD,C,HR,2\n"
    r = await api.client.post("/org-chart", content=csv, headers={**api.admin, "content-type": "text/csv"})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert [e["loc"] for e in detail] == [["body", 4, "employee_id"], ["body", 5, "level"]], (
        "C failed to parse: D's manager is reported on C's own line, not as unknown"
    )
    assert detail[0]["msg"] == "duplicate employee_id A (first on row 2)"
    assert (await api.client.get("/org-chart/A", headers=api.admin)).status_code == 404


async def test_a_participant_lists_their_own_enrolments_and_team_ids_fit_the_form(api: Api) -> None:
    people = await _import(api, 20)
    me, other = people[5].employee_id, people[6].employee_id
    one = (await _open(api))["program_id"]
    team = (await _open(api, "team"))["program_id"]
    as_me = api.as_("participant", me)
    r = await api.client.post(
        f"/programs/{one}/enrolments", json={"participant_id": me, "role": "mentee", "team_id": "t1"}, headers=as_me
    )
    assert r.status_code == 422 and _locs(r) == [["body", "team_id"]]
    r = await api.client.post(
        f"/programs/{team}/enrolments", json={"participant_id": me, "role": "mentee"}, headers=as_me
    )
    assert r.status_code == 422 and _locs(r) == [["body", "team_id"]]
    for pid, extra in ((one, {}), (team, {"team_id": "t1"})):
        r = await api.client.post(
            f"/programs/{pid}/enrolments", json={"participant_id": me, "role": "mentee", **extra}, headers=as_me
        )
        assert r.status_code == 201, r.text
    r = await api.client.post(
        f"/programs/{one}/enrolments", json={"participant_id": other, "role": "mentee"}, headers=api.admin
    )
    assert r.status_code == 201

    r = await api.client.get("/me/enrolments", headers=as_me)
    assert r.status_code == 200
    assert sorted(e["program_id"] for e in r.json()["items"]) == sorted([one, team])
    assert {e["participant_id"] for e in r.json()["items"]} == {me}
    assert (await api.client.get("/me/enrolments", headers=api.admin)).status_code == 403


async def test_rejected_requests_publish_nothing_and_program_changes_publish_updates(
    api: Api, stack: StackEndpoints
) -> None:
    people = await _import(api, 20)
    async with TopicTail(stack.kafka_bootstrap, ENROLLMENT.name) as tail:
        pid = (await _open(api))["program_id"]
        bad = [
            {"participant_id": people[1].employee_id, "role": "mentee"},
            {"participant_id": "nobody", "role": "mentee"},
        ]
        r = await api.client.post(f"/programs/{pid}/enrolments/bulk", json=bad, headers=api.admin)
        assert r.status_code == 422
        r = await api.client.patch(f"/programs/{pid}", json={"policy": {"group_members_max": 4}}, headers=api.admin)
        assert r.status_code == 422
        r = await api.client.patch(f"/programs/{pid}", json={"name": "Leaders 2026"}, headers=api.admin)
        assert r.status_code == 200
        r = await api.client.post(f"/programs/{pid}/close", headers=api.admin)
        assert r.status_code == 200 and r.json()["status"] == "closed"
        r = await api.client.post(f"/programs/{pid}/enrolments", json=bad[0], headers=api.admin)
        assert r.status_code == 409 and _locs(r) == [["path", "program_id"]]
        records = await tail.collect(lambda rec: rec.key == pid.encode(), count=3)
    envelopes = [from_kafka(rec.headers, rec.value) for rec in records]
    assert [type(e.data) for e in envelopes] == [ProgramOpened, ProgramUpdated, ProgramUpdated], (
        "the rejected upload, policy and enrolment published nothing"
    )
    first, second = envelopes[1].data, envelopes[2].data
    assert isinstance(first, ProgramUpdated) and isinstance(second, ProgramUpdated)
    assert (first.name, first.status) == ("Leaders 2026", "open")
    assert second.status == "closed"


async def test_an_import_waits_for_a_withdrawal_and_does_not_republish_the_leaver(
    api: Api, stack: StackEndpoints
) -> None:
    """The import finds the program affected before the withdrawal commits, then waits on the program's
    row lock and reads its enrolments again: the leaver gets no participant.updated after leaving."""
    people = await _import(api, 20)
    leaver = people[4]
    pid = (await _open(api))["program_id"]
    r = await api.client.post(
        f"/programs/{pid}/enrolments", json={"participant_id": leaver.employee_id, "role": "mentee"}, headers=api.admin
    )
    assert r.status_code == 201
    async with TopicTail(stack.kafka_bootstrap, ENROLLMENT.name) as tail:
        async with api.pool.acquire() as conn:
            withdrawal = conn.transaction()
            await withdrawal.start()
            # what withdraw() does, held open: the program row locked, the enrolment withdrawn
            await conn.execute("SELECT 1 FROM programs WHERE program_id = $1 FOR UPDATE", pid)
            await conn.execute(
                "UPDATE enrolments SET status = 'withdrawn' WHERE program_id = $1 AND participant_id = $2",
                pid,
                leaver.employee_id,
            )
            moved = {**leaver.row(), "department": "Moved Dept"}
            importing = asyncio.create_task(api.client.post("/org-chart", json=[moved], headers=api.admin))
            await asyncio.sleep(1.0)
            assert not importing.done(), "the import waits for the program's row lock"
            await withdrawal.commit()
        r = await importing
        assert r.status_code == 200 and r.json() == {"imported": 1, "profiles_updated": 0}
        marker = await _open(api)  # an event after the import's: once it is here, the import's would be
        updated = ("ce_type", ParticipantUpdated.TYPE.encode())
        records = await tail.collect(
            lambda rec: (
                rec.key == marker["program_id"].encode() or (rec.key == pid.encode() and updated in rec.headers)
            ),
            count=1,
        )
    assert [rec.key.decode() for rec in records] == [marker["program_id"]], "nothing republished for the leaver"


async def test_enrolment_changes_wait_for_the_program_row_and_for_an_org_import(api: Api) -> None:
    """Withdraw and update hold the program's row (so its events commit in outbox order); enrol, bulk
    and update hold the org chart against an import (so no profile is built from a chart mid-change)."""
    people = await _import(api, 20)
    ids = [p.employee_id for p in people]
    pid = (await _open(api))["program_id"]
    for who in ids[:2]:
        r = await api.client.post(
            f"/programs/{pid}/enrolments", json={"participant_id": who, "role": "mentee"}, headers=api.admin
        )
        assert r.status_code == 201
    blockers = {
        "program row": f"SELECT 1 FROM programs WHERE program_id = '{pid}' FOR UPDATE",
        "org import": "LOCK TABLE org_people IN SHARE ROW EXCLUSIVE MODE",
    }
    calls: dict[str, list[Callable[[], Coroutine[Any, Any, httpx.Response]]]] = {
        "program row": [
            lambda: api.client.delete(f"/programs/{pid}/enrolments/{ids[0]}", headers=api.admin),
            lambda: api.client.patch(f"/programs/{pid}/enrolments/{ids[1]}", json={"goals": ["x"]}, headers=api.admin),
        ],
        "org import": [
            lambda: api.client.post(
                f"/programs/{pid}/enrolments", json={"participant_id": ids[2], "role": "mentee"}, headers=api.admin
            ),
            lambda: api.client.post(
                f"/programs/{pid}/enrolments/bulk",
                json=[{"participant_id": ids[3], "role": "mentee"}],
                headers=api.admin,
            ),
            lambda: api.client.patch(f"/programs/{pid}/enrolments/{ids[1]}", json={"goals": ["y"]}, headers=api.admin),
        ],
    }
    for what, sql in blockers.items():
        for call in calls[what]:
            async with api.pool.acquire() as conn:
                held = conn.transaction()
                await held.start()
                await conn.execute(sql)
                task = asyncio.create_task(call())
                await asyncio.sleep(0.5)
                assert not task.done(), f"waits for the {what}"
                await held.rollback()
            r = await task
            assert r.status_code < 300, r.text


async def test_a_value_the_database_cannot_store_is_a_422_not_a_500(api: Api) -> None:
    """A NUL (PostgreSQL text cannot hold one) is refused by the contract's string type, at the field."""
    r = await api.client.post(
        "/programs", json={"name": "Lead\u0000ers", "form": "one_to_one", "starts_on": "2026-03-01"}, headers=api.admin
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "name"] and "\u0000" not in r.text and "Lead" not in r.text
    assert (await api.client.get("/programs", headers=api.admin)).json() == []


async def test_concurrent_single_enrolments_get_full_manager_chains_and_a_racing_duplicate_is_a_409(api: Api) -> None:
    """Single enrolments read only the person's manager chain, yet each profile's chain is the one the
    whole chart gives; enrolments of one program run side by side, and the same person enrolled twice
    at once is one 201 and one 409 (never a 500)."""
    people = await _import(api, 400, seed=3)
    pid = (await _open(api))["program_id"]
    managers = {p.employee_id: p.manager_id for p in people}
    chosen = [p for p in people[1:] if p.level <= 3][:40]
    calls = [
        api.client.post(f"/programs/{pid}/enrolments", json={"participant_id": p.employee_id, "role": "mentee"},
                        headers=api.admin)
        for p in chosen
    ]  # fmt: skip
    twice = people[-1].employee_id
    calls += [
        api.client.post(f"/programs/{pid}/enrolments", json={"participant_id": twice, "role": "mentee"},
                        headers=api.admin)
        for _ in range(2)
    ]  # fmt: skip
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses[: len(chosen)]] == [201] * len(chosen)
    assert sorted(r.status_code for r in responses[len(chosen) :]) == [201, 409]
    for person, r in zip(chosen, responses, strict=False):
        assert r.json()["manager_chain"] == manager_chain(person.employee_id, managers)
