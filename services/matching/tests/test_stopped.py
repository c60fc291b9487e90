"""Every complete grouping a run hands out (``Prepared.stage_done``) must stand as a result on its own
(``stopped.stopped_result``): a run stopped at its limit publishes the last one. Checked on every form,
for every checkpoint, against the independent oracle (``validate``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bench.matching_pools import teams
from bench.synthetic_pool import instance
from contracts.events import UnmatchedReason
from contracts.policy import Form
from services.matching.domain import MatchingInput, match, validate
from services.matching.domain.common import Checkpoint
from services.matching.domain.stopped import stopped_result


def _facilitated(mentors_per_group: int, tight: bool) -> MatchingInput:
    inp = instance(150, Form.FACILITATED_GROUP, seed=21, conflicts=0.1)
    changes: dict[str, object] = {"mentors_per_group": mentors_per_group, "time_limit_seconds": 2.0}
    if tight:
        changes.update({"max_same_department": 1, "max_timezone_distance_hours": 3.0})
    return inp.model_copy(update={"policy": inp.policy.model_copy(update=changes)})


def _peers() -> MatchingInput:
    inp = instance(60, Form.PEER_GROUP, seed=22)
    return inp.model_copy(update={"policy": inp.policy.model_copy(update={"time_limit_seconds": 2.0})})


POOLS: dict[str, Callable[[], MatchingInput]] = {
    "facilitated": lambda: _facilitated(1, tight=False),
    "facilitated tight": lambda: _facilitated(1, tight=True),
    "co-facilitated": lambda: _facilitated(2, tight=False),
    "peers": _peers,
    "teams": lambda: teams(40),
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_every_checkpoint_stands_as_a_valid_result(name: str) -> None:
    inp = POOLS[name]()
    checkpoints: list[Checkpoint] = []
    final = match(inp, 3, on_stage=checkpoints.append)
    assert checkpoints, "a group run hands out at least one complete grouping"
    seekers = {p.participant_id for p in inp.participants if p.role.value != "mentor"}
    for checkpoint in checkpoints:
        result = stopped_result(inp, 3, checkpoint, inp.policy.time_limit_seconds, elapsed=1.0)
        assert validate(inp, result) == [], checkpoint.stage
        placed = {pid for _, members in checkpoint.groups for pid in members}
        assert result.stats.placed_count == len(placed)
        assert {u.participant_id for u in result.unplaced} == seekers - placed
        assert all(u.reason_code is UnmatchedReason.OTHER for u in result.unplaced)
        assert result.stats.placed_bound >= final.stats.placed_count
    last = checkpoints[-1]
    assert sorted(len(members) for _, members in last.groups) == sorted(
        len([m for m in g.members if m.role.value != "mentor"]) for g in final.groups
    ), "the last checkpoint is the run's own groups"
