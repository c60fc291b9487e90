"""The one error shape of every HTTP API: FastAPI's ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``.

A service's domain raises :class:`FieldError` (or a subclass) naming the input at fault; one handler,
installed once per app by :func:`install_field_errors`, turns it into that shape with the status the
subclass says (404 not found, 403 forbidden, 409 conflict, 422 otherwise). Messages are written by the
service's code and name ids and fields, never the rejected text: they may be logged and are returned.

Enrollment predates this module and maps its own errors the same way (``services/enrollment/api.py``).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

Where = Literal["body", "path", "query"]


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    """The one error shape (FastAPI's own for 422), for 403, 404, 409 and 422 alike."""

    detail: list[ErrorItem]


class FieldError(Exception):
    """A command that cannot be carried out because of one input, named by ``loc``."""

    status = 422
    kind = "value_error"

    def __init__(self, message: str, *loc: str | int, where: Where = "body") -> None:
        super().__init__(message)
        self.message = message
        self.loc: list[str | int] = [where, *loc]


class NotFoundError(FieldError):
    status = 404
    kind = "not_found"


class ForbiddenError(FieldError):
    status = 403
    kind = "forbidden"


class ConflictError(FieldError):
    status = 409
    kind = "conflict"


_WHY = {
    403: "not allowed for this caller, the input named in loc",
    404: "an unknown id (or one the caller may not see), named in loc",
    409: "a conflict with the current state",
    422: "invalid input, per field",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """For a route's ``responses=``: the documented error codes, each with the one shape."""
    return {code: {"model": ErrorOut, "description": _WHY[code]} for code in codes}


def install_field_errors(app: FastAPI) -> None:
    """Field errors in the one shape, and request validation in it too, *without* FastAPI's ``input``
    and ``ctx`` members: a rejected body may be a confidential text, and an error never repeats it."""

    async def field_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FieldError)
        item = ErrorItem(loc=exc.loc, msg=exc.message, type=exc.kind).model_dump()
        return JSONResponse({"detail": [item]}, status_code=exc.status)

    app.add_exception_handler(FieldError, field_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)


async def _request_invalid(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 without its ``input`` and ``ctx`` members: a rejected body may be confidential text."""
    assert isinstance(exc, RequestValidationError)
    detail = [ErrorItem(loc=list(e["loc"]), msg=e["msg"], type=e["type"]).model_dump() for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "value_error",
    429: "too_many_requests",
    503: "unavailable",
}


def _http_error_detail(status: int, detail: Any) -> list[dict[str, Any]]:
    """A route's ``HTTPException`` in the one shape: a list detail is already itemised; a plain message
    becomes one item with the kind its status means (``not_found`` for 404, ...)."""
    if isinstance(detail, list) and all(isinstance(d, dict) and {"loc", "msg", "type"} <= set(d) for d in detail):
        return detail
    kind = _KINDS.get(status, "error")
    return [ErrorItem(loc=[], msg=str(detail), type=kind).model_dump()]


def install_http_errors(app: FastAPI) -> None:
    """Every ``HTTPException`` (401 and 403 from authentication too, FastAPI's 400 for a body it cannot
    parse, Starlette's 404 and 405) and every unhandled exception (a 500 that names nothing of the
    request) in the one shape, so a client handles one error model."""

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        body = {"detail": _http_error_detail(exc.status_code, exc.detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error in a request", extra={"error_type": type(exc).__name__})
        item = ErrorItem(loc=[], msg="internal error: the request was not completed", type="internal_error")
        return JSONResponse({"detail": [item.model_dump()]}, status_code=500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(Exception, internal_error)
