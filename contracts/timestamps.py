"""One way to write an instant on the wire: RFC 3339 in UTC with a ``Z`` (``2026-11-30T03:03:49.235295Z``).

A client compares, sorts and parses timestamps from every service and every event alike, so none of them
may answer ``2026-11-30 03:03:49.235295+00:00`` in one place and ``...Z`` in another, or echo the offset a
caller happened to send. Every HTTP response model declares its instants as :data:`UtcDateTime`; the
CloudEvents ``ce_time`` header is written with :func:`rfc3339` too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer, WithJsonSchema


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
