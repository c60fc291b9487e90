"""Timestamps are written one way, RFC 3339 in UTC with a Z, and read only from ISO text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts.timestamps import DateIn, InstantIn, UtcDateTime, rfc3339


class Stamped(BaseModel):
    at: UtcDateTime
    until: UtcDateTime | None = None


def test_an_instant_is_written_in_utc_with_a_z_whatever_its_offset() -> None:
    rome = timezone(timedelta(hours=1))
    stamped = Stamped(at=datetime(2026, 11, 30, 4, 3, 49, 235295, tzinfo=rome))
    assert stamped.model_dump_json() == '{"at":"2026-11-30T03:03:49.235295Z","until":null}'
    assert rfc3339(datetime(2026, 11, 30, 3, 3, 49, tzinfo=UTC)) == "2026-11-30T03:03:49Z"
    assert rfc3339(datetime(2026, 11, 30, 3, 3, 49)) == "2026-11-30T03:03:49Z", "naive means UTC"
    assert Stamped.model_json_schema()["properties"]["at"]["format"] == "date-time"


@pytest.mark.parametrize("value", [0, 0.5, True, "0.5", "yesterday"])
def test_a_number_is_neither_an_instant_nor_a_date(value: object) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(InstantIn).validate_python(value)
    with pytest.raises(ValidationError):
        TypeAdapter(DateIn).validate_python(value)


def test_iso_text_is_read() -> None:
    assert TypeAdapter(InstantIn).validate_python("2026-11-30T03:03:49Z") == datetime(
        2026, 11, 30, 3, 3, 49, tzinfo=UTC
    )
    assert TypeAdapter(DateIn).validate_python("2026-11-30") == date(2026, 11, 30)
