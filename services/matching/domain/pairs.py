"""One-to-one and reverse mentoring: one mentor and one mentee per pair, exactly, at scale.

Pairs form a bipartite b-matching, so every level is solved exactly with OR-Tools network flows:

1. + 2. *Most placed, chosen by lottery.* Mentee sets that can be matched together form a transversal
   matroid. On a matroid, a maximum-weight basis depends only on the order of the weights, and it is
   what the greedy would pick in that order. So one max-flow-with-min-cost, cost = lottery rank on each
   mentee's arc, yields the largest placement and, among those, the one that follows the lottery
   exactly: fit never decides who gets a place.
3. *Fair load.* With the placed set fixed, the smallest achievable maximum load ratio is found by a
   binary search over the possible ratios, each step a max-flow feasibility check.
4. *Spread, then fit.* With that bound, a min-cost flow whose mentor arcs cost the marginal
   increase of sum(load^2 / capacity) (scaled far above any fit) and whose pair arcs cost -fit spreads
   load first and maximises fit second.

Candidates are pruned to each mentee's ``top_k`` eligible mentors by fit; the run reports whether the
placed count is still provably optimal on the full graph (it checks, where the graph is small enough
to build, or by a counting bound).
"""

from __future__ import annotations

import time

import numpy as np
from ortools.graph.python import max_flow, min_cost_flow

from contracts.events import UnmatchedReason
from services.matching.domain.common import (
    Prepared,
    Progress,
    loads_after,
    make_group,
    max_load_ratio,
    unplaced,
)
from services.matching.domain.model import Group, MatchingResult, Stats, Unplaced
from services.matching.domain.rules import (
    BoolArray,
    IntArray,
    PairRules,
    Pool,
    describe_exclusions,
    first_failing_counts,
)

SPREAD_SCALE = 100
FULL_GRAPH_LIMIT = 25_000_000


class Candidates:
    """Each mentee's pruned candidate mentors (positions in ``mentors``) and pair fits."""

    def eligible_with_room(self, prep: Prepared, row: int) -> BoolArray:
        """Every eligible mentor with room for one mentee, on the full graph (not the pruned arcs)."""
        i = self.mentee_idx[row]
        eligible = np.ones(len(self.mentors), dtype=bool)
        for mask in self.rules.failing(i).values():
            eligible &= ~mask
        prep.drop_excluded_mentors(prep.people[i].participant_id, eligible)
        out: BoolArray = eligible & (self.free > 0)
        return out

    def __init__(self, prep: Prepared, pool: Pool, top_k: int, progress: Progress) -> None:
        self.mentors = np.array(prep.mentors, dtype=np.int64)
        self.mentee_idx = prep.seekers
        mentor_ids = prep.mentor_ids
        self.free = np.array([prep.free(pid) for pid in mentor_ids], dtype=np.int64)
        # the mentors' own lottery order (0..m-1): a tie-break that never outweighs one point of fit
        mentor_rank = np.argsort(np.argsort([prep.ranks[pid] for pid in mentor_ids], kind="stable"), kind="stable")
        rules = PairRules(pool, prep.policy, self.mentors)
        self.rules = rules
        self.tails: list[IntArray] = []
        self.heads: list[IntArray] = []
        self.fits: list[IntArray] = []
        self.best_fit: list[int] = []
        self.eligible_any: list[int] = []
        self.eligible_free: list[int] = []
        self.failing_counts: dict[int, dict[str, int]] = {}
        self.mentor_degree = np.zeros(len(self.mentors), dtype=np.int64)
        """How many mentees each mentor is eligible for: no mentor can take more than that."""
        full_pairs = len(self.mentee_idx) * len(self.mentors)
        self.full_edges: list[tuple[IntArray, IntArray, IntArray]] | None = (
            [] if full_pairs <= FULL_GRAPH_LIMIT else None
        )
        """Every eligible pair with room (when the graph is small enough): placement is decided on it."""
        step = max(1, len(self.mentee_idx) // 20)
        for row, i in enumerate(self.mentee_idx):
            failing = rules.failing(i)
            eligible = np.ones(len(self.mentors), dtype=bool)
            for mask in failing.values():
                eligible &= ~mask
            pid = prep.people[i].participant_id
            prep.drop_excluded_mentors(pid, eligible)
            with_room = eligible & (self.free > 0)
            self.mentor_degree += with_room
            self.eligible_any.append(int(eligible.sum()))
            self.eligible_free.append(int(with_room.sum()))
            if not eligible.any():
                self.failing_counts[row] = first_failing_counts(failing)
            fit = rules.fit(i)
            pos = np.flatnonzero(with_room)
            if self.full_edges is not None:
                self.full_edges.append((np.full(len(pos), row, dtype=np.int64), pos, fit[pos]))
            if len(pos) > top_k:
                # the best fits (ties by lottery), plus as many drawn at random (seeded): popular mentors
                # fill up, and random extra candidates keep the graph wide enough to place nearly everyone
                half = top_k // 2
                key = fit[pos] * (len(mentor_rank) + 1) - mentor_rank[pos]  # unique: fit first, then lottery
                top = np.sort(np.argpartition(-key, half)[:half])  # by position: the order never the kernel's
                rest = np.delete(np.arange(len(pos)), top)
                rng = np.random.default_rng([prep.seed % 2**32, row])
                draws = rng.integers(0, len(rest), size=2 * (top_k - half))
                _, first = np.unique(draws, return_index=True)  # distinct, in draw order (not sorted)
                extra = draws[np.sort(first)][: top_k - half]
                pos = np.concatenate([pos[top], pos[rest[extra]]])
            self.tails.append(np.full(len(pos), row, dtype=np.int64))
            self.heads.append(pos)
            self.fits.append(fit[pos])
            self.best_fit.append(int(fit[with_room].max()) if with_room.any() else 0)
            if row % step == 0:
                progress(f"candidates {row}/{len(self.mentee_idx)}", 0.3 * row / max(1, len(self.mentee_idx)))
        self.tail = np.concatenate(self.tails) if self.tails else np.zeros(0, dtype=np.int64)
        self.head = np.concatenate(self.heads) if self.heads else np.zeros(0, dtype=np.int64)
        self.fit = np.concatenate(self.fits) if self.fits else np.zeros(0, dtype=np.int64)


def _flow_nodes(n_mentees: int, n_mentors: int) -> tuple[int, int, int, int]:
    source, sink = 0, 1
    return source, sink, 2, 2 + n_mentees  # mentee base, mentor base


def _place_by_lottery(
    c: Candidates, tails: IntArray, heads: IntArray, mentee_rank: IntArray, caps: IntArray
) -> tuple[IntArray, IntArray]:
    """Levels 1-2: max flow, min total lottery rank. Returns the placed mentee rows and the arcs used."""
    n, m = len(c.mentee_idx), len(c.mentors)
    source, sink, mb, tb = _flow_nodes(n, m)
    f = min_cost_flow.SimpleMinCostFlow()
    rows = np.arange(n, dtype=np.int64)
    f.add_arcs_with_capacity_and_unit_cost(
        np.full(n, source), mb + rows, np.ones(n, dtype=np.int64), mentee_rank.astype(np.int64)
    )
    f.add_arcs_with_capacity_and_unit_cost(
        mb + tails, tb + heads, np.ones(len(tails), dtype=np.int64), np.zeros(len(tails), dtype=np.int64)
    )
    mentors = np.arange(m, dtype=np.int64)
    f.add_arcs_with_capacity_and_unit_cost(tb + mentors, np.full(m, sink), caps, np.zeros(m, dtype=np.int64))
    f.set_node_supply(source, n)
    f.set_node_supply(sink, -n)
    status = f.solve_max_flow_with_min_cost()
    if status != f.OPTIMAL:
        raise RuntimeError(f"placement flow failed with status {status}")
    placed: IntArray = np.flatnonzero(f.flows(np.arange(n, dtype=np.int64)) > 0)
    used: IntArray = np.flatnonzero(f.flows(n + np.arange(len(tails), dtype=np.int64)) > 0)
    return placed, used


def _max_flow_value(tails: IntArray, heads: IntArray, placed: IntArray, caps: IntArray, n: int) -> int:
    source, sink, mb, tb = _flow_nodes(n, len(caps))
    f = max_flow.SimpleMaxFlow()
    f.add_arcs_with_capacity(np.full(len(placed), source), mb + placed, np.ones(len(placed), dtype=np.int64))
    f.add_arcs_with_capacity(mb + tails, tb + heads, np.ones(len(tails), dtype=np.int64))
    mentors = np.arange(len(caps), dtype=np.int64)
    f.add_arcs_with_capacity(tb + mentors, np.full(len(caps), sink), caps)
    if f.solve(source, sink) != f.OPTIMAL:
        raise RuntimeError("max flow failed")
    return int(f.optimal_flow())


def _fair_caps(c: Candidates, prep: Prepared, placed: IntArray) -> tuple[IntArray, float]:
    """Level 3: the lowest max load ratio that still places everyone placed; capacities under it."""
    mentor_ids = prep.mentor_ids
    cap = np.array([prep.capacity[p] for p in mentor_ids], dtype=np.int64)
    load = np.array([prep.load[p] for p in mentor_ids], dtype=np.int64)
    in_placed = np.isin(c.tail, placed)
    tails, heads = c.tail[in_placed], c.head[in_placed]
    floor = max((load[k] / cap[k] for k in range(len(cap)) if cap[k] > 0), default=0.0)
    ratios = sorted(
        {(load[k] + j) / cap[k] for k in range(len(cap)) if cap[k] > 0 for j in range(1, int(c.free[k]) + 1)} | {floor}
    )
    ratios = [r for r in ratios if r >= floor - 1e-12]

    def caps_at(t: float) -> IntArray:
        allowed = np.floor(t * cap + 1e-9).astype(np.int64) - load
        capped: IntArray = np.clip(np.minimum(allowed, c.free), 0, None)
        return capped

    lo, hi = 0, len(ratios) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if _max_flow_value(tails, heads, placed, caps_at(ratios[mid]), len(c.mentee_idx)) == len(placed):
            hi = mid
        else:
            lo = mid + 1
    best = ratios[lo] if ratios else 0.0
    capped: IntArray = caps_at(best)
    return capped, best


def _spread_and_fit(c: Candidates, prep: Prepared, placed: IntArray, caps: IntArray) -> list[tuple[int, int]]:
    """Level 4: min sum(load^2/cap) first, max fit second, in one min-cost flow. Returns (row, mentor pos)."""
    mentor_ids = prep.mentor_ids
    cap = np.array([prep.capacity[p] for p in mentor_ids], dtype=np.int64)
    load = np.array([prep.load[p] for p in mentor_ids], dtype=np.int64)
    in_placed = np.isin(c.tail, placed)
    tails, heads, fits = c.tail[in_placed], c.head[in_placed], c.fit[in_placed]
    big = int(fits.clip(min=0).sum()) + 1  # any spread step outweighs all fit together
    n, m = len(c.mentee_idx), len(c.mentors)
    source, sink, mb, tb = _flow_nodes(n, m)
    f = min_cost_flow.SimpleMinCostFlow()
    f.add_arcs_with_capacity_and_unit_cost(
        np.full(len(placed), source), mb + placed, np.ones(len(placed), dtype=np.int64),
        np.zeros(len(placed), dtype=np.int64),
    )  # fmt: skip
    first_pair_arc = len(placed)
    f.add_arcs_with_capacity_and_unit_cost(mb + tails, tb + heads, np.ones(len(tails), dtype=np.int64), -fits)
    unit_tails, unit_costs = [], []
    for k in range(m):
        for j in range(int(caps[k])):
            unit_tails.append(k)
            marginal = (2 * (int(load[k]) + j) + 1) * SPREAD_SCALE // max(1, int(cap[k]))
            unit_costs.append(marginal * big)
    if unit_tails:
        ut = np.array(unit_tails, dtype=np.int64)
        f.add_arcs_with_capacity_and_unit_cost(
            tb + ut, np.full(len(ut), sink), np.ones(len(ut), dtype=np.int64), np.array(unit_costs, dtype=np.int64)
        )
    f.set_node_supply(source, len(placed))
    f.set_node_supply(sink, -len(placed))
    status = f.solve()
    if status != f.OPTIMAL:
        raise RuntimeError(f"assignment flow failed with status {status}")
    chosen = np.flatnonzero(f.flows(first_pair_arc + np.arange(len(tails), dtype=np.int64)) > 0)
    return [(int(tails[a]), int(heads[a])) for a in chosen]


def solve_pairs(prep: Prepared, progress: Progress, top_k: int = 40) -> MatchingResult:
    started = time.perf_counter()
    pool = Pool.encode(prep.people)
    progress("checking eligibility", 0.0)
    c = Candidates(prep, pool, top_k, progress)
    mentee_ids = [prep.people[i].participant_id for i in c.mentee_idx]
    mentor_ids = prep.mentor_ids
    rank = np.array([prep.ranks[pid] for pid in mentee_ids], dtype=np.int64)

    locked_rows: dict[int, int] = {}
    mentor_pos = {pid: k for k, pid in enumerate(mentor_ids)}
    mentee_row = {pid: r for r, pid in enumerate(mentee_ids)}
    caps = c.free.copy()
    for a, b in prep.locked:
        mentor, mentee = (a, b) if a in mentor_pos else (b, a)
        row, k = mentee_row.get(mentee), mentor_pos.get(mentor)
        # eligibility on the full graph: a locked pair need not be among the mentee's pruned candidates
        if row is None or k is None or row in locked_rows or caps[k] <= 0 or not c.eligible_with_room(prep, row)[k]:
            prep.notes.append(f"lock {mentor}/{mentee} not applied: not an eligible mentor-mentee pair with room")
            continue
        locked_rows[row] = k
        caps[k] -= 1
        prep.locks_applied += 1
    if locked_rows:  # locked mentees leave the flow; their mentor's slot is taken
        keep = ~np.isin(c.tail, list(locked_rows))
        c.tail, c.head, c.fit = c.tail[keep], c.head[keep], c.fit[keep]
        c.free = caps

    progress("placing by lottery", 0.35)
    if c.full_edges is not None:  # decide places on every eligible pair: pruning cannot cost a place
        full_t = np.concatenate([t for t, _, _ in c.full_edges]) if c.full_edges else np.zeros(0, dtype=np.int64)
        full_h = np.concatenate([h for _, h, _ in c.full_edges]) if c.full_edges else np.zeros(0, dtype=np.int64)
        full_f = np.concatenate([f for _, _, f in c.full_edges]) if c.full_edges else np.zeros(0, dtype=np.int64)
        if locked_rows:
            keep_full = ~np.isin(full_t, list(locked_rows))
            full_t, full_h, full_f = full_t[keep_full], full_h[keep_full], full_f[keep_full]
        placed, _ = _place_by_lottery(c, full_t, full_h, rank, caps)
        # the later levels run on the full graph too, so their optima (and the fit bound) are proven
        c.tail, c.head, c.fit = full_t, full_h, full_f
    else:
        placed, _ = _place_by_lottery(c, c.tail, c.head, rank, caps)
    progress("balancing mentor load", 0.55)
    fair_caps, _ = _fair_caps(c, prep, placed)
    progress("maximising fit", 0.8)
    pairs = _spread_and_fit(c, prep, placed, fair_caps) + list(locked_rows.items())

    groups: list[Group] = [
        make_group(prep, [mentor_ids[k]], [mentee_ids[row]]) for row, k in sorted(pairs, key=lambda p: p[0])
    ]
    placed_rows = {row for row, _ in pairs}
    pair_mentor = np.array([k for _, k in pairs], dtype=np.int64)  # placed pairs as arrays, for the reasons
    pair_rank = np.array([rank[row] for row, _ in pairs], dtype=np.int64)
    n = len(mentee_ids)
    gone: list[Unplaced] = []
    for row in range(n):
        if row in placed_rows:
            continue
        pid = mentee_ids[row]
        if c.eligible_any[row] == 0:
            counts = c.failing_counts.get(row, {})
            text = f"no eligible mentor: {describe_exclusions(counts, prep.policy)}"
            gone.append(unplaced(pid, UnmatchedReason.NO_ELIGIBLE_PARTNER, text))
        elif c.eligible_free[row] == 0:
            text = (
                f"capacity exhausted: all {c.eligible_any[row]} eligible mentors are full "
                "(the groups they already lead, in this program and others, fill their capacity)"
            )
            gone.append(unplaced(pid, UnmatchedReason.CAPACITY_EXHAUSTED, text))
        else:
            # competitors: the people now placed with one of its eligible mentors, drawn ahead of it
            mine = c.eligible_with_room(prep, row)
            ahead = int((mine[pair_mentor] & (pair_rank < rank[row])).sum())
            text = (
                f"lost the lottery to {ahead} equally eligible people drawn ahead: the free places of its "
                f"{c.eligible_free[row]} eligible mentors went to them; this one ranked "
                f"{prep.seeker_rank[pid] + 1} of {n}"
            )
            gone.append(unplaced(pid, UnmatchedReason.LOST_LOTTERY, text))

    # How good is this, provably?
    usable = int(np.minimum(caps, c.mentor_degree).sum()) + len(locked_rows)
    simple_bound = min(sum(1 for e in c.eligible_free if e > 0), usable)
    # on the full graph the placement is exact: its size is the bound
    placed_bound = len(placed_rows) if c.full_edges is not None else simple_bound
    notes = list(prep.notes)
    proven = len(placed_rows) >= placed_bound
    if not proven:
        notes.append("placed count not proven optimal on the full graph: pruning to top candidates may cost places")
    load = loads_after(prep, groups)
    fit = float(sum(g.fit for g in groups))
    relaxed = float(sum(c.best_fit[row] for row in placed_rows))
    gap = round((relaxed - fit) / relaxed, 6) if relaxed > 0 else 0.0
    if c.full_edges is not None:  # every level ran exactly on every eligible pair: the fit is optimal
        fit_bound, fit_gap = fit, 0.0
    else:  # levels 3-4 ran on pruned arcs: the only proven bound is the relaxed one (each person's best mentor)
        fit_bound, fit_gap = max(fit, relaxed), gap
        notes.append("fairness and fit levels ran on pruned candidates: fit bound = each placed person's best mentor")
    stats = Stats(
        method="min_cost_flow",
        status="OPTIMAL" if proven else "FEASIBLE",
        seed=prep.seed,
        placed_count=len(groups),
        unplaced_count=len(gone),
        placed_bound=placed_bound,
        total_fit=fit,
        fit_bound=fit_bound,
        fit_bound_relaxed=relaxed,
        gap=fit_gap,
        relaxed_gap=gap,
        max_load_ratio=max_load_ratio(prep, load),
        load=load,
        wall_time_seconds=round(time.perf_counter() - started, 3),
        overrides_applied=prep.overrides_applied,
        levels={"placed": len(groups), "max_load_ratio": max_load_ratio(prep, load), "fit": fit},
        notes=notes,
    )
    progress("done", 1.0)
    return MatchingResult(
        program_id=prep.inp.program_id,
        form=prep.inp.form,
        seed=prep.seed,
        groups=groups,
        unplaced=sorted(gone, key=lambda u: u.participant_id),
        lottery=prep.ranks,
        stats=stats,
    )
