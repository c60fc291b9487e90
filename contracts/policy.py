"""A program's form and matching policy: published in ``program.opened`` and read by matching.

Defined once here because enrollment owns it and matching obeys it; both must agree on every rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, ValidationError, WithJsonSchema, model_validator

from contracts.base import ContractModel


class Form(StrEnum):
    """The forms of mentoring a program can run (see shared/DOMAIN.md)."""

    ONE_TO_ONE = "one_to_one"
    FACILITATED_GROUP = "facilitated_group"
    PEER_GROUP = "peer_group"
    TEAM = "team"
    REVERSE = "reverse"


class Role(StrEnum):
    MENTOR = "mentor"
    MENTEE = "mentee"
    PEER = "peer"


class SeniorityRule(StrEnum):
    """How levels must relate inside a group; chosen per form."""

    NONE = "none"
    MENTOR_ABOVE = "mentor_above"
    """Every mentor's level exceeds every mentee's by at least ``min_level_gap``."""
    MENTOR_BELOW = "mentor_below"
    """Reverse mentoring: every mentor's level is below every mentee's by at least ``min_level_gap``."""
    PEERS_WITHIN = "peers_within"
    """Peers: levels differ by at most ``max_peer_level_spread`` inside a group."""


class FitWeights(ContractModel):
    """Points per fit criterion; administrators tune them and see the effect in a dry run."""

    skill: int = Field(default=3, ge=0, le=100, description="per skill one side seeks and the other offers")
    goal: int = Field(default=1, ge=0, le=100, description="per goal tag shared between members")
    cross_department: int = Field(default=1, ge=0, le=100, description="per member pair from different departments")


class SeedPolicy(StrEnum):
    PER_RUN = "per_run"
    """A fresh seed per run, published with the run so an auditor can replay it."""
    FIXED = "fixed"
    """The program's ``seed`` every time: re-running on the same pool gives the same groups."""


class MatchingPolicy(ContractModel):
    """Hard rules and objectives of one program's matching."""

    mentors_per_group: int = Field(default=1, ge=0, le=5, description="0 for peer forms")
    group_members_min: int = Field(default=1, ge=1, le=500, description="mentees (or peers) per group, lower bound")
    group_members_max: int = Field(default=1, ge=1, le=500, description="mentees (or peers) per group, upper bound")
    reporting_line_depth: int = Field(
        default=2, ge=0, le=20, description="nobody shares a group with a manager up to this many levels, 0 = off"
    )
    max_same_department: int | None = Field(
        default=None, ge=1, description="at most this many members of one department per group, None = no bound"
    )
    require_shared_language: bool = True
    max_timezone_distance_hours: float | None = Field(default=6.0, ge=0, le=24)
    seniority_rule: SeniorityRule = SeniorityRule.MENTOR_ABOVE
    min_level_gap: int = Field(default=1, ge=0, le=20)
    max_peer_level_spread: int = Field(default=2, ge=0, le=20)
    weights: FitWeights = FitWeights()
    seed_policy: SeedPolicy = SeedPolicy.PER_RUN
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    time_limit_seconds: float = Field(default=30.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _coherent(self) -> MatchingPolicy:
        if self.group_members_min > self.group_members_max:
            raise ValueError("group_members_min must not exceed group_members_max")
        if self.seed_policy is SeedPolicy.FIXED and self.seed is None:
            raise ValueError("seed_policy 'fixed' needs a seed")
        return self


def default_policy(form: Form) -> MatchingPolicy:
    """Sensible defaults per form, so an administrator only states what differs."""
    match form:
        case Form.ONE_TO_ONE:
            return MatchingPolicy()
        case Form.FACILITATED_GROUP:
            return MatchingPolicy(group_members_min=3, group_members_max=8, max_same_department=3)
        case Form.PEER_GROUP:
            return MatchingPolicy(
                mentors_per_group=0,
                group_members_min=3,
                group_members_max=6,
                max_same_department=2,
                seniority_rule=SeniorityRule.PEERS_WITHIN,
            )
        case Form.TEAM:
            return MatchingPolicy(mentors_per_group=2, group_members_min=2, group_members_max=30)
        case Form.REVERSE:
            return MatchingPolicy(seniority_rule=SeniorityRule.MENTOR_BELOW)


class UnknownPolicyFields(ValueError):
    """A change names fields the policy does not have: a typo must not be ignored silently."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"unknown policy field(s): {', '.join(names)}")
        self.names = names


def merge_policy(base: MatchingPolicy, changes: Mapping[str, Any]) -> MatchingPolicy:
    """``changes`` (any subset of the fields, ``weights`` too) over ``base``, validated as a whole.

    So an administrator states only what differs from the form's defaults, and a partial change keeps
    the rest. Raises UnknownPolicyFields, or pydantic's ValidationError locating the field at fault.
    """
    unknown = sorted(set(changes) - set(MatchingPolicy.model_fields))
    weights = changes.get("weights")
    if isinstance(weights, Mapping):  # a typo in a weight must not be dropped silently either
        unknown += sorted(f"weights.{k}" for k in set(weights) - set(FitWeights.model_fields))
    if unknown:
        raise UnknownPolicyFields(unknown)
    merged: dict[str, Any] = base.model_dump(mode="json")
    for name, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    # Strict, as JSON: the changes come from a JSON body, where ``false`` is no seed and "3" no group size.
    return MatchingPolicy.model_validate_json(json.dumps(merged, default=str), strict=True)


MENTOR_FORMS = frozenset({Form.ONE_TO_ONE, Form.FACILITATED_GROUP, Form.TEAM, Form.REVERSE})


def policy_problems(form: Form, policy: MatchingPolicy) -> list[tuple[str, str]]:
    """What in ``policy`` contradicts ``form``, as (field, reason); empty when the two fit together."""
    problems: list[tuple[str, str]] = []
    if form is Form.PEER_GROUP:
        if policy.mentors_per_group != 0:
            problems.append(("mentors_per_group", "a peer_group program has no mentors: set 0"))
        if policy.seniority_rule not in (SeniorityRule.NONE, SeniorityRule.PEERS_WITHIN):
            problems.append(("seniority_rule", "a peer_group program takes seniority_rule none or peers_within"))
    if form in MENTOR_FORMS:
        if policy.mentors_per_group < 1:
            problems.append(("mentors_per_group", f"a {form} program needs at least 1 mentor per group"))
        if policy.seniority_rule is SeniorityRule.PEERS_WITHIN:
            problems.append(("seniority_rule", f"peers_within is for peer forms, not {form}"))
    if form is Form.ONE_TO_ONE:
        if policy.mentors_per_group > 1:
            problems.append(("mentors_per_group", "a one_to_one program pairs exactly 1 mentor with 1 mentee"))
        if policy.group_members_max != 1:
            problems.append(("group_members_max", "a one_to_one program pairs exactly 1 mentor with 1 mentee"))
    if form is Form.REVERSE and policy.seniority_rule is SeniorityRule.MENTOR_ABOVE:
        problems.append(("seniority_rule", "in reverse mentoring the mentor is the junior: use mentor_below or none"))
    if form is Form.PEER_GROUP and policy.group_members_max < 2:
        problems.append(("group_members_max", "a peer_group needs room for at least 2 peers"))
    return problems


PolicyChanges = Annotated[dict[str, Any], WithJsonSchema({"$ref": "#/components/schemas/MatchingPolicy"})]
"""A partial policy in an HTTP body: any subset of MatchingPolicy's fields. Documented with MatchingPolicy's
schema (every field of it is optional there) but validated only after the merge, because a subset checked
alone against the model defaults would be refused (``group_members_min: 3`` against the default maximum 1)."""


class PolicyRejected(ValueError):
    """A policy (or a change to one) that cannot be used; ``field`` is dotted inside the policy
    (``weights.skill``, ``mentors_per_group``) or empty when the policy as a whole is at fault."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def resolve_policy(form: Form, base: MatchingPolicy, changes: Mapping[str, Any]) -> MatchingPolicy:
    """``changes`` merged over ``base``, validated again as a whole and against the program's form.

    The one meaning of "this policy, with these changes": enrollment uses it for a program's policy and
    matching for a what-if, so a change means the same thing in both. Raises :class:`PolicyRejected`.
    """
    try:
        policy = merge_policy(base, changes)
    except UnknownPolicyFields as exc:
        raise PolicyRejected(str(exc), exc.names[0]) from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        if not where:
            # the policy's own cross-field rules name the field they are about first
            first = str(err.get("ctx", {}).get("error", "")).split(" ")[0]
            where = first if first in MatchingPolicy.model_fields else ""
        raise PolicyRejected(err["msg"], where) from exc
    problems = policy_problems(form, policy)
    if problems:
        name, message = problems[0]
        raise PolicyRejected(message, name)
    return policy
