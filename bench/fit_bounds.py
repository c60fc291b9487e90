"""The benchmark's proven fit bounds, computed independently of the solver (``bench/matching_bench.py``
prints them beside each row): a transportation relaxation for facilitated groups
(``idle_and_fit_bound``), the exact optimum or a b-matching relaxation for peer groups
(``peer_exact_fit``, ``peer_fit_bound``), and a transportation relaxation for teams
(``team_fit_bound``)."""

from __future__ import annotations

import numpy as np
from ortools.graph.python import min_cost_flow
from ortools.linear_solver import pywraplp

from bench.group_fit_lp import group_fit_lp_bound
from contracts.events import ParticipantProfile
from contracts.policy import Form, Role
from services.matching.domain import MatchingInput, MatchingResult
from services.matching.domain.rules import PairRules, Pool

TOP_ARCS = 80
"""Fit bound: each placed mentee keeps its best arcs and one arc to an unlimited virtual mentor worth
its next-best fit, so the flow stays small and its value is still an upper bound. 80, not 20: on the
capacity-bound pools every mentor is full and many mentees end below their 20 best, so with 20 arcs the
virtual mentor's looseness alone was about 0.6 % of the bound at 20,000."""


def _mentor_rows(inp: MatchingInput) -> tuple[Pool, list[int], list[int], PairRules]:
    people = sorted(inp.participants, key=lambda p: p.participant_id)
    pool = Pool.encode(people)
    mentors = [i for i, p in enumerate(people) if p.role is Role.MENTOR]
    seekers = [i for i, p in enumerate(people) if p.role is not Role.MENTOR]
    return pool, mentors, seekers, PairRules(pool, inp.policy, np.array(mentors, dtype=np.int64))


def _excluded_mentors(inp: MatchingInput, mentor_ids: list[str]) -> dict[str, list[int]]:
    """Exclude overrides between a seeker and a mentor: seeker id -> mentor positions."""
    position = {m: k for k, m in enumerate(mentor_ids)}
    out: dict[str, list[int]] = {}
    for o in inp.overrides:
        if o.kind.value == "exclude_pair":
            a, b = o.participant_ids
            for pid, other in ((a, b), (b, a)):
                if other in position:
                    out.setdefault(pid, []).append(position[other])
    return out


def _eligible(rules: PairRules, i: int, inp: MatchingInput, mentor_ids: list[str]) -> np.ndarray:
    mask = rules.eligible(i)
    pid = rules.pool.people[i].participant_id
    for o in inp.overrides:
        if o.kind.value == "exclude_pair" and pid in o.participant_ids:
            other = o.participant_ids[0] if o.participant_ids[1] == pid else o.participant_ids[1]
            if other in mentor_ids:
                mask[mentor_ids.index(other)] = False
    return mask


RATIO_SLACK = 1e-4
"""The run's max load ratio comes rounded to 6 decimals (0.333333 for 1 of 3): times a capacity of up to
50 it may fall 2.5e-5 short of the groups it stands for (0.999999 x 3 floored to no group, the flow then
infeasible and the bound missing; found by an outside-in probe). A ratio of capacities up to 50 is never
within this of the next whole number of groups."""


def idle_and_fit_bound(inp: MatchingInput, result: MatchingResult) -> tuple[int | None, float | None]:
    """Idle eligible mentors, and a proven upper bound on total fit for the same placed set and max
    load ratio (facilitated groups with one mentor per group; None elsewhere).

    The bound is a transportation relaxation: each placed mentee to one eligible mentor, each mentor
    taking at most (its groups allowed under the run's max load ratio) x group maximum mentees, and,
    with a department bound, at most (its allowed groups) x (the room one department has in a group) of
    each department, cost -fit; group minimums, reporting lines, conflicts and the fewest-idle level are
    relaxed, so every grouping of those people at that ratio is a feasible flow. Each mentee keeps its
    TOP_ARCS best arcs plus one arc of its next-best fit to an unlimited virtual mentor, which can only
    raise the optimum. Where it is not too large, the bound is the smaller of that flow's and of an LP
    over the same arcs that ties each mentor's people to a number of groups (group minimum, department
    bound per group: ``bench.group_fit_lp``).
    """
    if inp.form is Form.PEER_GROUP:
        exact = peer_exact_fit(inp, result)
        return None, exact if exact is not None else peer_fit_bound(inp, result)
    if inp.form is not Form.FACILITATED_GROUP and inp.form is not Form.TEAM:
        return None, None
    pool, mentors, seekers, rules = _mentor_rows(inp)
    mentor_ids = [pool.people[m].participant_id for m in mentors]
    cap = np.array([pool.people[m].capacity or 0 for m in mentors], dtype=np.int64)
    load = np.array([inp.existing_load.get(m, 0) for m in mentor_ids], dtype=np.int64)
    leading = {m.participant_id for g in result.groups for m in g.members if m.role is Role.MENTOR}
    placed = {m.participant_id for g in result.groups for m in g.members if m.role is not Role.MENTOR}
    wanted = np.zeros(len(mentors), dtype=bool)
    ratio = result.stats.max_load_ratio
    allowed = np.maximum(0, np.floor(ratio * cap + RATIO_SLACK).astype(np.int64) - load)
    # per placed mentee only its best arcs (keeping whole rows took 5.6 GB at 50,000 x 12,500), by blocks
    rows: list[tuple[str, list[tuple[int, int]], int | None]] = []
    excluded = _excluded_mentors(inp, mentor_ids)
    block = max(1, 2_000_000 // max(1, len(mentors)))
    for start in range(0, len(seekers), block):
        part = np.array(seekers[start : start + block], dtype=np.int64)
        eligible = rules.eligible_rows(part)
        for r, i in enumerate(part.tolist()):
            for k in excluded.get(pool.people[i].participant_id, ()):
                eligible[r, k] = False
        wanted |= eligible.any(axis=0)
        if inp.form is not Form.FACILITATED_GROUP:
            continue
        fit = rules.fit_rows(part)
        key = np.where(eligible & (allowed > 0)[None, :], fit, -1)
        top = min(TOP_ARCS + 1, key.shape[1])
        best = (
            np.argpartition(-key, top - 1, axis=1)[:, :top]
            if top < key.shape[1]
            else np.tile(np.arange(top), (len(part), 1))
        )
        for r, i in enumerate(part.tolist()):
            pid = pool.people[i].participant_id
            if pid not in placed:
                continue
            order = sorted((int(k) for k in best[r] if key[r, k] >= 0), key=lambda k: (-int(key[r, k]), k))
            nxt = int(key[r, order[TOP_ARCS]]) if len(order) > TOP_ARCS else None
            rows.append((pid, [(k, int(key[r, k])) for k in order[:TOP_ARCS]], nxt))
    idle = int(sum(1 for k, m in enumerate(mentor_ids) if wanted[k] and cap[k] > load[k] and m not in leading))
    if inp.form is Form.TEAM:
        return idle, team_fit_bound(inp, result)
    if inp.form is not Form.FACILITATED_GROUP or inp.policy.mentors_per_group != 1:
        return idle, None
    slots = allowed * inp.policy.group_members_max
    f = min_cost_flow.SimpleMinCostFlow()
    n, m = len(rows), len(mentors)
    source, sink, virtual = 0, 1, 2
    base, mbase = 3, 3 + n
    arcs: list[tuple[int, int, int, int]] = []  # tail, head, capacity, cost
    limit = inp.policy.max_same_department
    dept = {p.participant_id: p.department for p in pool.people}
    dnode: dict[tuple[int, str], int] = {}
    for r, (pid, arcs_of, nxt) in enumerate(rows):
        arcs.append((source, base + r, 1, 0))
        for k, fit_k in arcs_of:
            head = mbase + k
            if limit is not None:  # through (mentor, department): its groups x the room one department has
                room = limit - (1 if dept[pid] == dept[mentor_ids[k]] else 0)
                if room <= 0:
                    continue
                if (k, dept[pid]) not in dnode:
                    dnode[(k, dept[pid])] = mbase + m + len(dnode)
                    arcs.append((dnode[(k, dept[pid])], head, int(allowed[k]) * room, 0))
                head = dnode[(k, dept[pid])]
            arcs.append((base + r, head, 1, -fit_k))
        if nxt is not None:
            arcs.append((base + r, virtual, 1, -nxt))
    arcs += [(mbase + k, sink, int(slots[k]), 0) for k in range(m)]
    arcs.append((virtual, sink, n, 0))
    tails, heads, caps, costs = (list(column) for column in zip(*arcs, strict=True))
    f.add_arcs_with_capacity_and_unit_cost(
        np.array(tails, dtype=np.int64), np.array(heads, dtype=np.int64), np.array(caps, dtype=np.int64),
        np.array(costs, dtype=np.int64),
    )  # fmt: skip
    f.set_node_supply(source, n)
    f.set_node_supply(sink, -n)
    if f.solve() != f.OPTIMAL:  # the placed set always fits its own ratio, so the flow is feasible
        return idle, None
    lp = group_fit_lp_bound(
        rows, [dept[m] for m in mentor_ids], allowed.tolist(), dept, group_min=inp.policy.group_members_min,
        group_max=inp.policy.group_members_max, department_limit=limit,
    )  # fmt: skip
    return idle, float(-f.optimal_cost()) if lp is None else min(lp, float(-f.optimal_cost()))


def _min_cost(arcs: list[tuple[int, int, int, int]], supply: dict[int, int]) -> int | None:
    """The least cost of a flow over (tail, head, capacity, cost) arcs meeting ``supply``; None if none."""
    f = min_cost_flow.SimpleMinCostFlow()
    tails, heads, caps, costs = (np.array(column, dtype=np.int64) for column in zip(*arcs, strict=True))
    f.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    for node, amount in supply.items():
        f.set_node_supply(node, amount)
    return int(f.optimal_cost()) if f.solve() == f.OPTIMAL else None


EXACT_PEERS = 40
EXACT_SOLVER = "CBC"
"""Peer pools up to this many placed peers get their exact optimum (``peer_exact_fit``) as fit bound."""


def _peer_compat(
    inp: MatchingInput, people: list[ParticipantProfile], rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Compatibility (every pairwise rule, excluded pairs too) and fit among ``rows``, computed here."""
    rules = PairRules(Pool.encode(people), inp.policy, rows)
    n = len(rows)
    compat, fit = np.zeros((n, n), dtype=bool), np.zeros((n, n), dtype=np.int64)
    for a in range(n):
        compat[a], fit[a] = _compatible_row(inp, people, rows, rules, a), rules.fit(int(rows[a]))
        fit[a, a] = 0  # a peer's skills against its own: not a pair
    return compat, fit


def _compatible_row(
    inp: MatchingInput, people: list[ParticipantProfile], rows: np.ndarray, rules: PairRules, a: int
) -> np.ndarray:
    """Which of ``rows`` the peer ``rows[a]`` may share a group with: every pairwise rule, excluded pairs
    too, computed here from the rules' masks (one row at a time: a matrix of 10,000 peers is too large)."""
    failing = rules.failing(int(rows[a]))
    if inp.policy.seniority_rule.value != "peers_within":
        failing.pop("seniority", None)
    ok = np.ones(len(rows), dtype=bool)
    for mask in failing.values():
        ok &= ~mask
    ok[a] = False
    excluded = {frozenset(o.participant_ids) for o in inp.overrides if o.kind.value == "exclude_pair"}
    me = people[int(rows[a])].participant_id
    for b in np.flatnonzero(ok):
        if frozenset((me, people[int(rows[b])].participant_id)) in excluded:
            ok[b] = False
    return ok


def _valid_groups(inp: MatchingInput, members: list[ParticipantProfile], compat: np.ndarray) -> list[tuple[int, ...]]:
    """Every group of the policy's size whose members are pairwise compatible, share a language and keep
    the department bound (the time-zone and level windows hold exactly when every pair is within them)."""
    pol = inp.policy
    out: list[tuple[int, ...]] = []

    def grow(group: tuple[int, ...], languages: frozenset[str] | None) -> None:
        if len(group) >= pol.group_members_min:
            out.append(group)
        if len(group) == pol.group_members_max:
            return
        for c in range(group[-1] + 1, len(members)):
            if not all(compat[c, g] for g in group):
                continue
            spoken = languages & frozenset(members[c].languages) if languages is not None else None
            if spoken is not None and not spoken:
                continue
            same = sum(1 for g in group if members[g].department == members[c].department)
            if pol.max_same_department is not None and same + 1 > pol.max_same_department:
                continue
            grow((*group, c), spoken)

    for first in range(len(members)):
        grow((first,), frozenset(members[first].languages) if pol.require_shared_language else None)
    return out


def peer_exact_fit(inp: MatchingInput, result: MatchingResult) -> float | None:
    """The exact optimum total fit of any valid grouping of the same placed peers (so a proven bound,
    met with equality by the best grouping): every valid group listed (``_valid_groups``), then the set
    partitioning (each placed peer in exactly one listed group, most fit) solved to optimality by CBC
    (OR-Tools' ``pywraplp``), independently of the product's solver. None above EXACT_PEERS placed
    peers (the list grows too fast) or if CBC does not prove its optimum in 120 s (30 peers: 56,814
    valid groups, 45 s; SCIP and HiGHS did not prove it in 60 and 169 s)."""
    placed = {m.participant_id for g in result.groups for m in g.members}
    if not placed or len(placed) > EXACT_PEERS:
        return None if placed else 0.0
    people = sorted(inp.participants, key=lambda p: p.participant_id)
    rows = np.array([i for i, p in enumerate(people) if p.participant_id in placed], dtype=np.int64)
    compat, fit = _peer_compat(inp, people, rows)
    groups = _valid_groups(inp, [people[int(i)] for i in rows], compat)
    solver = pywraplp.Solver.CreateSolver(EXACT_SOLVER)
    solver.SetTimeLimit(120_000)
    chosen = [solver.BoolVar(f"g{k}") for k in range(len(groups))]
    cover: list[list[pywraplp.Variable]] = [[] for _ in rows]
    for var, group in zip(chosen, groups, strict=True):
        for member in group:
            cover[member].append(var)
    for options in cover:
        solver.Add(solver.Sum(options) == 1)
    value = [int(fit[np.ix_(g, g)].sum()) // 2 for g in groups]
    solver.Maximize(solver.Sum([v * var for v, var in zip(value, chosen, strict=True)]))
    return float(solver.Objective().Value()) if solver.Solve() == pywraplp.Solver.OPTIMAL else None


def peer_fit_bound(inp: MatchingInput, result: MatchingResult) -> float | None:
    """A proven upper bound on the total fit of any peer grouping of the same placed peers: a b-matching
    relaxation. In any grouping each placed peer has at most ``group_members_max - 1`` partners, all
    compatible with it, and the fit is the sum over partner pairs; so the heaviest set of compatible
    pairs in which no peer has more partners than that bounds it. Solved as a min-cost flow on two
    copies of the placed peers (each pair used from both sides, value halved). It relaxes that partners
    must be partners of each other (groups are cliques), the one common language, the department bound
    and group minimums. Each peer keeps its TOP_ARCS best partners plus an arc of its next-best fit to an
    unlimited virtual partner, which can only raise the optimum."""
    people = sorted(inp.participants, key=lambda p: p.participant_id)
    placed = {m.participant_id for g in result.groups for m in g.members}
    rows = np.array([i for i, p in enumerate(people) if p.participant_id in placed], dtype=np.int64)
    if not len(rows):
        return 0.0
    rules = PairRules(Pool.encode(people), inp.policy, rows)
    degree = inp.policy.group_members_max - 1
    n = len(rows)
    source, sink, virtual, left, right = 0, 1, 2, 3, 3 + n
    arcs: list[tuple[int, int, int, int]] = [(virtual, sink, n * degree, 0)]
    for a, i in enumerate(rows):
        ok = _compatible_row(inp, people, rows, rules, a)
        fit = rules.fit(int(i))
        pos = np.flatnonzero(ok & (fit > 0))
        order = pos[np.argsort(-fit[pos], kind="stable")]
        arcs += [(source, left + a, degree, 0), (right + a, sink, degree, 0), (left + a, sink, degree, 0)]
        arcs += [(left + a, right + int(b), 1, -int(fit[b])) for b in order[:TOP_ARCS]]
        if len(order) > TOP_ARCS:
            arcs.append((left + a, virtual, degree, -int(fit[order[TOP_ARCS]])))
    cost = _min_cost(arcs, {source: n * degree, sink: -n * degree})
    return None if cost is None else -cost / 2


def team_fit_bound(inp: MatchingInput, result: MatchingResult) -> float | None:
    """A proven upper bound on the total fit of any assignment of mentors to the same placed teams within
    the run's max load ratio and with at least as many mentors used: a transportation relaxation (each
    placed team takes ``mentors_per_group`` distinct eligible mentors with room, a mentor at most the
    teams its capacity allows under that ratio, cost -fit) with the mentors-used level priced in by a
    Lagrange multiplier: for any price l >= 0, max(fit + l x used) - l x (mentors used) bounds the fit of
    every assignment using at least that many mentors; the least over a few prices is kept. It relaxes
    the rule that two mentors of one team may not be in each other's reporting line or conflicts."""
    pool, mentors, seekers, rules = _mentor_rows(inp)
    mentor_ids = [pool.people[m].participant_id for m in mentors]
    cap = np.array([pool.people[m].capacity or 0 for m in mentors], dtype=np.int64)
    load = np.array([inp.existing_load.get(m, 0) for m in mentor_ids], dtype=np.int64)
    allowed = np.maximum(0, np.floor(result.stats.max_load_ratio * cap + RATIO_SLACK).astype(np.int64) - load)
    allowed = np.minimum(allowed, cap - load)
    used = len({m.participant_id for g in result.groups for m in g.members if m.role is Role.MENTOR})
    team_of = {m.participant_id: g.group_id for g in result.groups for m in g.members if m.role is not Role.MENTOR}
    blocks: dict[str, list[int]] = {}
    for i in seekers:
        group = team_of.get(pool.people[i].participant_id)
        if group is not None:
            blocks.setdefault(group, []).append(i)
    per = inp.policy.mentors_per_group
    teams = sorted(blocks)
    if not teams:
        return 0.0  # nobody placed: no fit to bound
    first, mbase = 2, 2 + len(teams)
    base: list[tuple[int, int, int, int]] = []
    for t, group in enumerate(teams):
        block = np.array(blocks[group], dtype=np.int64)
        eligible = rules.eligible_rows(block).all(axis=0)
        for i in blocks[group]:
            eligible &= _eligible(rules, i, inp, mentor_ids)
        fit = rules.fit_rows(block).sum(axis=0)
        base.append((0, first + t, per, 0))
        base += [(first + t, mbase + int(k), 1, -int(fit[k])) for k in np.flatnonzero(eligible & (allowed > 0))]
    supply = {0: per * len(teams), 1: -per * len(teams)}
    best: float | None = None
    for price in (0, 1, 2, 4, 8, 16):
        arcs = list(base)
        for k in np.flatnonzero(allowed > 0):  # a mentor's first team earns the price, the rest nothing
            arcs.append((mbase + int(k), 1, 1, -price))
            if allowed[k] > 1:
                arcs.append((mbase + int(k), 1, int(allowed[k]) - 1, 0))
        cost = _min_cost(arcs, supply)
        if cost is not None:
            bound = -cost - price * used
            best = bound if best is None else min(best, bound)
    return best
