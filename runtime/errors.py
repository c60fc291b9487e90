"""The one error shape of every HTTP API: FastAPI's ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``.

A service's domain raises :class:`FieldError` (or a subclass) naming the input at fault; one handler,
installed once per app by :func:`install_field_errors`, turns it into that shape with the status the
subclass says (404 not found, 403 forbidden, 409 conflict, 422 otherwise). Messages are written by the
service's code and name ids and fields, never the rejected text: they may be logged and are returned.

Enrollment predates this module and maps its own errors the same way (``services/enrollment/api.py``).

What FastAPI leaves unshaped is shaped here too: a body it cannot read (not UTF-8, nested too deeply) is a
400 at ``["body"]`` saying why; a string refused for a control character (``contracts.base``) says so in
words; and every path and query parameter is checked before the route runs (:func:`check_parameters`):
no control characters, and a path segment no longer than an id, so an unknown id's 404 names only an id
of bounded length and nothing reaches the database that it cannot store.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from contracts.base import CONTROL_CHARACTERS, CONTROL_MESSAGE, NO_CONTROL, message

log = logging.getLogger(__name__)

Where = Literal["body", "path", "query"]


class ErrorItem(BaseModel):
    """One thing wrong with a request, at the input named by ``loc``."""

    loc: list[str | int] = Field(
        description="where: body, path, query or header first, then the field (an upload's row number before "
        "its field); empty when the request as a whole is at fault",
        examples=[["body", "starts_on"]],
    )
    msg: str = Field(description="what is wrong, in words; never repeats the value sent", examples=["Field required"])
    type: str = Field(
        description="pydantic's error type for invalid input, else the kind: unauthorized, forbidden, not_found, "
        "conflict, value_error, bad_request, internal_error, ...",
        examples=["missing"],
    )


class ErrorOut(BaseModel):
    """The one error shape of every service (FastAPI's own for 422), for every 4xx and 5xx alike."""

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
    400: "a body that cannot be read: not UTF-8, or not parseable as its media type",
    401: "no bearer token, or one that is malformed, expired or not issued for this platform",
    403: "the token is valid but its role (or permission) does not allow this, or the input named in loc is "
    "not the caller's to act on",
    404: "an unknown id (or one the caller may not see), named in loc",
    409: "a conflict with the current state",
    422: "invalid input, per field",
    503: "the service cannot reach its database or broker right now; the request may be sent again after "
    "Retry-After seconds",
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
    detail = [ErrorItem(loc=list(e["loc"]), msg=_message(e), type=e["type"]).model_dump() for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


def _message(error: Any) -> str:
    """pydantic's message, in words where its own would show a regular expression or say too little."""
    ctx = error.get("ctx") or {}
    if error["type"] == "json_invalid" and isinstance(ctx.get("error"), str):
        return f"JSON decode error: {ctx['error']}"  # the json module's reason, e.g. "Expecting value"
    return message(error)


MAX_PATH_PARAMETER = 128
"""A path parameter is an id (``contracts.base.Id``: at most 128 characters) or shorter."""

_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")
"""One of the characters ``contracts.base.NO_CONTROL`` refuses."""


async def check_parameters(request: Request) -> None:
    """Every path and query parameter, before the route's own validation: no control characters (a NUL
    cannot be stored, and no id or filter holds one), and a path parameter no longer than an id. An
    unknown id's 404 repeats the id; bounded here, it never echoes kilobytes back. A 422 naming the
    parameter, never repeating it."""
    errors: list[dict[str, Any]] = []
    for name, value in request.path_params.items():
        if isinstance(value, str) and len(value) > MAX_PATH_PARAMETER:
            msg = f"String should have at most {MAX_PATH_PARAMETER} characters"
            errors.append({"loc": ("path", name), "msg": msg, "type": "string_too_long"})
        elif isinstance(value, str) and _CONTROL.search(value):
            errors.append({"loc": ("path", name), "msg": CONTROL_MESSAGE, "type": "string_pattern_mismatch"})
    for name, value in request.query_params.multi_items():
        # a name that is not a plain one is no parameter of any route: ignored, like any unknown one
        if _CONTROL.search(value) and len(name) <= MAX_PATH_PARAMETER and not _CONTROL.search(name):
            errors.append({"loc": ("query", name), "msg": CONTROL_MESSAGE, "type": "string_pattern_mismatch"})
    if errors:
        raise RequestValidationError(errors)


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


_UNREADABLE_BODY = "There was an error parsing the body"
"""FastAPI's 400 when reading the body failed for another reason than JSON syntax (which is a 422)."""


def _unreadable_body(exc: Exception) -> list[dict[str, Any]]:
    """FastAPI's 400 for a body it could not read, at ``["body"]`` and saying why (from the exception it
    chained: ``json.loads`` decoding the bytes, or recursing into them), never what the body held."""
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        msg = "the body is not valid UTF-8"
    elif isinstance(cause, RecursionError):
        msg = "the body is nested too deeply to parse"
    else:
        msg = "the body could not be parsed as its content type"
    return [ErrorItem(loc=["body"], msg=msg, type="bad_request").model_dump()]


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """The methods of the resource the request's path names. Starlette's own 405 names only the methods of
    the first route that matches the path, but FastAPI makes one route per method and path. The resource is
    the most specific documented path template that matches (``/programs/{id}/enrolments/bulk`` rather
    than ``/programs/{id}/enrolments/{participant_id}``), else every method some route serves there."""
    documented = _documented_methods(request.app.openapi(), request.url.path)
    if documented:
        return documented
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def _documented_methods(doc: dict[str, Any], path: str) -> list[str]:
    matching = [template for template in doc.get("paths", {}) if _template(template).fullmatch(path)]
    if not matching:
        return []
    specific = min(matching, key=lambda template: template.count("{"))
    return [method for method in _METHODS if method.lower() in doc["paths"][specific]]


@functools.cache
def _template(template: str) -> re.Pattern[str]:
    segments = ("[^/]+" if part.startswith("{") else re.escape(part) for part in template.split("/"))
    return re.compile("/".join(segments))


def install_http_errors(app: FastAPI) -> None:
    """Every ``HTTPException`` (401 and 403 from authentication too, FastAPI's 400 for a body it cannot
    parse, Starlette's 404 and 405) and every unhandled exception (a 500 that names nothing of the
    request) in the one shape, so a client handles one error model."""

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == _UNREADABLE_BODY:
            body = {"detail": _unreadable_body(exc)}
        else:
            body = {"detail": _http_error_detail(exc.status_code, exc.detail)}
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error in a request", extra={"error_type": type(exc).__name__})
        item = ErrorItem(loc=[], msg="internal error: the request was not completed", type="internal_error")
        return JSONResponse({"detail": [item.model_dump()]}, status_code=500)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(Exception, internal_error)
    # every route included from now on checks its parameters first (FastAPI prepends the app router's
    # dependencies to each route's when it is added)
    app.router.dependencies.append(Depends(check_parameters))


def install_error_docs(app: FastAPI) -> None:
    """Every operation of the app's OpenAPI document declares, in the one shape, the errors every
    operation of its kind can give, so a generated client knows them without each route listing them:

    - an operation behind a bearer token (``security``): 401 and 403;
    - an operation with a body: 400 (not UTF-8, not parseable) and 422;
    - an operation with parameters: 422.

    A route still lists its own 404 and 409 (with ``error_responses``): only it knows whether an id
    can be unknown or a state can conflict. FastAPI's own 422 model (``HTTPValidationError``, with
    ``input`` and ``ctx`` members the services never send) is replaced by :class:`ErrorOut`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_errors(generate())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_bounds(parameter: dict[str, Any]) -> None:
    """What :func:`check_parameters` enforces, said in the parameter's schema where it is a plain string
    (or a plain string or null)."""
    schema = parameter.get("schema", {})
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") != "string" or "enum" in branch or "format" in branch:
            continue
        branch.setdefault("pattern", NO_CONTROL)
        if parameter.get("in") == "path":
            branch["maxLength"] = min(branch.get("maxLength", MAX_PATH_PARAMETER), MAX_PATH_PARAMETER)


_REF = "#/components/schemas/ErrorOut"
_FASTAPI_ERROR_MODELS = ("HTTPValidationError", "ValidationError")


def document_errors(doc: dict[str, Any]) -> dict[str, Any]:
    """Adds the standard error responses to every operation of an OpenAPI document (in place)."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}").pop("$defs").items():
        schemas[name] = schema
    schemas["ErrorOut"] = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
    for operations in doc.get("paths", {}).values():
        for operation in operations.values():
            _document_operation(operation)
    for name in _FASTAPI_ERROR_MODELS:
        schemas.pop(name, None)
    return doc


def _document_operation(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    codes: list[int] = []
    if operation.get("security"):
        codes += [401, 403]
    if "requestBody" in operation:
        codes += [400, 422]
    if operation.get("parameters"):
        codes.append(422)
    codes.append(503)  # runtime.service.install_unavailable_errors: any operation may meet an outage
    for code in codes:
        responses.setdefault(str(code), {"description": _WHY[code]})
    for parameter in operation.get("parameters", []):
        _document_bounds(parameter)
    for status, response in responses.items():
        if status[0] in "45":
            response["content"] = {"application/json": {"schema": {"$ref": _REF}}}
            if response.get("description") in (None, "", "Validation Error"):
                response["description"] = _WHY.get(int(status), "an error")
