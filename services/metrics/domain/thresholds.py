"""Per-program alert thresholds and their defaults, in one place."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Thresholds(BaseModel):
    """When a safety net fires. Defaults follow the guides: a relationship fades when no session was held
    for 1.5 times its cadence or it keeps rescheduling; feedback under 3 of 5 or falling by a quarter of
    the scale is a drop; a mentor above capacity, or at it across two or more programs, needs attention
    (one program filling a mentor to capacity is the plan); a program should place at least 80 % of its
    mentees and peers."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # ``true`` is not a threshold of 1

    fade_factor: float = Field(default=1.5, gt=0, le=20, description="no session for this many cadences")
    reschedules: int = Field(default=3, ge=1, le=50, description="cancellations/reschedules since the last session")
    rating_floor: float = Field(
        default=0.5, ge=0, le=1, description="mean of the last 3 session ratings under this share of the scale"
    )
    rating_drop: float = Field(
        default=0.25, gt=0, le=1, description="fall of that mean against the 3 ratings before, as a share of the scale"
    )
    mentor_load_ratio: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="mentor load (open relationships, all programs) / capacity above this, or at it with "
        "relationships in two or more programs",
    )
    match_rate_target: float = Field(default=0.8, ge=0, le=1, description="placed share of mentees and peers")
    at_risk_score: float = Field(default=50, ge=0, le=100, description="risk score counted as 'at risk'")


DEFAULT_THRESHOLDS = Thresholds()
