"""schemathesis against every service's live OpenAPI on the real stack, as an integration team would run it.

The five services run over real HTTP (``tests/live.py``) on the local Kafka and PostgreSQL. Before anything
is generated, the test makes a small world through the APIs and the bus: an org chart, a program with three
mentors and three mentees, a published matching run and a dry run, the relationships sessions built from
it, a session held, a goal, a note, an override and a survey. Path and query parameters then take those
ids half of the time (schemathesis dictionaries), so the generated requests reach real records as well as
unknown ones.

Each service is tested twice, with an admin token (holding ``feedback:read-text``) and with a member's
participant token, with every default check of schemathesis. The admin pass runs every phase (the schemas'
examples, the coverage phase's boundary and negative cases, fuzzing); the participant pass runs examples and
fuzzing only: the coverage phase probes input validation, which is the same whoever calls, and running it
twice would double the test's time.

Settings that differ from schemathesis' defaults, on purpose: ``positive_data_acceptance`` also accepts 422,
because a request valid by the schema can still break a domain rule that JSON Schema cannot say (an end date
before the start, a role the program's form has no place for, a what-if policy without ``dry_run``), and the
services answer that with a 422 naming the field; requests may take 120 s (not 10), because the services
read the shared topics, which other suites on the same broker may be flooding; Hypothesis' health checks
about slow or filtered generation are off. Generation is deterministic (a fixed seed, derandomised) and
bounded, and nothing asserts on time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from schemathesis.schemas import BaseSchema

from conftest import StackEndpoints
from services.feedback.api import READ_TEXT
from tests.live import LiveServices

pytestmark = pytest.mark.stack

SERVICES = ("enrollment", "matching", "sessions", "feedback", "metrics")
ROLES = ("admin", "participant")
MAX_EXAMPLES = 4
"""Fuzzed examples per operation and token, on top of the schema's examples and the coverage phase's cases."""
BUS_DEADLINE = 180.0
"""How long an effect may take to cross the bus: seconds when the broker is quiet, more when other suites flood
the shared topics (the services start at the latest offset, but still read what others publish after them)."""


@dataclass
class World:
    """The ids the test made, by the parameter name the APIs use for them."""

    ids: dict[str, list[str | int]] = field(default_factory=dict)
    member: str = ""

    def add(self, name: str, *values: str | int) -> None:
        self.ids.setdefault(name, []).extend(values)


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Waits for an effect that travels through Kafka: a condition with a deadline, never a sleep as proof."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


def make_world(live: LiveServices) -> World:
    world = World()
    x = live.schemas["enrollment"][-6:]
    admin = {"Authorization": live.bearer("hr-admin", "admin")}
    clients = {name: httpx.Client(base_url=url, timeout=120) for name, url in live.urls.items()}
    try:
        e, m, s, f = (clients[n] for n in ("enrollment", "matching", "sessions", "feedback"))
        people: list[dict[str, Any]] = [
            {"employee_id": f"{x}-ceo", "department": "Executive", "level": 9},
            {"employee_id": f"{x}-boss", "manager_id": f"{x}-ceo", "department": "Sales", "level": 8},
            *({"employee_id": f"{x}-M{i}", "manager_id": f"{x}-ceo", "department": d, "level": 6}
              for i, d in enumerate(("Finance", "Legal", "IT"))),
            *({"employee_id": f"{x}-e{i}", "manager_id": f"{x}-boss", "department": "Sales", "level": 2}
              for i in range(3)),
        ]  # fmt: skip
        for person in people:
            person.update(location="Milan", utc_offset_minutes=60, languages=["it", "en"])
        _ok(e.post("/org-chart", json=people, headers=admin))
        world.add("employee_id", *(p["employee_id"] for p in people))
        program = _ok(e.post("/programs", json={"name": "Fuzzed", "form": "one_to_one", "starts_on": "2026-01-01"},
                             headers=admin), 201)["program_id"]  # fmt: skip
        world.add("program_id", program)
        mentors, mentees = [f"{x}-M{i}" for i in range(3)], [f"{x}-e{i}" for i in range(3)]
        rows = [{"participant_id": p, "role": "mentor", "capacity": 2, "skills_offered": ["sql"]} for p in mentors]
        rows += [{"participant_id": p, "role": "mentee", "skills_sought": ["sql"]} for p in mentees]
        _ok(e.post(f"/programs/{program}/enrolments/bulk", json=rows, headers=admin))
        world.add("participant_id", *mentors, *mentees)

        def pooled() -> bool:
            r = m.get(f"/programs/{program}/pool", headers=admin)
            return r.status_code == 200 and r.json()["participants"] == len(rows)

        _until(pooled, BUS_DEADLINE, "matching to pool the enrolments")
        run = _ok(m.post(f"/programs/{program}/runs", json={"wait": True, "seed": 7}, headers=admin))
        assert run["status"] == "completed", run
        dry = _ok(m.post(f"/programs/{program}/runs", json={"wait": True, "seed": 8, "dry_run": True}, headers=admin))
        world.add("run_id", run["run_id"], dry["run_id"])

        def relationships() -> list[dict[str, Any]]:
            r = s.get(f"/programs/{program}/relationships", headers=admin)
            items: list[dict[str, Any]] = r.json()["items"] if r.status_code == 200 else []
            return items

        opened = run["summary"]["groups"]
        assert opened > 0, run
        _until(lambda: len(relationships()) == opened, BUS_DEADLINE, "sessions to open the relationships")
        group = relationships()[0]
        roles = {member["participant_id"]: member["role"] for member in group["members"]}
        mentor = next(p for p, role in roles.items() if role == "mentor")
        mentee = next(p for p, role in roles.items() if role == "mentee")
        world.member = mentee
        world.add("group_id", group["group_id"])
        as_mentor = {"Authorization": live.bearer(mentor, "participant")}
        as_mentee = {"Authorization": live.bearer(mentee, "participant")}
        held_at = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        session = _ok(s.post(f"/relationships/{group['group_id']}/sessions", json={"scheduled_for": held_at},
                             headers=as_mentee), 201)["session_id"]  # fmt: skip
        _ok(s.post(f"/sessions/{session}/held", json={"duration_minutes": 50, "attendees": [mentor, mentee]},
                   headers=as_mentor))  # fmt: skip
        goal = {"category": "communication", "wording": "present the plan", "steps": ["outline", "rehearse"]}
        world.add("goal_id", _ok(s.post(f"/relationships/{group['group_id']}/goals", json=goal, headers=as_mentee),
                                 201)["goal_id"])  # fmt: skip
        world.add("note_id", _ok(s.post(f"/sessions/{session}/notes", json={"text": "my note"}, headers=as_mentee),
                                 201)["note_id"])  # fmt: skip
        world.add("session_id", session)
        world.add("step", 1, 2)
        outsider = next(p for p in mentors if p != mentor)
        override = {"kind": "exclude_pair", "participant_ids": [mentee, outsider], "reason": "a known conflict"}
        world.add("override_id", _ok(m.post(f"/programs/{program}/overrides", json=override, headers=admin),
                                     201)["override_id"])  # fmt: skip
        surveys = _ok(f.get("/surveys", headers=admin))
        world.add("survey_id", *(survey["survey_id"] for survey in surveys))
    finally:
        for client in clients.values():
            client.close()
    return world


@pytest.fixture(scope="module")
def live(stack: StackEndpoints) -> Iterator[LiveServices]:
    with LiveServices(stack, "fuzz") as services:
        yield services


@pytest.fixture(scope="module")
def world(live: LiveServices) -> World:
    return make_world(live)


def test_a_run_reads_the_same_through_post_and_get_in_rfc3339_utc(live: LiveServices, world: World) -> None:
    """Before any fuzzing (which may close the program): the answer to the POST that started a run and a later
    GET of it are one document, its instants in UTC with a ``Z`` (they once differed in format)."""
    admin = {"Authorization": live.bearer("hr-admin", "admin")}
    program = world.ids["program_id"][0]
    with httpx.Client(base_url=live.urls["matching"], timeout=120) as m:
        posted = _ok(m.post(f"/programs/{program}/runs", json={"wait": True, "dry_run": True}, headers=admin))
        read = _ok(m.get(f"/runs/{posted['run_id']}", headers=admin))
        overrides = _ok(m.get(f"/programs/{program}/overrides", headers=admin))["items"]
    assert posted == read
    instants = [read["started_at"], read["completed_at"], *(o["created_at"] for o in overrides)]
    assert all(isinstance(t, str) and t.endswith("Z") and "T" in t for t in instants), instants
    assert all(datetime.fromisoformat(t).tzinfo == UTC for t in instants)


def config_for(base_url: str, authorization: str, world: World, *, coverage: bool) -> SchemathesisConfig:
    """Every default check, deterministic and bounded generation, the world's ids half of the time."""
    return SchemathesisConfig.from_dict(
        {
            "phases": {"coverage": {"enabled": coverage}},
            "seed": 20261130,
            "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
            "request-timeout": 120,
            "base-url": base_url,
            "headers": {"Authorization": authorization},
            "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES, "database": "none"},
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "3xx", 401, 403, 404, 409, 422]}},
            "dictionaries": {name: {"values": values} for name, values in world.ids.items()},
            "parameters": {name: {"dictionary": name, "probability": 0.5} for name in world.ids},
        }
    )


@pytest.fixture(params=[(s, r) for s in SERVICES for r in ROLES], ids=lambda p: f"{p[0]}-{p[1]}")
def api(request: pytest.FixtureRequest, live: LiveServices, world: World) -> BaseSchema:
    service, role = request.param
    # schemathesis 4.32's lazy schemas rename the test item through ``_nodeid``, an attribute pytest 9.2 no
    # longer has: give it one (only the reported subtest names depend on it).
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    if role == "admin":
        authorization = live.bearer("hr-admin", "admin", permissions=[READ_TEXT])
    else:
        authorization = live.bearer(world.member, "participant")
    url = live.urls[service]
    config = config_for(url, authorization, world, coverage=role == "admin")
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
def test_every_operation_conforms_to_its_openapi(case: Case[Any]) -> None:
    case.call_and_validate()
