"""The matching core: pure functions from a program's pool to groups, with no I/O.

``match(inp, seed)`` dispatches on the form: pairs (one-to-one, reverse one-to-one) are solved with
exact network flows; groups (facilitated, peer, team) with CP-SAT, level by level.
"""

from __future__ import annotations

from collections.abc import Callable

from contracts.policy import Form
from services.matching.domain.common import Checkpoint, Prepared, Progress, no_progress
from services.matching.domain.greedy import greedy_match
from services.matching.domain.groups import solve_groups
from services.matching.domain.lottery import lottery_order, lottery_ranks
from services.matching.domain.model import MatchingInput, MatchingResult, Override, OverrideKind
from services.matching.domain.pairs import solve_pairs
from services.matching.domain.peers import greedy_peer_groups
from services.matching.domain.teams import greedy_team_groups
from services.matching.domain.validate import validate

__all__ = [
    "MatchingInput",
    "MatchingResult",
    "Override",
    "OverrideKind",
    "greedy",
    "lottery_order",
    "lottery_ranks",
    "match",
    "validate",
]


def is_pairs(inp: MatchingInput) -> bool:
    return inp.policy.mentors_per_group == 1 and inp.policy.group_members_max == 1


def match(
    inp: MatchingInput,
    seed: int,
    *,
    time_limit_s: float | None = None,
    progress: Progress | None = None,
    on_stage: Callable[[Checkpoint], None] | None = None,
) -> MatchingResult:
    """The run's groups. ``on_stage`` receives each complete grouping a group run reaches, so that a
    supervisor may stop the run and keep the last (``stopped.stopped_result``)."""
    prep = Prepared.of(inp, seed)
    prep.on_stage = on_stage
    report = progress or no_progress
    if is_pairs(inp):
        return solve_pairs(prep, report)
    return solve_groups(prep, report, time_limit_s or inp.policy.time_limit_seconds)


def greedy(inp: MatchingInput, seed: int) -> MatchingResult:
    """The greedy baseline: pairs and facilitated groups with one mentor, peer groups and teams."""
    if inp.policy.mentors_per_group == 0:
        return greedy_peer_groups(Prepared.of(inp, seed))
    if inp.form is Form.TEAM:
        return greedy_team_groups(Prepared.of(inp, seed))
    return greedy_match(Prepared.of(inp, seed))
