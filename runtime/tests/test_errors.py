"""The one error shape: field errors keep their status and name the field; request validation keeps
FastAPI's shape but never repeats the rejected input."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, Field

from runtime.errors import ConflictError, FieldError, ForbiddenError, NotFoundError, install_field_errors


class Body(BaseModel):
    text: str = Field(max_length=5)


def _app() -> FastAPI:
    app = FastAPI()
    install_field_errors(app)
    raised: dict[str, FieldError] = {
        "bad": FieldError("too far ahead", "scheduled_for"),
        "gone": NotFoundError("no group g1", "group_id", where="path"),
        "no": ForbiddenError("only the mentor", "group_id", where="path"),
        "late": ConflictError("already held", "session_id", where="path"),
    }

    @app.get("/raise/{kind}")
    async def fail(kind: str) -> None:
        raise raised[kind]

    @app.post("/echo")
    async def echo(body: Body) -> Body:
        return body

    return app


async def test_field_errors_have_their_status_and_name_the_field() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as client:
        expected = {
            "bad": (422, ["body", "scheduled_for"], "value_error"),
            "gone": (404, ["path", "group_id"], "not_found"),
            "no": (403, ["path", "group_id"], "forbidden"),
            "late": (409, ["path", "session_id"], "conflict"),
        }
        for kind, (status, loc, type_) in expected.items():
            r = await client.get(f"/raise/{kind}")
            assert r.status_code == status
            (item,) = r.json()["detail"]
            assert (item["loc"], item["type"]) == (loc, type_) and item["msg"]


async def test_request_validation_never_repeats_the_input() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as client:
        r = await client.post("/echo", json={"text": "a confidential sentence"})
    assert r.status_code == 422
    (item,) = r.json()["detail"]
    assert set(item) == {"loc", "msg", "type"} and item["loc"] == ["body", "text"]
    assert "confidential" not in r.text
