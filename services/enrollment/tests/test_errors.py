"""The error shape of the HTTP API, without the stack: whatever a handler raises, one shape."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.enrollment.api import install_error_handlers
from services.enrollment.domain.model import EnrolmentRequest, NotFound, RowError, RowErrors


def _app() -> httpx.AsyncClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/validation")
    async def validation() -> None:
        EnrolmentRequest.model_validate({"participant_id": "A", "role": "mentee", "goals": None})

    @app.get("/rows")
    async def rows() -> None:
        raise RowErrors([RowError(0, None, "not UTF-8"), RowError(3, "languages.1", "too long", "value_error")])

    @app.get("/missing/{program_id}")
    async def missing(program_id: str) -> None:
        raise NotFound(f"no program {program_id}", "program_id", "path")

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://enrollment")


async def test_a_pydantic_error_inside_a_handler_is_a_422_naming_the_field() -> None:
    r = await _app().get("/validation")
    assert r.status_code == 422
    assert [(e["loc"], e["type"]) for e in r.json()["detail"]] == [(["body", "goals"], "list_type")]


async def test_row_errors_carry_the_row_in_loc_and_the_whole_upload_is_body() -> None:
    r = await _app().get("/rows")
    assert r.status_code == 422
    assert r.json() == {
        "detail": [
            {"loc": ["body"], "msg": "not UTF-8", "type": "value_error"},
            {"loc": ["body", 3, "languages", 1], "msg": "too long", "type": "value_error"},
        ]
    }


async def test_an_unknown_id_in_the_path_is_reported_at_the_path() -> None:
    r = await _app().get("/missing/prg-x")
    assert r.status_code == 404
    assert r.json()["detail"][0]["loc"] == ["path", "program_id"]
