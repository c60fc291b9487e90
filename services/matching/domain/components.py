"""Independent components of a group problem, and their budgets.

Nothing links two components (no shared variable or constraint), and every level's objective is a
sum (or, for the max load ratio, a max) over them, so solving them apart is exact. Budgets are shares
of the configured limit by size; one wall-clock deadline covers the whole run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import numpy as np
from ortools.sat.python import cp_model

from services.matching.domain.common import (
    Prepared,
    Progress,
)
from services.matching.domain.levels import (
    Levels,
    run_deadline,
)
from services.matching.domain.rules import (
    BoolArray,
    IntArray,
)


def facilitated_components(
    prep: Prepared,
    seekers: list[str],
    candidates: dict[str, list[tuple[int, int]]],
    co_options: dict[int, list[int]],
    mentor_ids: list[str],
) -> list[list[str]]:
    """Seekers split into independent components of the candidate graph (mentee - candidate mentor,
    lead - co-facilitator, mentee - mentee lock). No variable or constraint links two components, and
    every level's objective is a sum (or, for the max load ratio, a max) over them, so solving them
    apart is exact. Seekers with no candidate belong to none. Canonical order: by first seeker id."""
    parent: dict[object, object] = {}

    def find(a: object) -> object:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: object, b: object) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    for pid in seekers:
        for k, _ in candidates[pid]:
            union(pid, ("mentor", k))
            for j in co_options.get(k, []):
                union(("mentor", k), ("mentor", j))
    for a, b in prep.locked:
        if a in candidates and b in candidates and candidates[a] and candidates[b]:
            union(a, b)
    groups: dict[object, list[str]] = defaultdict(list)
    for pid in seekers:
        if candidates[pid]:
            groups[find(pid)].append(pid)
    return sorted(groups.values(), key=lambda part: part[0])


def part_progress(progress: Progress, n: int, parts: int) -> Progress:
    def report(message: str, fraction: float) -> None:
        progress(f"component {n + 1} of {parts}: {message}", fraction)

    return report


MIN_PART_SHARE = 0.05
"""Peer groups and teams: components smaller than this share of the people are solved together, in
bundles of at least this share, so a pool of many tiny components stays a few models whose budgets
add up to the configured limit (solving independent components in one model is exact too)."""
PART_FLOOR_S = 0.2
"""The least deterministic budget of one component's model (a share of the limit, never below this)."""


def part_limit(size: int, weight: int, parts: int, time_limit: float) -> float:
    """One component's budget: its share of the people, at least PART_FLOOR_S (never above the limit)."""
    if parts <= 1:
        return time_limit
    return max(time_limit * size / weight, min(time_limit, PART_FLOOR_S))


def bundle(parts: list[list[str]], weight: Callable[[str], int] = lambda _: 1) -> list[list[str]]:
    """Components in canonical order; the small ones (below MIN_PART_SHARE of the people) merged in that
    order into bundles of at least that share. Deterministic: depends on the components only."""
    size = {id(part): sum(weight(x) for x in part) for part in parts}
    least = math.ceil(sum(size.values()) * MIN_PART_SHARE)
    out: list[list[str]] = []
    small: list[str] = []
    small_size = 0
    for part in parts:
        if size[id(part)] >= least:
            out.append(part)
            continue
        small += part
        small_size += size[id(part)]
        if small_size >= least:
            out.append(small)
            small, small_size = [], 0
    if small:
        out.append(small)
    return sorted(out, key=lambda part: part[0])


def component_runs(
    prep: Prepared, progress: Progress, time_limit: float, sizes: list[int], models: list[cp_model.CpModel]
) -> list[Levels]:
    """One ``Levels`` per component's model: a budget share by size, one wall-clock guard for the run."""
    deadline = run_deadline(prep.started, time_limit)
    weight = max(1, sum(sizes))
    runs = []
    for n, (size, model) in enumerate(zip(sizes, models, strict=True)):
        report = progress if len(models) == 1 else part_progress(progress, n, len(models))
        limit = part_limit(size, weight, len(models), time_limit)
        runs.append(Levels(model, prep.seed, limit, report, deadline=deadline))
    return runs


def peer_components(
    peers: list[str], active: list[str], compat: BoolArray, locks: list[tuple[str, str]], row_of: dict[str, int]
) -> list[list[str]]:
    """Peers split into independent components, then bundled (``bundle``). Two peers may share a
    group only if they are compatible (every rule holds for every pair of a peer group), so peers with
    no path of compatible pairs never meet: no variable or constraint links two components, placed and
    fit are sums over them, and each lottery decision depends on its own component only. Locked peers
    are joined (a lock with a peer who cannot be placed keeps the other out). Peers with no place to go
    and no lock belong to none."""
    wanted = set(active) | {p for pair in locks for p in pair}
    nodes = [pid for pid in peers if pid in wanted]
    is_active = set(active)
    mask = np.zeros(len(peers), dtype=bool)
    mask[[row_of[p] for p in active]] = True
    linked = (compat | compat.T) & mask  # the rules are symmetric; this makes sure
    # labels by breadth-first search on the compatibility matrix (numpy rows, not Python lists: 2,000
    # peers took 3 s as lists), then locks join labels
    label = np.full(len(peers), -1, dtype=np.int64)
    count = 0
    for pid in nodes:
        r = row_of[pid]
        if label[r] >= 0:
            continue
        reached = np.zeros(len(peers), dtype=bool)
        reached[r] = True
        frontier = reached.copy() if pid in is_active else np.zeros(len(peers), dtype=bool)
        while frontier.any():
            frontier = linked[frontier].any(axis=0) & ~reached
            reached |= frontier
        label[reached] = count
        count += 1
    parent = list(range(count))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in locks:
        ra, rb = find(int(label[row_of[a]])), find(int(label[row_of[b]]))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    parts: dict[int, list[str]] = defaultdict(list)
    for pid in nodes:  # nodes order: each part in it, parts in order of their first node
        parts[find(int(label[row_of[pid]]))].append(pid)
    return bundle(sorted(parts.values(), key=lambda part: nodes.index(part[0])))


def shared_column_labels(matrix: BoolArray) -> IntArray:
    """Connected components of the rows of a 0/1 matrix, two rows linked when they share a column
    (teams sharing an eligible mentor): each row's label is the least row index of its component.

    Minimum-label propagation over the nonzero cells, row -> column -> row, until nothing changes:
    array work per round over the cells, rounds bounded by the components' diameter. (A Python search
    listing every team of every eligible mentor took minutes at 2,000 teams.)"""
    rows, cols = np.nonzero(matrix)
    label = np.arange(matrix.shape[0], dtype=np.int64)
    big = matrix.shape[0]
    while True:
        col_label = np.full(matrix.shape[1], big, dtype=np.int64)
        np.minimum.at(col_label, cols, label[rows])
        new = label.copy()
        np.minimum.at(new, rows, col_label[cols])
        if np.array_equal(new, label):
            return label
        label = new


def team_components(teams: list[str], eligible: dict[str, BoolArray], sizes: dict[str, int]) -> list[list[str]]:
    """Teams split into independent components, then bundled (``bundle``): two teams are linked when
    they share an eligible mentor with room. A team's variables are its own mentors' assignments; a
    mentor's capacity, load slots and reporting-line exclusions (with another mentor of the same team)
    and a lock (a mentor eligible for the team) stay inside one component, so no variable or constraint
    links two of them."""
    if not teams:
        return []
    matrix = np.array([eligible[team] for team in teams], dtype=bool)
    label = shared_column_labels(matrix)
    parts: dict[int, list[str]] = defaultdict(list)
    for team, lab in zip(teams, label.tolist(), strict=True):  # teams order: each part in it
        parts[lab].append(team)
    ordered = sorted(parts.values(), key=lambda part: teams.index(part[0]))
    return bundle(ordered, weight=sizes.__getitem__)
