"""Why a feedback command cannot be carried out, and which input is at fault.

Messages name ids, fields and ranges, never a comment's text: they reach HTTP responses and logs.
"""

from __future__ import annotations

from typing import Literal

Where = Literal["body", "path", "query"]


class DomainError(Exception):
    """Invalid input (HTTP 422); ``field`` is dotted (``answers.0.score``) and starts below ``where``."""

    kind = "value_error"
    status = 422

    def __init__(self, message: str, field: str | None = None, where: Where = "body") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.where = where

    @property
    def loc(self) -> list[str | int]:
        parts: list[str | int] = [int(p) if p.isdigit() else p for p in (self.field or "").split(".") if p]
        return [self.where, *parts]


class NotFound(DomainError):
    kind = "not_found"
    status = 404


class Forbidden(DomainError):
    """Well-formed, but not the caller's to answer: someone else's group, a session they missed."""

    kind = "forbidden"
    status = 403
