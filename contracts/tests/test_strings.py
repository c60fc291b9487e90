"""The contracts' string types: no control character anywhere, free text keeps its tabs and line breaks.

A NUL cannot be stored in PostgreSQL text; refused by the contract, an event carrying one is a dead letter
at parse time (not a failure at some consumer's database) and a request a 422 naming the field.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import Field, ValidationError

from contracts.base import (
    CONTROL_CHARACTERS,
    CONTROL_MESSAGE,
    NO_CONTROL,
    TEXT,
    ContractModel,
    Id,
    RequestModel,
    Tag,
    Text,
)
from contracts.envelope import Envelope, InvalidMessage, from_kafka, to_kafka
from contracts.events import ALL_EVENTS, ParticipantEnrolled
from contracts.examples import EXAMPLES

CONTROL = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f"]
"""Refused everywhere. Tab, line feed and carriage return are refused in ids and tags only."""


class Sample(RequestModel):
    id: Id
    tags: list[Tag] = Field(default_factory=list)
    text: Text | None = Field(default=None, max_length=20)


def _errors(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        Sample.model_validate(data)
    return [(e["loc"], e["type"]) for e in caught.value.errors()]


@pytest.mark.parametrize("char", CONTROL, ids=repr)
def test_a_control_character_is_refused_in_an_id_a_tag_and_free_text(char: str) -> None:
    assert _errors({"id": f"E{char}1"}) == [(("id",), "string_pattern_mismatch")]
    assert _errors({"id": "E1", "tags": ["ok", f"lead{char}ership"]}) == [(("tags", 1), "string_pattern_mismatch")]
    assert _errors({"id": "E1", "text": f"a{char}b"}) == [(("text",), "string_pattern_mismatch")]


@pytest.mark.parametrize("char", ["\t", "\n", "\r"], ids=repr)
def test_tabs_and_line_breaks_are_free_text_but_not_an_id(char: str) -> None:
    assert Sample.model_validate({"id": "E1", "text": f"line{char}next"}).text == f"line{char}next"
    assert _errors({"id": f"E{char}1"}) == [(("id",), "string_pattern_mismatch")]
    assert Sample.model_validate({"id": f"{char}E1{char}"}).id == "E1"  # stripped at the edges, as before


def test_the_patterns_refuse_the_one_set_of_control_characters() -> None:
    """TEXT spells its class out (a class cannot be subtracted from): it must stay the one set bar three."""
    chars = [chr(code) for code in range(0x100)]
    control = {c for c in chars if re.fullmatch(f"[{CONTROL_CHARACTERS}]", c)}
    assert control == {chr(code) for code in range(0x20)} | {"\x7f"}
    assert {c for c in chars if not re.fullmatch(NO_CONTROL, c)} == control
    assert {c for c in chars if not re.fullmatch(TEXT, c)} == control - {"\t", "\n", "\r"}


def test_ordinary_text_passes_unchanged_and_lengths_still_hold() -> None:
    sample = Sample.model_validate({"id": "E-1/ü", "tags": ["Public Speaking"], "text": "Crème brûlée\u00a0ok"})
    assert (sample.id, sample.tags, sample.text) == ("E-1/ü", ["public speaking"], "Crème brûlée\u00a0ok")
    assert _errors({"id": "E1", "text": "x" * 21}) == [(("text",), "string_too_long")]


def test_a_request_body_names_an_unknown_field_an_event_ignores_it() -> None:
    assert _errors({"id": "E1", "salary": 1}) == [(("salary",), "extra_forbidden")]

    class Open(ContractModel):
        id: Id

    assert Open.model_validate({"id": "E1", "salary": 1}) == Open(id="E1")


def test_every_string_of_every_event_refuses_control_characters() -> None:
    """No event field is a bare ``str``: each is an Id, a Tag or a Text (enums and dates are no strings)."""

    def strings(schema: Any, defs: dict[str, Any], path: str) -> list[tuple[str, Any]]:
        if isinstance(schema, dict):
            if "$ref" in schema:
                return strings(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, path)
            if schema.get("type") == "string" and "enum" not in schema and "format" not in schema:
                return [(path, schema.get("pattern"))]
            found = []
            for key, sub in schema.items():
                if key == "properties":
                    for name, prop in sub.items():
                        found += strings(prop, defs, f"{path}.{name}")
                elif key in ("items", "anyOf"):
                    found += strings(sub, defs, path)
            return found
        if isinstance(schema, list):
            return [s for sub in schema for s in strings(sub, defs, path)]
        return []

    found = [
        s for m in ALL_EVENTS for s in strings(m.model_json_schema(), m.model_json_schema().get("$defs", {}), m.TYPE)
    ]
    assert len(found) > 90, len(found)  # the walk reaches the strings: ids, tags, nested profiles, lists
    for path, pattern in found:
        assert pattern is not None, f"{path} is a bare str: use contracts.base Id, Tag or Text"


def _record_with(change: dict[str, Any]) -> tuple[list[tuple[str, bytes]], bytes]:
    record = to_kafka(Envelope(data=EXAMPLES[ParticipantEnrolled.TYPE]))
    body = json.loads(record.value)
    body["profile"].update(change)
    return record.headers, json.dumps(body).encode()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"participant_id": "E1\x00SECRET"}, "profile.participant_id"),
        ({"goals": ["lead\x00SECRET"]}, "profile.goals.0"),
        ({"department": "Fin\x00SECRET"}, "profile.department"),
        ({"department": "Fin\x1bSECRET"}, "profile.department"),
        ({"location": "Mil\x7fSECRET"}, "profile.location"),  # DEL stands raw in JSON, unescaped
    ],
)
def test_an_event_carrying_a_nul_is_invalid_at_parse_time_naming_the_field(change: dict[str, Any], field: str) -> None:
    headers, value = _record_with(change)
    with pytest.raises(InvalidMessage, match=re.escape(f"{field}: {CONTROL_MESSAGE}")) as caught:
        from_kafka(headers, value)
    assert "SECRET" not in str(caught.value)


def test_an_event_with_a_line_break_in_free_text_is_still_read() -> None:
    headers, value = _record_with({"department": "Finance\nand Risk"})
    data = from_kafka(headers, value).data
    assert isinstance(data, ParticipantEnrolled)
    assert data.profile.department == "Finance\nand Risk"
