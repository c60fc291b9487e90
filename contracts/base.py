"""Base model and string types for every contract.

Event payloads are *open* on purpose (``extra="ignore"``): a published version may gain optional
fields, and a consumer built against the older schema must keep reading the newer messages. Producers
never emit unknown fields because they build payloads from these very models. A request body is the
opposite (:class:`RequestModel`, ``extra="forbid"``): an unknown field there is a typo or a client
that expects a setting the API does not have, and dropping it silently would hide that.

Every string of a contract is one of :data:`Id`, :data:`Tag` or :data:`Text`, and none of them holds a
control character (tab, line feed and carriage return are allowed in :data:`Text`). PostgreSQL's text
cannot hold NUL at all, and the other control characters are never meant: refused here, at parse time,
an API request gets a 422 naming the field and an event is a dead letter for what it is (a message that
can never be applied), instead of failing later at the database of whoever stores it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

CONTROL_CHARACTERS = r"\x00-\x1f\x7f"
"""The C0 control characters (U+0000 to U+001F) and DEL (U+007F), as the inside of a regular expression's
character class: the one place that says which characters a contract string refuses (``runtime.errors``
checks path and query parameters with it too)."""

NO_CONTROL = rf"^[^{CONTROL_CHARACTERS}]*$"
"""An id or a tag: none of :data:`CONTROL_CHARACTERS`."""

TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
"""Free text: as :data:`NO_CONTROL`, but tab, line feed and carriage return are allowed."""

CONTROL_PATTERNS = frozenset({NO_CONTROL, TEXT})
"""The patterns that only refuse control characters: an error message says so in words (:func:`message`),
and adding one to a published string is no breaking change (``contracts/compat.py``)."""

CONTROL_MESSAGE = "String should not contain control characters (U+0000 to U+001F, U+007F)"


def message(error: Mapping[str, Any]) -> str:
    """A pydantic error's message, in words where pydantic's own would show one of the patterns above."""
    ctx = error.get("ctx") or {}
    if error["type"] == "string_pattern_mismatch" and ctx.get("pattern") in CONTROL_PATTERNS:
        return CONTROL_MESSAGE
    return str(error["msg"])


Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True, pattern=NO_CONTROL)]
"""Identifiers are opaque strings: employee ids come from the HRIS, others are UUIDs."""

Tag = Annotated[
    str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True, to_lower=True, pattern=NO_CONTROL)
]
"""A short keyword (a skill, a goal, a language): compared case-insensitively, so stored lower-case."""

Text = Annotated[str, StringConstraints(pattern=TEXT)]
"""Free text (a name, a department, a reason): bound its length where it is used, ``Field(max_length=...)``."""


class ContractModel(BaseModel):
    """Open, immutable model: unknown fields are ignored so old readers survive additive changes."""

    model_config = ConfigDict(extra="ignore", frozen=True, use_enum_values=False)


class RequestModel(ContractModel):
    """A request body: closed (``extra="forbid"``), so an unknown field is a 422 naming it."""

    model_config = ConfigDict(extra="forbid")


def utcnow() -> datetime:
    """Timezone-aware now; naive datetimes never enter an event."""
    return datetime.now(UTC)
