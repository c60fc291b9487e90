"""Base model for every contract.

Event payloads are *open* on purpose (``extra="ignore"``): a published version may gain optional
fields, and a consumer built against the older schema must keep reading the newer messages. Producers
never emit unknown fields because they build payloads from these very models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

Id = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
"""Identifiers are opaque strings: employee ids come from the HRIS, others are UUIDs."""

Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True, to_lower=True)]
"""A short keyword (a skill, a goal, a language): compared case-insensitively, so stored lower-case."""


class ContractModel(BaseModel):
    """Open, immutable model: unknown fields are ignored so old readers survive additive changes."""

    model_config = ConfigDict(extra="ignore", frozen=True, use_enum_values=False)


def utcnow() -> datetime:
    """Timezone-aware now; naive datetimes never enter an event."""
    return datetime.now(UTC)
