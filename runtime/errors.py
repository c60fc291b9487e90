"""The one error shape of every HTTP API: FastAPI's ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``.

A service's domain raises :class:`FieldError` (or a subclass) naming the input at fault; one handler,
installed once per app by :func:`install_field_errors`, turns it into that shape with the status the
subclass says (404 not found, 403 forbidden, 409 conflict, 422 otherwise). Messages are written by the
service's code and name ids and fields, never the rejected text: they may be logged and are returned.

Enrollment predates this module and maps its own errors the same way (``services/enrollment/api.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

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

    async def request_invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        detail = [ErrorItem(loc=list(e["loc"]), msg=e["msg"], type=e["type"]).model_dump() for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(FieldError, field_error)
    app.add_exception_handler(RequestValidationError, request_invalid)
