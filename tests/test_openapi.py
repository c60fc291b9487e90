"""The published OpenAPI documents are the ones the code serves, typed enough to generate a client from:
every success response has a schema, every operation declares its errors in the one shape."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from runtime.auth import issue_token
from services.enrollment.app import EnrollmentSettings
from services.enrollment.app import create as create_enrollment
from services.openapi import OUT, documents, render

REF = "#/components/schemas/ErrorOut"


def test_openapi_documents_are_up_to_date() -> None:
    docs = documents()
    assert "enrollment" in docs
    for name, doc in docs.items():
        path = OUT / f"{name}.json"
        assert path.exists() and path.read_text() == render(doc), f"{path} is stale: run python -m services.openapi"


def test_enrollment_api_documents_its_errors_and_uploads() -> None:
    doc = documents()["enrollment"]
    bulk = doc["paths"]["/programs/{program_id}/enrolments/bulk"]["post"]
    assert set(bulk["requestBody"]["content"]) == {"application/json", "text/csv"}
    assert "422" in doc["paths"]["/programs"]["post"]["responses"]


def _operations() -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (service, method.upper(), path, operation)
        for service, doc in documents().items()
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
    ]


def test_every_success_response_has_a_typed_schema() -> None:
    untyped = []
    for service, method, path, operation in _operations():
        for status, response in operation["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            schemas = [media.get("schema") for media in response.get("content", {}).values()]
            if not schemas or any(not s or s == {} or s == {"type": "object"} for s in schemas):
                untyped.append(f"{service}: {method} {path} {status}")
    assert not untyped, f"success responses without a schema: {untyped}"


def test_every_operation_declares_its_errors_in_the_one_shape() -> None:
    missing, other_shapes = [], []
    for service, method, path, operation in _operations():
        responses = operation["responses"]
        expected = {"401", "403"} if operation.get("security") else set()
        expected.add("503")  # the database or broker away (runtime.service.install_unavailable_errors)
        if "requestBody" in operation:
            expected |= {"400", "422"}
        if operation.get("parameters"):
            expected.add("422")
        missing += [f"{service}: {method} {path} {code}" for code in sorted(expected - set(responses))]
        for status, response in responses.items():
            if status[0] in "45" and response["content"]["application/json"]["schema"] != {"$ref": REF}:
                other_shapes.append(f"{service}: {method} {path} {status}")
    assert not missing, f"undocumented errors: {missing}"
    assert not other_shapes, f"errors not in the one shape: {other_shapes}"
    for doc in documents().values():
        assert "HTTPValidationError" not in doc["components"]["schemas"], "FastAPI's 422 model is replaced"


def test_a_waited_run_and_a_started_run_are_both_documented() -> None:
    responses = documents()["matching"]["paths"]["/programs/{program_id}/runs"]["post"]["responses"]
    for status in ("200", "202"):
        assert responses[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RunOut"}
    assert {"404", "409", "422"} <= set(responses)


def _admin_client(app: FastAPI) -> httpx.AsyncClient:
    token = issue_token(app.state.jwt, "admin-docs", ["admin"])
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://docs", headers={"Authorization": f"Bearer {token}"})


async def test_a_body_that_is_not_utf8_is_a_400_in_the_one_shape() -> None:
    """Parsed before anything reaches the database: the app need not even be started."""
    app = create_enrollment(EnrollmentSettings(database_url="postgresql://docs@localhost/docs"))
    async with _admin_client(app) as client:
        r = await client.post(
            "/programs", content=b'{"name": "\xff\xfe"}', headers={"content-type": "application/json"}
        )
    assert r.status_code == 400, r.text
    assert [item["type"] for item in r.json()["detail"]] == ["bad_request"]


async def test_a_method_not_allowed_names_every_method_of_the_path() -> None:
    app = create_enrollment(EnrollmentSettings(database_url="postgresql://docs@localhost/docs"))
    async with _admin_client(app) as client:
        r = await client.put("/programs/prg-x")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, PATCH"
    assert r.json()["detail"][0]["type"] == "method_not_allowed"
    async with _admin_client(app) as client:
        r = await client.options("/programs/prg-x/enrolments/bulk")
    assert r.status_code == 405 and r.headers["allow"] == "POST", "the bulk upload, not an enrolment called bulk"
