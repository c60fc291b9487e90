"""What FastAPI leaves unshaped, in the one shape: an unreadable body at ``["body"]`` saying why, a control
character named in words, path and query parameters checked before the route, and the bounds documented."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from pydantic import Field

from contracts.base import CONTROL_MESSAGE, NO_CONTROL, Id, RequestModel, Text
from runtime.errors import install_error_docs, install_http_errors


class Body(RequestModel):
    owner: Id
    note: Text = Field(max_length=50)


def _client() -> httpx.AsyncClient:
    app = FastAPI()
    install_http_errors(app)
    install_error_docs(app)
    router = APIRouter()  # included after the errors are installed, as runtime.service does

    @router.post("/things/{thing_id}")
    async def put(thing_id: str, body: Body, after: str | None = None) -> dict[str, Any]:
        return {"thing_id": thing_id, "after": after, **body.model_dump()}

    app.include_router(router)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _only(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    (item,) = r.json()["detail"]
    assert isinstance(item, dict) and set(item) == {"loc", "msg", "type"}
    return item


JSON = {"content-type": "application/json"}


async def test_a_body_that_is_not_utf8_or_nested_too_deeply_is_a_400_at_the_body_saying_why() -> None:
    async with _client() as client:
        item = _only(await client.post("/things/t1", content=b'{"owner": "\xff\xfe"}', headers=JSON), 400)
        assert (item["loc"], item["type"], item["msg"]) == (["body"], "bad_request", "the body is not valid UTF-8")
        item = _only(await client.post("/things/t1", content=b"[" * 100_000 + b"]" * 100_000, headers=JSON), 400)
        assert item["loc"] == ["body"] and "nested too deeply" in item["msg"]


async def test_json_syntax_errors_say_what_the_parser_expected() -> None:
    async with _client() as client:
        item = _only(await client.post("/things/t1", content=b'{"owner": SECRET', headers=JSON), 422)
        assert item["loc"][0] == "body" and item["type"] == "json_invalid"
        assert item["msg"].startswith("JSON decode error: Expecting value") and "SECRET" not in item["msg"]


async def test_a_control_character_in_a_body_field_is_named_in_words_never_repeated() -> None:
    async with _client() as client:
        r = await client.post("/things/t1", json={"owner": "E1\x00SECRET", "note": "ok"})
        assert _only(r, 422) == {"loc": ["body", "owner"], "msg": CONTROL_MESSAGE, "type": "string_pattern_mismatch"}
        assert "SECRET" not in r.text
        r = await client.post("/things/t1", json={"owner": "E1", "note": "a\x1bSECRET"})
        assert _only(r, 422)["loc"] == ["body", "note"] and "SECRET" not in r.text
        r = await client.post("/things/t1", json={"owner": "E1", "note": "two\nlines\tok"})
        assert r.status_code == 200 and r.json()["note"] == "two\nlines\tok"


async def test_an_unknown_field_in_a_request_body_is_named() -> None:
    async with _client() as client:
        r = await client.post("/things/t1", json={"owner": "E1", "note": "ok", "salary": 100_000})
        assert _only(r, 422) == {"loc": ["body", "salary"], "msg": "Extra inputs are not permitted",
                                 "type": "extra_forbidden"}  # fmt: skip
        assert "100000" not in r.text


async def test_path_and_query_parameters_are_checked_before_the_route_and_never_echoed() -> None:
    body = {"owner": "E1", "note": "ok"}
    async with _client() as client:
        r = await client.post(f"/things/{'p' * 5000}", json=body)
        assert _only(r, 422) == {"loc": ["path", "thing_id"], "msg": "String should have at most 128 characters",
                                 "type": "string_too_long"}  # fmt: skip
        assert "ppp" not in r.text
        r = await client.post("/things/t%00SECRET", json=body)
        assert _only(r, 422) == {"loc": ["path", "thing_id"], "msg": CONTROL_MESSAGE, "type": "string_pattern_mismatch"}
        r = await client.post("/things/t1?after=a%00SECRET", json=body)
        assert _only(r, 422)["loc"] == ["query", "after"] and "SECRET" not in r.text
        r = await client.post(f"/things/{'p' * 128}?after=E%C3%BC%09", json=body)  # 128 is an id; a tab in a query
        assert r.status_code == 422 and _only(r, 422)["loc"] == ["query", "after"]
        r = await client.post(f"/things/{'p' * 128}?after=E%C3%BC&a%00b=1", json=body)  # unknown names ignored
        assert r.status_code == 200 and r.json()["after"] == "Eü"


async def test_the_openapi_document_states_the_parameter_bounds() -> None:
    async with _client() as client:
        doc = (await client.get("/openapi.json")).json()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/things/{thing_id}"]["post"]["parameters"]}
    assert params["thing_id"]["maxLength"] == 128 and params["thing_id"]["pattern"] == NO_CONTROL
    assert params["after"]["anyOf"][0]["pattern"] == NO_CONTROL and "maxLength" not in params["after"]["anyOf"][0]
