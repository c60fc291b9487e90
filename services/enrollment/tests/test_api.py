"""The enrollment API against the real database and broker: what an administrator and a participant
see, and what integration teams receive on Kafka."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bench.synthetic_org import enrolments, org_chart, to_csv
from conftest import StackEndpoints, TopicTail, unique
from contracts.envelope import from_kafka
from contracts.events import ParticipantEnrolled, ParticipantUpdated, ParticipantWithdrawn, ProgramOpened
from contracts.topics import ENROLLMENT
from runtime.auth import JwtConfig, issue_token
from services.enrollment.app import EnrollmentSettings, create

pytestmark = pytest.mark.stack

ORG_COLUMNS = ["employee_id", "manager_id", "department", "level", "location", "utc_offset_minutes", "languages"]


class Api:
    def __init__(self, client: httpx.AsyncClient, jwt: JwtConfig) -> None:
        self.client = client
        self.jwt = jwt

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
        database_url=stack.admin_dsn, db_schema=schema, kafka_bootstrap=stack.kafka_bootstrap, log_level="WARNING"
    )
    app: FastAPI = create(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://enrollment") as client:
            yield Api(client, app.state.jwt)


async def _open(api: Api, form: str = "one_to_one") -> dict[str, Any]:
    r = await api.client.post(
        "/programs", json={"name": "Leaders", "form": form, "starts_on": "2026-03-01"}, headers=api.admin
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
    errors = r.json()["errors"]
    assert {"row": 2, "field": "manager_id", "msg": "cycle in the manager chain: B -> C -> B"} in errors
    assert {"row": 4, "field": "manager_id", "msg": "unknown manager_id nobody"} in errors
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
    assert r.json()["errors"] == [
        {"row": 2, "field": "capacity", "msg": "Input should be a valid integer, unable to parse string as an integer"}
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
