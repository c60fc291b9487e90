"""Bad input through each service's real app (its own schema on the local PostgreSQL, the local Kafka): one
error shape, the field named in ``loc``, the bad value never repeated, nothing stored.

What a careless or hostile client sends: a NUL (PostgreSQL text cannot hold one) or another control
character inside a field, a field the API does not have, a body that is not UTF-8 or nested too deeply to
parse, kilobytes of id in a path, a NUL in a path or a query. Each is refused before a handler runs (the
contracts' string types, ``extra="forbid"`` request bodies, ``runtime.errors``), so none reaches a database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from conftest import StackEndpoints, unique
from contracts.base import CONTROL_MESSAGE
from runtime.auth import issue_token
from services.enrollment.app import EnrollmentSettings
from services.enrollment.app import create as create_enrollment
from services.feedback.app import FeedbackSettings
from services.feedback.app import create as create_feedback
from services.matching.app import MatchingSettings
from services.matching.app import create as create_matching
from services.metrics.app import MetricsSettings
from services.metrics.app import create as create_metrics
from services.sessions.app import SessionsSettings
from services.sessions.app import create as create_sessions

pytestmark = pytest.mark.stack

SECRET = "SECRET-7f3a"
"""Put next to every bad character: an error body must never contain it."""
LONG_ID = "p" * 5000
JSON = {"content-type": "application/json"}
NOT_UTF8 = b'{"name": "\xff\xfe"}'
DEEP = b"[" * 100_000 + b"]" * 100_000


@dataclass(frozen=True)
class Bad:
    """A request and what it must give: the status and the ``loc`` of the one error item."""

    what: str
    method: str
    path: str
    status: int
    loc: list[str | int]
    json: Any = None
    content: bytes | None = None
    msg: str | None = None


def _body_cases(path: str, good: dict[str, Any], field: str, loc: list[str | int], bad: Any) -> list[Bad]:
    """The body's shared cases: a NUL in ``field`` (``bad`` is the poisoned value), an unknown field, a body
    that is not UTF-8, one nested too deeply."""
    return [
        Bad(f"NUL in {field}", "POST", path, 422, ["body", *loc], json={**good, field: bad}, msg=CONTROL_MESSAGE),
        Bad("unknown field", "POST", path, 422, ["body", "salary"], json={**good, "salary": SECRET}),
        Bad("body not UTF-8", "POST", path, 400, ["body"], content=NOT_UTF8),
        Bad("body nested too deeply", "POST", path, 400, ["body"], content=DEEP),
    ]


def _path_cases(template: str, name: str) -> list[Bad]:
    return [
        Bad("id of 5,000 characters", "GET", template.format(LONG_ID), 422, ["path", name]),
        Bad("NUL in the id", "GET", template.format(f"x%00{SECRET}"), 422, ["path", name]),
    ]


PROGRAM = {"name": "Leaders", "form": "one_to_one", "starts_on": "2026-03-01"}
ENROLMENT = {"participant_id": "E1", "role": "mentee"}
OVERRIDE = {"kind": "exclude_pair", "participant_ids": ["E1", "E2"], "reason": "they share a desk"}
GOAL = {"category": "communication", "wording": "present at the review", "steps": ["outline", "rehearse"]}
QUESTION = {"question_id": "useful", "text": "How useful?", "measure": "session_rating", "scale_min": 1, "scale_max": 5}
SURVEY = {"name": "Workshop follow-up", "kind": "session", "questions": [QUESTION]}
SURVEY_NUL_TEXT = {**SURVEY, "questions": [{**QUESTION, "text": f"How\x00{SECRET}"}]}

CASES: dict[str, list[Bad]] = {
    "enrollment": [
        *_body_cases("/programs", PROGRAM, "name", ["name"], f"Lead\x00{SECRET}"),
        *_body_cases("/programs/prg-x/enrolments", ENROLMENT, "goals", ["goals", 0], [f"lead\x00{SECRET}"]),
        Bad(
            "NUL in participant_id",
            "POST",
            "/programs/prg-x/enrolments",
            422,
            ["body", "participant_id"],
            json={**ENROLMENT, "participant_id": f"E\x00{SECRET}"},
        ),
        Bad(
            "ESC in a department",
            "POST",
            "/org-chart",
            422,
            ["body", 1, "department"],
            json=[{"employee_id": "E1", "department": f"Fin\x1b{SECRET}", "level": 1}],
            msg=CONTROL_MESSAGE,
        ),
        Bad(
            "unknown field in an org-chart row",
            "POST",
            "/org-chart",
            422,
            ["body", 1, "salary"],
            json=[{"employee_id": "E1", "department": "Finance", "level": 1, "salary": SECRET}],
        ),
        *_path_cases("/programs/{}", "program_id"),
        Bad("NUL in a query", "GET", f"/programs/prg-x/enrolments?after=E%00{SECRET}", 422, ["query", "after"]),
    ],
    "matching": [
        *_body_cases("/programs/prg-x/overrides", OVERRIDE, "reason", ["reason"], f"desk\x00{SECRET}"),
        Bad(
            "NUL in a participant id",
            "POST",
            "/programs/prg-x/overrides",
            422,
            ["body", "participant_ids", 1],
            json={**OVERRIDE, "participant_ids": ["E1", f"E\x00{SECRET}"]},
        ),
        Bad(
            "unknown field in a run",
            "POST",
            "/programs/prg-x/runs",
            422,
            ["body", "salary"],
            json={"dry_run": True, "salary": SECRET},
        ),
        *_path_cases("/runs/{}", "run_id"),
    ],
    "sessions": [
        *_body_cases("/relationships/grp-x/goals", GOAL, "wording", ["wording"], f"present\x00{SECRET}"),
        *_path_cases("/relationships/{}", "group_id"),
    ],
    "feedback": [
        *_body_cases("/surveys", SURVEY, "name", ["name"], f"Follow\x00{SECRET}"),
        Bad("NUL in a question", "POST", "/surveys", 422, ["body", "questions", 0, "text"], json=SURVEY_NUL_TEXT),
        *_path_cases("/surveys/{}", "survey_id"),
    ],
    "metrics": [
        Bad("unknown threshold", "PUT", "/programs/prg-x/thresholds", 422, ["body", "salary"], json={"salary": 1}),
        *_path_cases("/programs/{}/kpis", "program_id"),
        Bad("NUL in a query", "GET", f"/alerts?program_id=x%00{SECRET}", 422, ["query", "program_id"]),
    ],
}

FACTORIES: dict[str, Callable[[dict[str, Any]], FastAPI]] = {
    "enrollment": lambda s: create_enrollment(EnrollmentSettings(**s)),
    "matching": lambda s: create_matching(MatchingSettings(**s)),
    "sessions": lambda s: create_sessions(SessionsSettings(**s)),
    "feedback": lambda s: create_feedback(FeedbackSettings(**s)),
    "metrics": lambda s: create_metrics(MetricsSettings(**s)),
}


@dataclass
class Service:
    client: httpx.AsyncClient
    token: str


@pytest.fixture(params=sorted(CASES))
async def service(
    request: pytest.FixtureRequest, stack: StackEndpoints, scratch_schemas: list[str]
) -> AsyncIterator[tuple[str, Service]]:
    name: str = request.param
    schema = unique(f"{name}_bad")
    scratch_schemas.append(schema)
    settings = {
        "database_url": stack.admin_dsn, "db_schema": schema, "kafka_bootstrap": stack.kafka_bootstrap,
        "log_level": "WARNING", "consumer_offset_reset": "latest",
    }  # fmt: skip
    app = FACTORIES[name](settings)
    async with app.router.lifespan_context(app):
        token = issue_token(app.state.jwt, "admin-1", ["admin", "participant"])  # goals: a member's
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}") as client:
            yield name, Service(client, token)


async def test_bad_input_is_one_error_naming_the_field_never_repeating_it(service: tuple[str, Service]) -> None:
    name, svc = service
    headers = {"Authorization": f"Bearer {svc.token}"}
    problems = []
    for case in CASES[name]:
        if case.content is not None:
            r = await svc.client.request(case.method, case.path, content=case.content, headers={**headers, **JSON})
        else:
            r = await svc.client.request(case.method, case.path, json=case.json, headers=headers)
        detail = r.json().get("detail") if r.headers.get("content-type") == "application/json" else None
        got = (r.status_code, [item.get("loc") for item in detail] if isinstance(detail, list) else r.text[:200])
        if got != (case.status, [case.loc]) or SECRET in r.text or "ppppp" in r.text or len(r.content) > 2000:
            problems.append(f"{case.what}: {case.method} {case.path[:60]} -> {r.status_code} {r.text[:300]}")
        elif not all(isinstance(item.get("msg"), str) and item.get("type") for item in detail or []):
            problems.append(f"{case.what}: an item without msg or type: {r.text[:300]}")
        elif case.msg is not None and detail and detail[0]["msg"] != case.msg:
            problems.append(f"{case.what}: msg {detail[0]['msg']!r}, expected {case.msg!r}")
    assert not problems, "\n".join(problems)


async def test_nothing_of_a_refused_request_is_stored(stack: StackEndpoints, scratch_schemas: list[str]) -> None:
    """A program whose name holds a NUL is refused before the handler: no row, no outbox event."""
    schema = unique("enrollment_bad")
    scratch_schemas.append(schema)
    app = create_enrollment(
        EnrollmentSettings(
            database_url=stack.admin_dsn,
            db_schema=schema,
            kafka_bootstrap=stack.kafka_bootstrap,
            log_level="WARNING",
            consumer_offset_reset="latest",
        )
    )
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {issue_token(app.state.jwt, 'admin-1', ['admin'])}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://e") as client:
            refused = await client.post("/programs", json={**PROGRAM, "name": "A\x00B"}, headers=headers)
            accepted = await client.post("/programs", json={**PROGRAM, "name": "Two\tparts"}, headers=headers)
        assert (refused.status_code, accepted.status_code) == (422, 201), (refused.text, accepted.text)
        conn = await asyncpg.connect(stack.admin_dsn)
        try:
            names = [r["name"] for r in await conn.fetch(f'SELECT name FROM "{schema}".programs')]
            outbox = await conn.fetchval(f'SELECT count(*) FROM "{schema}".outbox')
        finally:
            await conn.close()
        assert (names, outbox) == (["Two\tparts"], 1)


def _bare_strings(node: Any, schemas: dict[str, Any], path: str, seen: frozenset[str]) -> list[str]:
    """The string schemas under ``node`` that say nothing about control characters (no pattern, enum, format)."""
    if isinstance(node, list):
        return [found for sub in node for found in _bare_strings(sub, schemas, path, seen)]
    if not isinstance(node, dict):
        return []
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen else _bare_strings(schemas[name], schemas, f"{path}", seen | {name})
    if node.get("type") == "string" and not {"pattern", "enum", "format", "const"} & set(node):
        return [path]
    found = []
    for key, sub in node.items():
        if key == "properties":
            for name, prop in sub.items():
                found += _bare_strings(prop, schemas, f"{path}.{name}", seen)
        elif key in ("items", "anyOf", "allOf", "oneOf", "additionalProperties"):
            found += _bare_strings(sub, schemas, path, seen)
    return found


def test_no_request_body_or_parameter_takes_a_string_that_may_hold_a_control_character() -> None:
    """Read from the documents the services serve: every string a client sends is an Id, a Tag or a Text
    (or an enum, a date), and every string parameter is checked (``runtime.errors.check_parameters``)."""
    from services.openapi import documents

    bare = []
    for service, doc in documents().items():
        schemas = doc["components"]["schemas"]
        for route, operations in doc["paths"].items():
            for method, operation in operations.items():
                where = f"{service} {method.upper()} {route}"
                for media, content in operation.get("requestBody", {}).get("content", {}).items():
                    if media.endswith("json"):  # a CSV upload's rows are the JSON rows' model
                        bare += _bare_strings(content.get("schema"), schemas, f"{where} body", frozenset())
                for parameter in operation.get("parameters", []):
                    bare += _bare_strings(parameter["schema"], schemas, f"{where} {parameter['name']}", frozenset())
    assert not bare, "\n".join(bare)
