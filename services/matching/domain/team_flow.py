"""Teams, the load and fit levels as network flows over every eligible mentor.

Once the placed teams are decided (levels 1 and 2), what is left is an assignment: each placed team
takes ``mentors_per_group`` distinct eligible mentors with room, a mentor at most its free slots. That
is a flow, exact and fast on the *full* eligibility graph (the CP-SAT model of 2,000 teams keeps 10
mentors per team and its load levels rarely finished inside the limit), except for one rule a flow
cannot say: two mentors of one team may not be in each other's reporting line or declared conflicts.

- Max load ratio: the ratio is one of the few values (load + n) / capacity; a mentor may take at most
  its groups allowed under a threshold, and whether every placed team still gets its mentors under it
  is a max flow, monotone in the threshold: binary search gives the least threshold that holds.
- Mentors used, then fit: one min-cost flow under that threshold in which each mentor's first team is
  worth more than all fit together (so the flow first uses as many mentors as it can) and each
  (team, mentor) arc is worth its fit: the lexicographic optimum of the two levels.

Both relax only the mentor-mentor rule, so when the flow's assignment keeps it (checked), its ratio,
mentors used and fit are the proven optima for the placed teams. When it does not (or a lock must
hold), the flow's answer is dropped and the CP-SAT levels decide, as before. Deterministic (integer
flows on sorted inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import max_flow, min_cost_flow

from services.matching.domain.common import Prepared
from services.matching.domain.load_levels import RATIO_SCALE, ratio_of
from services.matching.domain.rules import BoolArray, IntArray

REPAIR_ROUNDS = 30
"""Rounds of removing the arcs that break the mentor-mentor rule and solving the flow again."""


@dataclass(frozen=True)
class TeamAssignment:
    mentors: dict[str, list[int]]
    """Each placed team's mentors (positions in ``prep.mentor_ids``)."""
    ratio: int
    """The least max load ratio (scaled by RATIO_SCALE) the placed teams can have: proven."""
    used_bound: int
    """The most mentors any assignment can use at that ratio (the relaxed flow's): proven."""
    fit_bound: int | None
    """The most fit any assignment using ``used_bound`` mentors can have; None when this assignment
    uses fewer (the rule cost a mentor), as then the relaxed flow bounds nothing it is compared with."""

    @property
    def proven(self) -> bool:
        return self.fit_bound is not None and self.fit_bound == self.fit

    @property
    def used(self) -> int:
        return len({k for ks in self.mentors.values() for k in ks})

    fit: int = 0


def _allowed(prep: Prepared, free: IntArray, threshold: int) -> IntArray:
    """Teams each mentor may take with its ratio at most ``threshold`` (never above its free slots)."""
    out = np.zeros(len(free), dtype=np.int64)
    for k, mentor in enumerate(prep.mentor_ids):
        n = (threshold * prep.capacity[mentor]) // RATIO_SCALE - prep.load[mentor] if prep.capacity[mentor] else 0
        out[k] = max(0, min(int(free[k]), n))
    return out


def _fits_under(teams: list[str], options: Mapping[str, IntArray], per: int, allowed: IntArray) -> bool:
    """Every placed team gets ``per`` distinct mentors, no mentor above ``allowed`` (max flow)."""
    flow = max_flow.SimpleMaxFlow()
    source, sink, mbase = 0, 1, 2 + len(teams)
    for t, team in enumerate(teams):
        flow.add_arc_with_capacity(source, 2 + t, per)
        for k in options[team]:
            flow.add_arc_with_capacity(2 + t, mbase + int(k), 1)
    for k in map(int, np.flatnonzero(allowed)):
        flow.add_arc_with_capacity(mbase + k, sink, int(allowed[k]))
    if flow.solve(source, sink) != flow.OPTIMAL:
        raise RuntimeError("team ratio flow failed")
    return int(flow.optimal_flow()) == per * len(teams)


def least_ratio(
    prep: Prepared, teams: list[str], options: Mapping[str, IntArray], per: int, free: IntArray
) -> int | None:
    """The least scaled max load ratio under which every placed team gets its mentors (the mentor-mentor
    rule relaxed): binary search over the values the ratio can take. None if even all slots do not do."""
    floor = max((ratio_of(prep, m, 0) for m in prep.mentor_ids if prep.capacity[m]), default=0)
    values = {ratio_of(prep, m, n) for k, m in enumerate(prep.mentor_ids) for n in range(1, int(free[k]) + 1)}
    thresholds = sorted({floor} | {v for v in values if v > floor})
    if not _fits_under(teams, options, per, _allowed(prep, free, thresholds[-1])):
        return None
    lo, hi = 0, len(thresholds) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _fits_under(teams, options, per, _allowed(prep, free, thresholds[mid])):
            hi = mid
        else:
            lo = mid + 1
    return thresholds[lo]


def _used_then_fit(
    teams: list[str],
    options: Mapping[str, IntArray],
    fit_of: Mapping[str, IntArray],
    per: int,
    allowed: IntArray,
    banned: set[tuple[str, int]],
) -> dict[str, list[int]] | None:
    """The assignment using the most mentors, then with the most fit (min-cost flow), without the
    ``banned`` (team, mentor) arcs; None when there is none."""
    price = 1 + sum(int(np.sort(fit_of[t][options[t]])[::-1][:per].clip(min=0).sum()) for t in teams)
    f = min_cost_flow.SimpleMinCostFlow()
    source, sink, mbase = 0, 1, 2 + len(teams)
    arcs: list[tuple[int, int, int, int, str, int]] = []
    for t, team in enumerate(teams):
        f.add_arc_with_capacity_and_unit_cost(source, 2 + t, per, 0)
        for k in map(int, options[team]):
            if (team, k) in banned:
                continue
            arc = f.add_arc_with_capacity_and_unit_cost(2 + t, mbase + k, 1, -int(fit_of[team][k]))
            arcs.append((arc, t, k, 0, team, k))
    for k in map(int, np.flatnonzero(allowed)):
        f.add_arc_with_capacity_and_unit_cost(mbase + k, sink, 1, -price)  # a mentor's first team
        if allowed[k] > 1:
            f.add_arc_with_capacity_and_unit_cost(mbase + k, sink, int(allowed[k]) - 1, 0)
    f.set_node_supply(source, per * len(teams))
    f.set_node_supply(sink, -per * len(teams))
    if f.solve() != f.OPTIMAL:
        return None
    out: dict[str, list[int]] = {team: [] for team in teams}
    for arc, _, _, _, team, k in arcs:
        if f.flow(arc):
            out[team].append(k)
    return out


def assign_teams(
    prep: Prepared,
    teams: list[str],
    eligible_of: Mapping[str, BoolArray],
    fit_of: Mapping[str, IntArray],
    free: IntArray,
    apart: set[tuple[int, int]],
) -> TeamAssignment | None:
    """The placed teams' mentors at the least max load ratio, with the most mentors used and then the
    most fit. Proven when the relaxed flow's answer keeps the mentor-mentor rule; when it does not, the
    breaking arc (the team's lower-fit mentor of the pair) is removed and the flow solved again, up to
    REPAIR_ROUNDS times (the ratio stays proven, mentors used and fit then carry the relaxed flow's
    bounds). None when no assignment keeping the rule is found: the caller's CP-SAT levels decide."""
    per = prep.policy.mentors_per_group
    teams = sorted(teams)
    options = {team: np.flatnonzero(eligible_of[team]) for team in teams}
    if not teams:
        return None  # nothing to assign: the CP-SAT levels report the empty solution as before
    ratio = least_ratio(prep, teams, options, per, free)
    if ratio is None:
        return None
    allowed = _allowed(prep, free, ratio)
    banned: set[tuple[str, int]] = set()
    relaxed: tuple[int, int] | None = None
    for _ in range(REPAIR_ROUNDS):
        chosen = _used_then_fit(teams, options, fit_of, per, allowed, banned)
        if chosen is None:
            return None
        used = len({k for ks in chosen.values() for k in ks})
        fit = sum(int(fit_of[team][k]) for team, ks in chosen.items() for k in ks)
        relaxed = relaxed or (used, fit)
        broken = [(team, a, b) for team, ks in chosen.items() for i, a in enumerate(ks) for b in ks[i + 1 :]]
        broken = [(team, a, b) for team, a, b in broken if (min(a, b), max(a, b)) in apart]
        if not broken:
            fit_bound = relaxed[1] if used == relaxed[0] else None
            return TeamAssignment(chosen, ratio, relaxed[0], fit_bound, fit)
        for team, a, b in broken:  # the lower-fit mentor of the pair leaves the team (then the later one)
            banned.add((team, min((a, b), key=lambda k: (int(fit_of[team][k]), -k))))
    return None
