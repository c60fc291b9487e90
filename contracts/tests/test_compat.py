"""The compatibility check itself: what it must flag and what it must let through."""

from __future__ import annotations

import copy
from typing import Any

from contracts.base import NO_CONTROL, TEXT
from contracts.compat import breaking_changes


def _schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "SurveyAnswered",
        "description": "v1",
        "properties": {
            "title": {"type": "string", "title": "Title"},
            "description": {"type": "string", "title": "Description"},
            "default": {"type": "integer"},
            "examples": {"type": "array", "items": {"type": "string"}},
            "rating": {"type": "integer", "description": "1-5"},
            "comment": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "reviewer": {"$ref": "#/$defs/Reviewer"},
        },
        "required": ["title", "description", "default", "examples", "rating", "reviewer"],
        "$defs": {
            "Reviewer": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "title": {"type": "string"}},
                "required": ["id", "title"],
            }
        },
    }


def test_fields_named_like_schema_keywords_are_compared_like_any_field() -> None:
    for name in ("title", "description", "default", "examples"):
        current = _schema()
        del current["properties"][name]
        current["required"].remove(name)
        assert breaking_changes(_schema(), current) == [f"{name}: field removed"], name
    current = _schema()
    current["properties"]["title"] = {"type": "integer"}
    assert breaking_changes(_schema(), current) == ["title: type changed"]
    current = _schema()
    del current["$defs"]["Reviewer"]["properties"]["title"]
    current["$defs"]["Reviewer"]["required"] = ["id"]
    assert breaking_changes(_schema(), current) == ["reviewer.title: field removed"]


def test_annotations_are_still_ignored() -> None:
    current = copy.deepcopy(_schema())
    current["description"] = "v1, reworded"
    current["properties"]["rating"]["description"] = "one to five"
    current["properties"]["rating"]["examples"] = [4]
    current["properties"]["title"]["title"] = "Heading"
    assert breaking_changes(_schema(), current) == []


def test_a_required_field_becoming_optional_is_breaking() -> None:
    current = _schema()
    current["required"].remove("rating")
    assert breaking_changes(_schema(), current) == ["rating: no longer required"]
    current = _schema()
    current["$defs"]["Reviewer"]["required"] = ["title"]
    assert breaking_changes(_schema(), current) == ["reviewer.id: no longer required"]


def test_an_optional_field_staying_optional_and_a_new_optional_field_are_fine() -> None:
    current = _schema()
    current["properties"]["channel"] = {"type": "string"}
    assert breaking_changes(_schema(), current) == []


def test_a_string_refusing_control_characters_is_no_change_but_another_pattern_is() -> None:
    """No published event held a control character (the producers' outboxes are PostgreSQL text), so a
    string gaining the pattern that refuses them breaks no reader or writer; any other pattern may."""
    current = _schema()
    current["properties"]["title"]["pattern"] = NO_CONTROL
    current["$defs"]["Reviewer"]["properties"]["id"]["pattern"] = NO_CONTROL
    current["properties"]["comment"]["anyOf"][0]["pattern"] = TEXT
    assert breaking_changes(_schema(), current) == []
    current["properties"]["description"]["pattern"] = "^[a-z]+$"
    assert breaking_changes(_schema(), current) == ["description: type changed"]
