"""The matching instance and its solution: the contract between the service, the CLI and the solver.

Pydantic models so that an exported instance can be rehearsed offline (``python -m
services.matching.cli``) and every solution can be checked by :func:`validate` without the solver.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from contracts.events import FitContribution, GroupMember, ParticipantProfile, UnmatchedReason
from contracts.policy import Form, MatchingPolicy


class OverrideKind(StrEnum):
    LOCK_PAIR = "lock_pair"
    """These two must be in one group (a mentor and a mentee, or two peers)."""
    EXCLUDE_PAIR = "exclude_pair"
    """These two must never be in one group (a conflict the HRIS does not know)."""


class Override(BaseModel):
    """An administrator's recorded, reasoned intervention; applied as a hard rule and counted."""

    model_config = ConfigDict(frozen=True)
    kind: OverrideKind
    participant_ids: tuple[str, str]
    reason: str = Field(min_length=3, max_length=500)


class MatchingInput(BaseModel):
    model_config = ConfigDict(frozen=True)
    program_id: str
    form: Form
    policy: MatchingPolicy
    participants: list[ParticipantProfile]
    existing_load: dict[str, int] = Field(
        default_factory=dict, description="slots each mentor already uses (active groups in any program)"
    )
    overrides: list[Override] = Field(default_factory=list)


class Group(BaseModel):
    group_id: str
    members: list[GroupMember]
    fit: float
    explanation: list[FitContribution]


class Unplaced(BaseModel):
    participant_id: str
    reason_code: UnmatchedReason
    reason: str


class SolveRecord(BaseModel):
    """One CP-SAT solve of a group run: which level, how large the model, what it reached, how long."""

    level: str
    component: int = 0
    variables: int
    constraints: int
    status: str = Field(description="OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN, or CLOCK_STOPPED (discarded)")
    objective: float | None = None
    bound: float | None = None
    budget_deterministic_s: float
    deterministic_s: float
    wall_s: float


class Stats(BaseModel):
    method: str = Field(description="min_cost_flow for pairs, cp_sat for groups, greedy for the baseline")
    status: str = Field(
        description="OPTIMAL, FEASIBLE, or GREEDY (the greedy baseline, or a group run's fallback when the "
        "solver found nothing in its budget)"
    )
    seed: int
    placed_count: int
    unplaced_count: int
    placed_bound: int = Field(description="proven upper bound on how many could be placed")
    total_fit: float
    fit_bound: float | None = Field(
        default=None, description="proven upper bound on total fit at the same placement and load levels"
    )
    fit_bound_relaxed: float | None = Field(
        default=None, description="bound ignoring capacity and fairness: what fairness and capacity cost"
    )
    gap: float | None = Field(
        default=None, description="proven relative gap of the last (fit) level given the levels above; 0 = optimal"
    )
    relaxed_gap: float | None = Field(
        default=None,
        description="(fit_bound_relaxed - total_fit) / fit_bound_relaxed: the price of capacity and fairness",
    )
    max_load_ratio: float
    load: dict[str, int] = Field(description="slots used per mentor after this run, all programs")
    wall_time_seconds: float
    overrides_applied: int = 0
    levels: dict[str, float] = Field(default_factory=dict, description="objective value reached at each level")
    notes: list[str] = Field(default_factory=list)
    solves: list[SolveRecord] = Field(
        default_factory=list, description="every CP-SAT solve of a group run, in order (also logged)"
    )


class MatchingResult(BaseModel):
    program_id: str
    form: Form
    seed: int
    groups: list[Group]
    unplaced: list[Unplaced]
    lottery: dict[str, int] = Field(description="lottery rank per participant (0 = drawn first)")
    stats: Stats
