"""The peer fit bound of ``bench/peer_share.py`` at duals worth proving at, as the benchmark prints it.

Any u gives a proof (sum u + sum d_i, each d_i bounded by a best-first search), so the steps below only
choose where to prove: first subgradient steps on the root bound (``bench/peer_root.py``, cheap: every
peer's search at its root), then a few steps on the searched bound itself, each d_i's gradient taken
from its witness (the group met, or the open node whose bound it is). A step that does not lower the
proof halves the step length; the least proof met is the bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bench.peer_bound import PeerProblem, _shares, beside_row, problem_of, run_groupings
from bench.peer_root import descend
from bench.peer_share import shares
from services.matching.domain import MatchingInput, MatchingResult

F = npt.NDArray[np.float64]


@dataclass
class ShareBound:
    """``value`` = sum u + sum d_i (the proof); ``root`` the least proof with every search at its root
    (``descend``); ``estimate`` sum u + sum of the shares met at the last u (no proof: where the
    optimum may lie); ``trace`` the proof of each searched step."""

    value: float
    root: float
    estimate: float
    expansions: int
    seconds: float
    trace: list[float]


def refine(pp: PeerProblem, u: F, budget: int, steps: int, first: float = 1.0) -> tuple[F, ShareBound]:
    """Subgradient steps on the searched proof from ``u``: the best u met and its proof."""
    best_u, best = u, ShareBound(np.inf, np.inf, 0.0, 0, 0.0, [])
    step = first
    for _ in range(max(1, steps)):
        found = shares(pp, u, budget, with_slope=steps > 1)
        value = float(u.sum() + found.d.sum())
        best.trace.append(value)
        best.expansions += found.expansions
        if value < best.value:
            best_u, best.value, best.estimate = u, value, float(u.sum() + found.met.sum())
        else:
            step /= 2
        if found.slope is None:
            break
        u = best_u - step * found.slope if value >= best.value else u - step * found.slope
    return best_u, best


def share_bound(pp: PeerProblem, groupings: list[list[int]], budget: int, steps: int = 0) -> ShareBound:
    """The proof with ``budget`` expansions a peer at u from ``descend`` (from the shares of the run's
    grouping ``groupings``), refined first by ``steps`` steps on the bound with one expansion a peer
    (cheap; the u they find also serve the larger budget: at 500 peers, 12 such steps then 100
    expansions proved 9,396 in 143 s of CPU, 140 expansions alone 9,558 in 128 s)."""
    started = time.process_time()
    u, root, _ = descend(pp, _shares(pp, groupings))
    spent = 0
    if steps > 1:
        u, refined = refine(pp, u, 1, steps)
        spent = refined.expansions
    _, found = refine(pp, u, budget, 1)
    found.root, found.expansions = root, found.expansions + spent
    found.seconds = time.process_time() - started
    return found


def share_line(inp: MatchingInput, result: MatchingResult, old: float | None, budget: int, steps: int = 0) -> str:
    """This module's bound beside the row's, and the gap to the tighter: a line under a peer row."""
    placed = {m.participant_id for g in result.groups for m in g.members}
    pp = problem_of(inp, placed)
    found = share_bound(pp, run_groupings(inp, result), budget, steps)
    row, gap = beside_row(old, found.value, result.stats.total_fit)
    return (
        f"  peer fit bound: row's {row}, best-first shares {found.value:,.1f} "
        f"(proven; root {found.root:,.1f}, groups met {found.estimate:,.1f}, {budget} expansions a peer after {steps} "
        f"steps, {found.expansions:,} in all, {found.seconds:.0f} s CPU); gap to the tighter {gap}"
    )
