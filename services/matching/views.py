"""What matching's HTTP API answers: one pydantic model per response, so the OpenAPI document says it.

The run's summary is built by the handlers as a JSON object and stored as it is; :class:`RunSummary`
names every key a client can rely on and stays open (``extra="allow"``), so a figure added later reaches
old clients too instead of failing them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import UnmatchedReason
from contracts.policy import Role
from contracts.timestamps import UtcDateTime
from services.matching.domain.model import Group, OverrideKind, Unplaced


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class LoadSpread(BaseModel):
    """How evenly the mentors' slots are used after the run (load / capacity per mentor)."""

    mentors: int
    idle_mentors: int
    min_ratio: float
    median_ratio: float
    max_ratio: float


class MentorLoadChange(BaseModel):
    mentor_id: str
    groups_before: int
    groups_after: int


class RunDiff(BaseModel):
    """A dry run against the last published run: real moves among people both could place."""

    model_config = ConfigDict(extra="allow")

    people_considered: int
    people_moved: int
    moved_sample: list[str] = Field(description="up to 20 of the people moved")
    newly_placed: list[str]
    no_longer_placed: list[str]
    placed_delta: int
    fit_weights: dict[str, float]
    total_fit_before: float
    total_fit_after: float
    mentor_loads: list[MentorLoadChange]
    max_load_ratio_before: float
    max_load_ratio_after: float


_SUMMARY_EXAMPLE: dict[str, Any] = {
    "placed": 240,
    "placed_bound": 240,
    "unplaced": 10,
    "unplaced_by_reason": {"capacity_exhausted": 10},
    "groups": 120,
    "total_fit": 301.5,
    "status": "OPTIMAL",
    "method": "min_cost_flow",
    "seed": 7,
}


class RunSummary(BaseModel):
    """A finished run in figures: placed, unplaced by reason, fit, load and what the solver proved."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [_SUMMARY_EXAMPLE]})

    placed: int
    placed_bound: int | None = Field(default=None, description="proven upper bound on how many could be placed")
    unplaced: int
    unplaced_by_reason: dict[str, int] = Field(default_factory=dict, description="reason_code -> people")
    groups: int
    total_fit: float | None = None
    mean_fit: float | None = None
    max_load_ratio: float | None = None
    load_spread: LoadSpread | dict[str, float] | None = Field(default=None, description="empty without mentors")
    status: str | None = Field(default=None, description="the solver's status: OPTIMAL, FEASIBLE or GREEDY")
    gap: float | None = None
    relaxed_gap: float | None = None
    fit_bound: float | None = None
    method: str | None = None
    wall_time_seconds: float | None = None
    overrides_applied: int | None = None
    seed: int | None = None
    notes: list[str] = Field(default_factory=list)
    compared_to: str | None = Field(default=None, description="dry runs: the published run they are compared to")
    diff: RunDiff | None = Field(default=None, description="dry runs: what would change against compared_to")
    published_from: str | None = Field(default=None, description="the dry run this run published as it was")


class RunOut(BaseModel):
    """A run: its status, progress while it runs, then its summary (or its error)."""

    run_id: str = Field(examples=["run-1a2b3c4d5e6f"])
    program_id: str
    dry_run: bool
    seed: int = Field(description="the lottery seed; replaying the run's input with it gives the same groups")
    status: RunStatus
    progress: str | None = Field(description="the solver's last progress message while running")
    started_at: UtcDateTime
    completed_at: UtcDateTime | None
    summary: RunSummary | None = Field(description="null until the run has completed")
    input_digest: str | None = Field(default=None, description="digest of the exact input (single-run views)")
    error: str | None = Field(default=None, description="why a failed run failed (single-run views)")

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> RunOut:
        summary = row["summary"]
        extra = {"input_digest": row["input_digest"], "error": row["error"]} if "input_digest" in row else {}
        return cls(
            run_id=row["run_id"], program_id=row["program_id"], dry_run=row["dry_run"], seed=row["seed"],
            status=row["status"], progress=row["progress"], started_at=row["started_at"],
            completed_at=row["completed_at"], summary=json.loads(summary) if summary else None, **extra,
        )  # fmt: skip


class PoolOut(BaseModel):
    """Who matching knows about in a program (from enrollment's events) and who is in an active group."""

    participants: int
    by_role: dict[str, int] = Field(examples=[{"mentor": 40, "mentee": 110}])
    in_active_groups: int
    active_groups: int


class GroupsPage(BaseModel):
    total: int = Field(description="groups of the run in all")
    items: list[Group]


class UnplacedPage(BaseModel):
    total: int
    items: list[Unplaced]


class OverrideEffect(BaseModel):
    """An override a run applied to this person (its reason stays in the admin-only list)."""

    kind: OverrideKind
    with_: str = Field(alias="with", description="the other person of the pair")
    effect: str

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class PlacedExplanation(BaseModel):
    """A placed mentee or peer: their group with the contribution of every fit criterion."""

    participant_id: str
    placed: Literal[True] = True
    group: Group
    lottery_rank: int | None = Field(description="0 = drawn first; reproducible from the run's seed")
    overrides: list[OverrideEffect]


class UnplacedExplanation(BaseModel):
    """A person the run could not place, with the concrete reason."""

    participant_id: str
    placed: Literal[False] = False
    reason_code: UnmatchedReason
    reason: str
    lottery_rank: int | None
    overrides: list[OverrideEffect]


class MentorExplanation(BaseModel):
    """A mentor: why they carry what they carry after the run, or stayed idle."""

    participant_id: str
    role: Literal[Role.MENTOR] = Role.MENTOR
    capacity: int
    existing_load: int = Field(description="active groups before the run, in every program")
    new_groups: list[str]
    load_after: int
    load_ratio_after: float | None
    reason: str
    overrides: list[OverrideEffect]


Explanation = MentorExplanation | PlacedExplanation | UnplacedExplanation


class OverrideOut(BaseModel):
    """An override with who made it and why, and who revoked it and why (the audit trail)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "override_id": 7,
                    "kind": "exclude_pair",
                    "participant_ids": ["E000123", "E000456"],
                    "reason": "they share a project the HRIS does not know",
                    "created_by": "hr-admin",
                    "created_at": "2026-11-30T03:03:49.235295Z",
                    "active": True,
                    "revoked_by": None,
                    "revoked_reason": None,
                    "revoked_at": None,
                }
            ]
        }
    )

    override_id: int
    kind: OverrideKind
    participant_ids: list[str] = Field(min_length=2, max_length=2)
    reason: str
    created_by: str
    created_at: UtcDateTime
    active: bool
    revoked_by: str | None
    revoked_reason: str | None
    revoked_at: UtcDateTime | None


class OverridesPage(BaseModel):
    total: int
    items: list[OverrideOut]
