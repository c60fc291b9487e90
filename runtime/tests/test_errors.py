"""The one error shape: field errors keep their status and name the field; request validation keeps
FastAPI's shape but never repeats the rejected input."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, Field

from runtime.errors import (
    ConflictError,
    FieldError,
    ForbiddenError,
    NotFoundError,
    install_field_errors,
    install_http_errors,
)


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


def _plain_app() -> FastAPI:
    from fastapi import HTTPException

    app = FastAPI()
    install_http_errors(app)

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, detail="no run r1")

    @app.get("/locked")
    async def locked() -> None:
        raise HTTPException(401, detail="missing bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/itemised")
    async def itemised() -> None:
        raise HTTPException(409, detail=[{"loc": ["body", "x"], "msg": "taken", "type": "conflict"}])

    @app.post("/body")
    async def body(payload: Body) -> Body:
        return payload

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret-marker-77 must never be echoed")

    return app


async def test_every_http_error_has_the_one_shape() -> None:
    transport = httpx.ASGITransport(app=_plain_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/missing")
        assert r.status_code == 404
        assert r.json() == {"detail": [{"loc": [], "msg": "no run r1", "type": "not_found"}]}
        r = await client.get("/locked")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["detail"][0]["type"] == "unauthorized"
        r = await client.get("/itemised")
        assert r.json()["detail"] == [{"loc": ["body", "x"], "msg": "taken", "type": "conflict"}]
        r = await client.get("/nowhere")
        assert r.status_code == 404 and r.json()["detail"][0]["type"] == "not_found"
        r = await client.delete("/missing")
        assert r.status_code == 405 and r.json()["detail"][0]["type"] == "method_not_allowed"
        r = await client.post("/body", content=b"\xff\xfe not utf-8", headers={"content-type": "application/json"})
        assert r.status_code in (400, 422) and set(r.json()["detail"][0]) == {"loc", "msg", "type"}
        r = await client.get("/boom")
        assert r.status_code == 500 and r.json()["detail"][0]["type"] == "internal_error"
        assert "secret-marker-77" not in r.text
