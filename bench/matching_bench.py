"""Matching at scale next to a greedy baseline, on synthetic programs.

    python -m bench.matching_bench [--only facilitated] [--max-size 5000] [--pairs 1000,5000,20000]

Rows (issue 13): facilitated groups at 1,000 / 5,000 / 20,000 / 50,000 mentees in two families,
*capacity* (a mentor per four mentees, one group each, groups of 2-4: capacity binds) and *tight*
(0.3 mentors per mentee, one group each, groups of 2-6, about a third of the people share a common
language, time zones within 3 h, at most one member of a department per group, one declared conflict
per eight people), and at 1,000 and 5,000 *one-dept* (an outside-in probe's pool: 80 % of the people in
one department, at most 2 of a department per group, groups of 3-8); peer groups of 500 / 2,000 /
10,000; team programs of 200 / 2,000 teams; and one-to-one pairs at ``--pairs``. Time limits: 3 s at
1,000, 10 s at 5,000, 60 s at 20,000, 120 s at 50,000 (the issue's targets; peers and teams by their
people).

Each row prints, for the solver and for the greedy baseline: placed and its proven bound (the run's
``placed_bound``); fit and a proven fit bound *computed here*, independently of the solver (see
``fit_bound``); the max load ratio; idle eligible mentors (mentors with room, eligible for some
seeker, who got no group); groups opened; wall time (the whole ``match`` call plus ``validate``, as
the service spends it); peak resident memory of the process; and rule violations (``validate``,
always 0). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import random
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import min_cost_flow
from ortools.linear_solver import pywraplp

from bench.peer_bound import lp_fit_bound
from bench.peer_descent import share_line
from bench.synthetic_pool import instance
from contracts.events import ParticipantProfile
from contracts.policy import Form, Role
from services.matching.domain import MatchingInput, MatchingResult, greedy, levels, match, validate
from services.matching.domain.rules import PairRules, Pool

TOP_ARCS = 80
"""Fit bound: each placed mentee keeps its best arcs and one arc to an unlimited virtual mentor worth
its next-best fit, so the flow stays small and its value is still an upper bound. 80, not 20: on the
capacity-bound pools every mentor is full and many mentees end below their 20 best, so with 20 arcs the
virtual mentor's looseness alone was about 0.6 % of the bound at 20,000."""


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Row:
    label: str
    result: MatchingResult
    seconds: float
    cpu: float
    peak_mib: float
    violations: int
    fit_bound: float | None
    idle: int | None


def measure(run: Callable[[], MatchingResult], inp: MatchingInput) -> tuple[MatchingResult, float, float, float, int]:
    """Wall time of the run plus its validation, the process's CPU time in it (on a machine shared with
    other work, wall time far above CPU time is the machine's load, not the solver), and peak resident
    memory (sampled every 20 ms)."""
    peak = [_rss_mib()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started, cpu = time.perf_counter(), time.process_time()
    result = run()
    violations = len(validate(inp, result))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    done.set()
    sampler.join()
    return result, seconds, cpu, peak[0], violations


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
    raise the optimum.
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
    return idle, float(-f.optimal_cost())


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


def peer_lp_line(inp: MatchingInput, result: MatchingResult, old: float | None, seconds: float) -> str:
    """The set-partitioning LP bound (``bench/peer_bound.py``) beside the row's bound, and the gap to the
    tighter of the two: a line under a peer row (``--peer-lp``)."""
    found = lp_fit_bound(inp, result, seconds)
    tighter = found.value if old is None else min(old, found.value)
    fit = result.stats.total_fit
    gap = f"{(tighter - fit) / tighter:.2%}" if tighter else "-"
    return (
        f"  peer fit bound: row's {'-' if old is None else f'{old:,.0f}'}, set-partitioning LP {found.value:,.1f} "
        f"(proven; restricted LP {found.lp:,.1f}, {found.rounds} rounds, {found.columns:,} columns, "
        f"{found.nodes:,} nodes, {found.seconds:.0f} s); gap to the tighter {gap}"
    )


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


# instances -----------------------------------------------------------------------------------------


def facilitated(mentees: int, family: str, variant: int = 0) -> MatchingInput:
    """``capacity``: a mentor per four mentees, one group each, groups of 2-4. ``tight``: 0.3 mentors
    per mentee, one group each, groups of 2-6, a third share a language, time zones within 3 h, one
    member of a department per group, a declared conflict per eight people. ``variant`` draws another
    pool of the same family and size (0: the table's)."""
    tight = family == "tight"
    conflicts = 0.125 if tight else 0.01
    shift = 1_000_003 * variant
    base = instance(mentees, Form.FACILITATED_GROUP, seed=mentees + (1 if tight else 0) + shift, conflicts=conflicts)
    rng = random.Random(mentees + shift)
    people = [p for p in base.participants if p.role is not Role.MENTOR]
    mentors = [p for p in base.participants if p.role is Role.MENTOR]
    want = int(mentees * 0.3) if tight else mentees // 4
    if len(mentors) < want:  # promote the most senior mentees (reporting lines stay as they are)
        extra = sorted(people, key=lambda p: (-p.level, p.participant_id))[: want - len(mentors)]
        mentors += [p.model_copy(update={"role": Role.MENTOR}) for p in extra]
        taken = {p.participant_id for p in extra}
        people = [p for p in people if p.participant_id not in taken]
    out: list[ParticipantProfile] = []
    for p in [*mentors[:want], *people]:
        update: dict[str, object] = {"capacity": 1 if p.role is Role.MENTOR else None}
        if tight and len(p.languages) > 1 and rng.random() > 1 / 3:
            update["languages"] = [lang for lang in p.languages if lang != "en"]
        out.append(p.model_copy(update=update))
    changes: dict[str, object] = {
        "group_members_min": 2, "group_members_max": 6 if tight else 4,
        "time_limit_seconds": _limit(mentees),
    }  # fmt: skip
    if tight:
        changes.update({"max_timezone_distance_hours": 3.0, "max_same_department": 1})
    policy = base.policy.model_copy(update=changes)
    name = f"bench-fac-{family}-{mentees}"
    return base.model_copy(update={"participants": out, "policy": policy, "program_id": name})


def one_department(inp: MatchingInput, seed: int, share: float = 0.8) -> MatchingInput:
    """The pool with about ``share`` of its people moved into one department (Engineering)."""
    rng = random.Random(seed)
    people = [
        p.model_copy(update={"department": "Engineering"}) if rng.random() < share else p for p in inp.participants
    ]
    return inp.model_copy(update={"participants": people})


def facilitated_one_department(mentees: int) -> MatchingInput:
    """The outside-in probe's pool ``fac one-dept dept2 s16`` (``bench/probes/group_probe.py``): the default
    rules (groups of 3-8, capacities 2-6), at most 2 of a department per group, 80 % of the people in one
    department. The department bound and the group minimum bind together: a group holds at most two of
    that department (one beside a mentor of theirs) and needs people of the others to reach three."""
    inp = instance(mentees, Form.FACILITATED_GROUP, seed=16, conflicts=0.01)
    policy = inp.policy.model_copy(update={"max_same_department": 2, "time_limit_seconds": _limit(mentees)})
    return one_department(inp.model_copy(update={"policy": policy}), 16)


def peers(size: int) -> MatchingInput:
    inp = instance(size * 4 // 5, Form.PEER_GROUP, seed=size)
    return inp.model_copy(update={"policy": inp.policy.model_copy(update={"time_limit_seconds": _limit(size)})})


def teams(count: int) -> MatchingInput:
    """``count`` teams of 3-7 members (by department and site), a mentor per two teams, 2 per team."""
    rng = random.Random(count)
    inp = instance(count * 5, Form.TEAM, seed=count)
    members = [p for p in inp.participants if p.role is not Role.MENTOR]
    mentors = [p for p in inp.participants if p.role is Role.MENTOR][: max(2, count // 2)]
    out: list[ParticipantProfile] = list(mentors)
    t = 0
    while members and t < count:
        size = rng.randint(3, 7)
        out += [p.model_copy(update={"team_id": f"T{t:05d}"}) for p in members[:size]]
        members = members[size:]
        t += 1
    policy = inp.policy.model_copy(update={"time_limit_seconds": _limit(len(out))})
    return inp.model_copy(update={"participants": out, "policy": policy, "program_id": f"bench-team-{count}"})


def pairs(mentees: int) -> MatchingInput:
    return instance(mentees, Form.ONE_TO_ONE, seed=mentees)


def _limit(people: int) -> float:
    """The issue's targets: 1,000 in 3 s, 5,000 in 10 s, 20,000 in 60 s, 50,000 in 120 s."""
    for size, limit in ((1_000, 3.0), (5_000, 10.0), (20_000, 60.0)):
        if people <= size:
            return limit
    return 120.0


# the table -----------------------------------------------------------------------------------------

HEADER = (
    f"{'instance':<27} {'placed':>7} {'bound':>7} {'fit':>9} {'fit bnd':>9} {'gap':>6} {'maxload':>7} "
    f"{'idle':>5} {'groups':>6} {'status':>8} {'limit':>5} {'secs':>6} {'cpu':>6} {'peakMiB':>7} {'viol':>4}"
)


def line(row: Row, limit: float | None) -> str:
    s = row.result.stats
    bound = "-" if row.fit_bound is None else f"{row.fit_bound:,.0f}"
    gap = "-" if not row.fit_bound else f"{(row.fit_bound - s.total_fit) / row.fit_bound:.2%}"
    idle = "-" if row.idle is None else f"{row.idle:,}"
    lim = "-" if limit is None else f"{limit:g}"
    return (
        f"{row.label:<27} {s.placed_count:>7,} {s.placed_bound:>7,} {s.total_fit:>9,.0f} {bound:>9} {gap:>6} "
        f"{s.max_load_ratio:>7.3f} {idle:>5} {len(row.result.groups):>6,} {s.status:>8} {lim:>5} {row.seconds:>6.1f} "
        f"{row.cpu:>6.1f} {row.peak_mib:>7.0f} {row.violations:>4}"
    )


def digest(result: MatchingResult) -> str:
    """A short fingerprint of the groups (who is with whom, ids aside): equal digests, equal groups."""
    groups = sorted(sorted(m.participant_id for m in g.members) for g in result.groups)
    return hashlib.sha256(json.dumps(groups).encode()).hexdigest()[:12]


def run_case(
    name: str,
    inp: MatchingInput,
    seed: int,
    with_greedy: bool,
    show_digest: bool = False,
    peer_lp: float = 0.0,
    peer_share: tuple[int, int] = (-1, 0),
) -> None:
    limit = inp.policy.time_limit_seconds if inp.form is not Form.ONE_TO_ONE else None
    result, seconds, cpu, peak, violations = measure(lambda: match(inp, seed), inp)
    idle, bound = idle_and_fit_bound(inp, result)
    row = line(Row(f"{name} solver", result, seconds, cpu, peak, violations, bound, idle), limit)
    print(row + (f" {digest(result)}" if show_digest else ""), flush=True)
    if inp.form is Form.PEER_GROUP and peer_lp > 0:
        print(peer_lp_line(inp, result, bound, peer_lp), flush=True)
    if inp.form is Form.PEER_GROUP and peer_share[0] >= 0:
        print(share_line(inp, result, bound, *peer_share), flush=True)
    if with_greedy:
        base, seconds, cpu, peak, violations = measure(lambda: greedy(inp, seed), inp)
        idle, bound = idle_and_fit_bound(inp, base)
        print(line(Row(f"{name} greedy", base, seconds, cpu, peak, violations, bound, idle), None), flush=True)


def cases(args: argparse.Namespace) -> list[tuple[str, Callable[[], MatchingInput], bool]]:
    out: list[tuple[str, Callable[[], MatchingInput], bool]] = []
    for size in (int(x) for x in args.facil_sizes.split(",") if x):
        for family in ("capacity", "tight"):
            for variant in range(args.variants):
                name = f"facil {family} {size:,}" + (f" v{variant}" if variant else "")
                out.append((name, functools.partial(facilitated, size, family, variant), True))
        if size <= 5_000:  # the probe's department-dominated pool (its 20,000 is not part of the probe)
            out.append((f"facil one-dept {size:,}", functools.partial(facilitated_one_department, size), True))
    for size in (15, 30, 500, 2_000, 10_000):
        out.append((f"peer {size:,}", functools.partial(peers, size), True))
    for count in (200, 2_000):
        out.append((f"team {count:,} teams", functools.partial(teams, count), True))
    for size in (int(x) for x in args.pairs.split(",") if x):
        out.append((f"one_to_one {size:,}", functools.partial(pairs, size), True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the rows whose name contains this (e.g. 'facil tight')")
    parser.add_argument("--max-size", type=int, default=50_000, help="skip instances above this many seekers")
    parser.add_argument("--pairs", default="", help="one-to-one sizes, e.g. 1000,5000,20000")
    parser.add_argument("--no-greedy", action="store_true", help="skip the greedy baseline rows")
    parser.add_argument("--facil-sizes", default="1000,5000,20000,50000", help="facilitated sizes (mentees)")
    parser.add_argument("--variants", type=int, default=1, help="facilitated pools drawn per family and size")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--digest", action="store_true", help="end each solver row with a fingerprint of its groups (replays)"
    )
    parser.add_argument(
        "--no-clock",
        action="store_true",
        help="switch the wall-clock deadline off (as the tests do): the result an unloaded machine gives, "
        "with its CPU seconds; on a shared machine wall time then overruns the limit by the load",
    )
    parser.add_argument(
        "--peer-lp",
        type=float,
        default=0.0,
        help="seconds for the set-partitioning LP fit bound of each peer row (bench/peer_bound.py; 0: off)",
    )
    parser.add_argument(
        "--peer-share",
        type=int,
        default=-1,
        help="expansions per peer of the best-first share bound under each peer row (bench/peer_share.py; "
        "0: its root bound only; default: off)",
    )
    parser.add_argument(
        "--peer-share-steps", type=int, default=0, help="steps on that bound at one expansion a peer, first"
    )
    args = parser.parse_args()
    if args.no_clock:
        levels.WALL_DEADLINE_SHARE = 1_000.0
    print(HEADER)
    print("-" * len(HEADER))
    for name, build, greedy_too in cases(args):
        words = [w for w in name.split() if w[0].isdigit()]
        size = int(words[0].replace(",", ""))
        if args.only not in name or size > args.max_size:
            continue
        run_case(
            name,
            build(),
            args.seed,
            greedy_too and not args.no_greedy,
            args.digest,
            args.peer_lp,
            (args.peer_share, args.peer_share_steps),
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess peak RSS {rss:.0f} MiB. fit bnd: transportation relaxation at the run's placed set and max")
    print("load ratio (computed here, not by the solver); gap = (fit bnd - fit) / fit bnd; secs = match + validate")
    print("(wall), cpu = the process's CPU seconds in them (threads included). Peer rows: fit bnd is the exact")
    print(f"optimum (every valid group, set partitioning by CBC) up to {EXACT_PEERS} placed peers, else b-matching.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
