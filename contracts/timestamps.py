"""One way to write an instant on the wire: RFC 3339 in UTC with a ``Z`` (``2026-11-30T03:03:49.235295Z``).

A client compares, sorts and parses timestamps from every service and every event alike, so none of them
may answer ``2026-11-30 03:03:49.235295+00:00`` in one place and ``...Z`` in another, or echo the offset a
caller happened to send. Every HTTP response model declares its instants as :data:`UtcDateTime`; the
CloudEvents ``ce_time`` header is written with :func:`rfc3339` too. An instant a client sends is read as
:data:`InstantIn`: RFC 3339 text only, never a number that pydantic would take for seconds since 1970.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema


def rfc3339(value: datetime) -> str:
    """The instant in UTC with a ``Z``; a naive value is taken as UTC already (the database's ``now()``)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDateTime = Annotated[
    datetime,
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": ["2026-11-30T03:03:49.235295Z"]}),
]
"""A ``datetime`` that is written as :func:`rfc3339` in JSON (and read as any RFC 3339 instant)."""


def _rfc3339_text(value: object) -> object:
    """Only text in ISO 8601 / RFC 3339 form (or a datetime already) is an instant here: ``0.5`` is not."""
    if isinstance(value, datetime) or (isinstance(value, str) and _parses(datetime.fromisoformat, value)):
        return value
    raise ValueError("an RFC 3339 date-time is expected, e.g. 2026-11-30T03:03:49Z")


def _iso_date_text(value: object) -> object:
    """Only ``YYYY-MM-DD`` text (or a date already) is a date here: ``0`` is not the first of January 1970."""
    if isinstance(value, date) or (isinstance(value, str) and _parses(date.fromisoformat, value)):
        return value
    raise ValueError("a date is expected as YYYY-MM-DD, e.g. 2026-11-30")


def _parses(parse: Callable[[str], object], text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


InstantIn = Annotated[datetime, BeforeValidator(_rfc3339_text)]
"""An instant in a request: RFC 3339 text (whether a time zone is required is the field's own rule)."""

DateIn = Annotated[date, BeforeValidator(_iso_date_text)]
"""A calendar date in a request: ``YYYY-MM-DD`` text only."""
