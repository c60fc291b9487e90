"""Peer groups, fit level: moves and swaps between groups that keep the placed set and every rule.

A peer group's fit counts every pair in it, so fit is a clique-partitioning objective: CP-SAT improves
it slowly past a few dozen peers (the pruned model only sees each peer's best partners), and on large
pools the greedy's groups are the result. Moving a peer to another group, or swapping two peers of two
groups, keeps who is placed (so the placed count and the lottery keep their values exactly); only fit
changes. A move or swap is taken only when it keeps every rule of the group it lands in, read from
the state of the groups (``peer_state``), where each peer's best move is a few vector operations.
Deterministic: a fixed order of peers, best improvement per peer, rounds until none improves or the
work bound; the wall-clock deadline is checked between rounds only, and a round the clock interrupts
is not started, so the result is always the end of a complete round. Locked peers never move.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from services.matching.domain.peer_state import Columns, GroupState, PeerGroups

MAX_ROUNDS = 10
ROUND_WORK = 40_000
"""Rounds of the search: at most ROUND_WORK / peers (at least 3, at most MAX_ROUNDS), a deterministic
amount of work (on 2,000 benchmark peers, 90 % of the gain came in the first round, 99 % by the fifth;
the descent after the annealing gains again: 1.9 % on 10,000 peers after 100,000 proposals). Sized so
that the runs end well before their wall-clock deadline, where the clock would cut them and the same
seed would no longer give the same groups: with 60,000 and 30 the benchmark's 2,000 peers took 7.7-9.1 s
of their 10 s (deadline 8.5 s) on an idle machine, and were cut in 3 of 4 runs (2026-11-30); now 5.4 s,
fit 35,201 against 35,213 uncut. 10,000 peers: 33.3 s of 60 (deadline 51) instead of 40.5, fit 189,761
against 190,202 (4 rounds instead of 6); 500 peers unchanged (7,821). The same rounds (the same groups)
now cost less (peers checked in batches, ``quiet_peers``): the whole run took 3.7 s of CPU at 2,000
peers instead of 7.4, 24 s at 10,000 instead of 42 (2026-11-30, back to back on a machine loaded with
other work), so a machine twice as slow still ends the same rounds before the deadline."""
LOOK_BATCH = 64
"""The descent checks this many peers at once for a move or swap that might gain (``quiet_peers``)."""


def search_rounds(peers: int) -> int:
    return min(MAX_ROUNDS, max(3, ROUND_WORK // max(1, peers)))


def polish_peer_groups(
    pg: PeerGroups, groups: Sequence[Sequence[int]], deadline: float | None = None
) -> tuple[list[list[int]], bool]:
    """Better-fitting groups of the same peers: rounds of best moves and swaps per peer (in row order),
    until a round improves nothing, ``search_rounds`` ran, or the deadline passed (checked between
    rounds; the groups of the last complete round stand). Every group keeps every rule. Returns the
    groups and whether the clock cut the search short."""
    if not groups:
        return [], False
    state = GroupState(pg, groups)
    placed = sum(len(g) for g in groups)
    for _ in range(search_rounds(placed)):
        if deadline is not None and time.perf_counter() > deadline:
            return [sorted(ms) for ms in state.members if ms], True
        improved = False
        langs = state.langs()
        order = np.flatnonzero(state.home >= 0)
        for start in range(0, len(order), LOOK_BATCH):
            batch = order[start : start + LOOK_BATCH]
            since = state.clock
            maybe, windows, (fit_rows, compat_rows) = state.quiet_peers(batch, langs)
            for b, r in enumerate(map(int, batch)):
                if r in pg.frozen:
                    continue
                if not maybe[b] and state.nothing_to_gain(r, since, windows[b], langs):
                    continue
                improved |= _look(state, r, langs, state.columns_since(r, since, (fit_rows[b], compat_rows[b])))
        if not improved:
            break
    return [sorted(ms) for ms in state.members if ms], False


def _look(state: GroupState, r: int, langs: npt.NDArray[np.uint64], cols: Columns) -> bool:
    """Peer r's best move or swap, made if it gains (``langs`` kept up to date); whether it did."""
    k, gain = state.best_move(r, langs, cols)
    q, swap_gain = state.best_swap(r, cols)
    if gain <= 0 and swap_gain <= 0:
        return False
    touched = (int(state.home[r]), k if gain >= swap_gain else int(state.home[q]))
    if gain >= swap_gain:
        state.move(r, k)
    else:
        state.swap(r, q)
    for t in touched:
        langs[t] = state.group_lang(t)
    return True
