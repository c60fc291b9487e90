"""The result of a run stopped at its time limit: the last complete grouping it reached (a
``Checkpoint``), with every person it left out told so.

A run on a machine far busier than the limit allows is stopped from outside
(``adapters.solver_process``); what it had reached is built here, in the supervising process, without
any of the solver's state: only the input, the seed and the checkpoint's groups. The reasons are true of
what happened (the run was stopped before a group was settled for them), never a guess at why the
unfinished search would have left them out.
"""

from __future__ import annotations

import time

from contracts.events import UnmatchedReason
from services.matching.domain.common import Checkpoint, Prepared, make_group, unplaced
from services.matching.domain.group_result import Outcome, group_result
from services.matching.domain.model import MatchingInput, MatchingResult, Unplaced


def stopped_result(
    inp: MatchingInput, seed: int, checkpoint: Checkpoint, limit: float, elapsed: float
) -> MatchingResult:
    """The checkpoint's groups as the run's result (status ``GREEDY``, the fallback's published name),
    noted with the stage reached; each seeker it did not place is ``other``, naming the limit.
    ``elapsed``: the run's wall time until it was stopped (its statistics report it)."""
    prep = Prepared.of(inp, seed)
    prep.started = time.perf_counter() - elapsed
    groups = [make_group(prep, mentors, members) for mentors, members in checkpoint.groups]
    placed = {pid for _, members in checkpoint.groups for pid in members}
    group_of = {pid: k for k, (mentors, members) in enumerate(checkpoint.groups) for pid in [*mentors, *members]}
    prep.locks_applied = sum(1 for a, b in prep.locked if a in group_of and group_of[a] == group_of.get(b))
    seekers = sorted(prep.people[i].participant_id for i in prep.seekers)
    gone = [_stopped_before(pid, limit, checkpoint.stage) for pid in seekers if pid not in placed]
    why = (
        f"the time limit of {limit:g} s ran out before the run ended (the machine was busier than the limit "
        f"allows): the run was stopped, and the groups it had reached ({checkpoint.stage}) stand"
    )
    outcome = Outcome(
        groups, gone, None, placed_bound=checkpoint.placed_bound, fallback=True, why_greedy=why, locks_counted=True
    )
    return group_result(prep, outcome)


def _stopped_before(pid: str, limit: float, stage: str) -> Unplaced:
    return unplaced(
        pid,
        UnmatchedReason.OTHER,
        f"not placed: the run was stopped at its time limit of {limit:g} s after {stage}, before a group was "
        "settled for this person; a run with a longer limit, or on a less busy machine, may place them",
    )
