"""A proven upper bound on the total fit of peer groups, for a fixed placed set: the set-partitioning
LP by column generation, made a proof by an exact search for every group that could still gain.

The quantity is the product's: a grouping of exactly the placed peers into groups of
``group_members_min..max`` members, each pairwise compatible (every pairwise rule, excluded pairs
too), with one language all members speak (when required) and at most ``max_same_department`` of a
department; its fit is the sum over all member pairs of the pair fit (``PairRules.fit``). Compatibility
and fit are computed here from the rules' masks, not read from the solver.

Why the bound holds (a reader can check it in three lines). Take any numbers ``u_i`` (one per placed
peer). For a valid group S let ``red(S) = w(S) - sum_{i in S} u_i`` (w: its fit). In any grouping P of
the placed peers every peer is in exactly one group, so

    fit(P) = sum_S w(S) = sum_i u_i + sum_S red(S) = sum_i u_i + sum_i red(S_i) / |S_i|
           <= sum_i u_i + sum_i d_i,   where d_i = max(0, max over valid S containing i of red(S) / |S|).

Any ``u`` gives a bound; the good ones are the duals of the set-partitioning LP (each placed peer in
exactly one group, most fit) over the groups listed so far (columns). The ``d_i`` are found *exactly*
by ``positive_groups``: a depth-first search over every valid group (members added in row order, so
each group is met once) that prunes a branch only when an upper bound on ``red`` of every group
completing it is at most 0. The groups it finds are new columns; after a few rounds few remain and
the bound is close to the LP optimum. With exact ``d_i`` and the LP's optimal duals it *is* the
set-partitioning LP bound, far tighter than a b-matching (which lets a peer's partners not be partners
of each other).

The upper bound used for pruning a partial group P (members so far, ``val = red(P)``) that still takes
a set Q of r members from the candidates C (compatible with all of P, later rows, keeping the language
and department rules): ``red(P + Q) = val + sum_{j in Q} (w(j, P) - u_j) + sum_{pairs j, l of Q} w_jl``.
Spreading each added member's u over its r - 1 pairs in Q, this is
``val + sum_{j in Q} (w(j, P) + half of sum_{l in Q, l != j} (w_jl - (u_j + u_l) / (r - 1)))``, and
each term is at most j's value with its r - 1 best compatible l in C; so ``val + the r largest of
those`` bounds every completion of size |P| + r (r = 1: ``val + max (w(j, P) - u_j)``). When C is large
(above LOCAL_CANDIDATES), half of j's r - 1 best fits with *any* compatible peer, less u_j, stands in
(larger, so still a bound).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from ortools.linear_solver import pywraplp

from bench.fit_bounds import _compatible_row
from services.matching.domain import MatchingInput, MatchingResult
from services.matching.domain.rules import PairRules, Pool

LOCAL_CANDIDATES = 700
"""Up to this many candidates, each one's best pair fits are taken within the candidates (tighter);
above, within all its compatible peers (precomputed, cheaper)."""
EPS = 1e-6


@dataclass
class PeerProblem:
    """The placed peers as rows: ``compat`` (every pairwise rule), ``fit`` (pair fits, symmetric, 0 on the
    diagonal), ``lang`` (language bits; all ones when a shared language is not required), ``dept``."""

    compat: npt.NDArray[np.bool_]
    fit: npt.NDArray[np.int32]
    lang: npt.NDArray[np.uint64]
    dept: npt.NDArray[np.int64]
    size_min: int
    size_max: int
    dept_limit: int | None

    def value(self, group: Sequence[int]) -> int:
        g = list(group)
        return int(self.fit[np.ix_(g, g)].sum()) // 2

    def valid(self, group: Sequence[int]) -> bool:
        g = sorted(group)
        if not self.size_min <= len(g) <= self.size_max:
            return False
        if not all(self.compat[a, b] for k, a in enumerate(g) for b in g[k + 1 :]):
            return False
        spoken = np.bitwise_and.reduce(self.lang[g])
        if spoken == 0:
            return False
        return self.dept_limit is None or int(np.bincount(self.dept[g]).max()) <= self.dept_limit


@dataclass
class Search:
    """What one pass of ``positive_groups`` found: every valid group with red > EPS (up to ``keep``, the
    best kept when more), each peer's d_i, and the nodes visited."""

    best_share: npt.NDArray[np.float64]
    credit: npt.NDArray[np.float64]
    """Each peer's bound on its share from the branches left (``capped``): d_i = max(best_share, credit)."""
    found: list[tuple[float, tuple[int, ...]]] = field(default_factory=list)
    nodes: int = 0
    capped: int = 0
    """Branches not searched (``root_cap``): their bound was credited instead, so d stays a proof."""

    @property
    def d(self) -> npt.NDArray[np.float64]:
        """The d_i of the module's proof."""
        return np.maximum(self.best_share, self.credit)


def positive_groups(pp: PeerProblem, u: npt.NDArray[np.float64], keep: int, root_cap: int | None = None) -> Search:
    """Every valid group whose reduced fit ``w(S) - u(S)`` is positive: each peer's best share of one
    (``best_share``, the d_i of the module's proof) and the groups (the ``keep`` best). ``root_cap``: leave
    the groups of a lowest member after that many nodes (``complete`` False: the d_i are then no proof;
    for rounds that only look for columns)."""
    n = len(pp.compat)
    fm = np.where(pp.compat, pp.fit, 0).astype(np.float64)
    width = pp.size_max - 1
    # each peer's best fits with any compatible peer, best first: the half-sums of its m best (m = 0..width)
    best_any = -np.sort(-fm, axis=1)[:, :width] if n > width else -np.sort(-fm, axis=1)
    half_any = np.zeros((n, width + 1))
    half_any[:, 1 : best_any.shape[1] + 1] = np.cumsum(best_any, axis=1) / 2
    out = Search(best_share=np.zeros(n), credit=np.zeros(n))
    n_dept = int(pp.dept.max()) + 1 if n else 1
    limit = pp.dept_limit if pp.dept_limit is not None else pp.size_max

    def record(members: list[int], red: float) -> None:
        share = red / len(members)
        for m in members:
            if share > out.best_share[m]:
                out.best_share[m] = share
        out.found.append((red, tuple(members)))
        if len(out.found) > 4 * keep:
            out.found.sort(reverse=True)
            del out.found[keep:]

    def bound(
        members: list[int], val: float, cand: npt.NDArray[np.int64], w_p: npt.NDArray[np.float64]
    ) -> tuple[float, float]:
        """Upper bounds on red(S) and on red(S) / |S| over every group S completing ``members`` from
        ``cand`` (the module's docstring says why they hold)."""
        p = len(members)
        rmax = min(pp.size_max - p, len(cand))
        rmin = max(1, pp.size_min - p)
        if rmax < rmin:
            return -np.inf, -np.inf
        base = w_p - u[cand]
        local = len(cand) <= LOCAL_CANDIDATES
        if local:
            u_c = u[cand]
            within = np.where(pp.compat[np.ix_(cand, cand)], fm[np.ix_(cand, cand)], -np.inf)
            np.fill_diagonal(within, -np.inf)
        best, share = -np.inf, -np.inf
        for r in range(rmin, rmax + 1):
            if r == 1:
                s = base
            elif local:
                # the added members' u spread over their pairs: each pair of Q carries (u_j + u_l) / (r - 1)
                reduced = within - (u_c[:, None] + u_c[None, :]) / (r - 1)
                top = -np.partition(-reduced, r - 2, axis=1)[:, : r - 1]
                s = w_p + top.sum(axis=1) / 2
            else:
                s = base + half_any[cand, r - 1]
            top_r = np.partition(s, len(s) - r)[len(s) - r :].sum() if len(s) > r else s.sum()
            best = max(best, val + float(top_r))
            share = max(share, (val + float(top_r)) / (p + r))
        return best, share

    def grow(
        members: list[int], val: float, cand: npt.NDArray[np.int64], w_p: npt.NDArray[np.float64],
        spoken: np.uint64, depts: npt.NDArray[np.int64],
    ) -> None:  # fmt: skip
        out.nodes += 1
        if len(members) >= pp.size_min and val > EPS:
            record(members, val)
        if len(members) == pp.size_max or not len(cand):
            return
        most, share = bound(members, val, cand, w_p)
        if most <= EPS:
            return
        for k in range(len(cand)):
            if root_cap is not None and out.nodes > stop[0]:
                # not searched further: every group below (with any of cand[k:]) holds ``members`` and
                # some of cand[k:], and each of its members' share is at most ``share``: credited to
                # all of them (a looser proof)
                out.capped += 1
                left = np.array([*members, *map(int, cand[k:])], dtype=np.int64)
                out.credit[left] = np.maximum(out.credit[left], share)
                return
            j = int(cand[k])
            if depts[pp.dept[j]] + 1 > limit:
                continue
            rest = cand[k + 1 :]
            now = spoken & pp.lang[j]
            ok = pp.compat[j, rest] & ((pp.lang[rest] & now) != 0)
            depts[pp.dept[j]] += 1
            if pp.dept_limit is not None:
                ok &= depts[pp.dept[rest]] < limit
            members.append(j)
            grow(members, val + w_p[k] - u[j], rest[ok], w_p[k + 1 :][ok] + fm[j, rest[ok]], now, depts)
            members.pop()
            depts[pp.dept[j]] -= 1

    stop = [0]
    for i in range(n):
        stop[0] = out.nodes + (root_cap or 0)
        later = np.arange(i + 1, n, dtype=np.int64)
        ok = pp.compat[i, later] & ((pp.lang[later] & pp.lang[i]) != 0)
        depts = np.zeros(n_dept, dtype=np.int64)
        depts[pp.dept[i]] = 1
        if pp.dept_limit is not None:
            ok &= depts[pp.dept[later]] < limit
        cand = later[ok]
        grow([i], -float(u[i]), cand, fm[i, cand].copy(), pp.lang[i], depts)
    out.found.sort(reverse=True)
    del out.found[keep:]
    return out


@dataclass
class Bound:
    value: float
    """sum u + sum d: the proven bound (None-like inf if the last search was cut)."""
    lp: float
    """The restricted LP's optimum over the columns listed (not a bound by itself)."""
    rounds: int
    columns: int
    nodes: int
    seconds: float
    proven: bool


def restricted_lp(pp: PeerProblem, columns: list[tuple[int, ...]]) -> tuple[float, npt.NDArray[np.float64]]:
    """The set-partitioning LP over ``columns`` (each row covered exactly once), by GLOP: its value and
    the cover constraints' duals."""
    solver = pywraplp.Solver.CreateSolver("GLOP")
    n = len(pp.compat)
    xs = [solver.NumVar(0.0, solver.infinity(), "") for _ in columns]  # no upper bound: the rows imply it, and
    # a bound of 1 takes the value as its reduced cost and leaves the rows' duals at 0
    cover: list[list[pywraplp.Variable]] = [[] for _ in range(n)]
    for var, group in zip(xs, columns, strict=True):
        for m in group:
            cover[m].append(var)
    rows = [solver.Add(solver.Sum(vs) == 1) for vs in cover]
    solver.Maximize(solver.Sum([pp.value(g) * var for g, var in zip(columns, xs, strict=True)]))
    status = solver.Solve()
    if status != pywraplp.Solver.OPTIMAL:
        raise RuntimeError(f"restricted set-partitioning LP: status {status}")
    return solver.Objective().Value(), np.array([c.dual_value() for c in rows])


def fit_bound(
    pp: PeerProblem,
    groupings: Sequence[Sequence[Sequence[int]]],
    seconds: float = 600.0,
    per_round: int = 3_000,
    root_cap: int = 60,
    smoothing: float = 0.5,
    log: bool = False,
) -> Bound:
    """Column generation from the groups of ``groupings`` (valid groupings of all rows, e.g. the run's).

    Each round solves the restricted LP, searches at its duals smoothed towards the duals of the best
    estimate so far (the LP is degenerate and its duals jump; Wentges' smoothing), or at the LP's own
    duals when the last search found no group that gains at them, and adds the groups found as columns.
    Every search is a proof (``sum u + sum d``). Pools above ``QUICK_ROWS`` rows search with ``root_cap``
    nodes per lowest member (a loose proof, quick) until a round adds few columns or its estimate (the
    groups found only) is within 3 % of the LP, then completely. Ends when a complete search at the LP's
    duals finds nothing (the bound is then the LP optimum), when the bound is within 0.5 of the LP, or
    after ``seconds`` (checked between rounds). The bound is the least of the rounds'."""
    started = time.perf_counter()
    columns = sorted({tuple(sorted(g)) for grouping in groupings for g in grouping})
    listed = set(columns)
    center: npt.NDArray[np.float64] | None = _shares(pp, groupings[0]) if groupings else None
    cap: int | None = root_cap if len(pp.compat) > QUICK_ROWS else None
    best, steer, lp, nodes, done = np.inf, np.inf, 0.0, 0, 0
    while True:
        done += 1
        lp, u_lp = restricted_lp(pp, columns)
        u = u_lp if center is None else smoothing * center + (1 - smoothing) * u_lp
        found = positive_groups(pp, u, per_round, cap)
        nodes += found.nodes
        value = float(u.sum() + found.d.sum())
        estimate = float(u.sum() + found.best_share.sum())  # the groups found only: steers, proves nothing
        best = min(best, value)
        if estimate < steer:
            steer, center = estimate, u
        new = [g for _, g in found.found if g not in listed]
        columns.extend(new)
        listed.update(new)
        gains_at_lp = [g for g in new if pp.value(g) - u_lp[list(g)].sum() > EPS]
        if log:
            print(
                f"round {done}: lp {lp:.1f} bound here {value:.1f} estimate {estimate:.1f} best {best:.1f} "
                f"new {len(new)} ({len(gains_at_lp)} gain at the LP's duals) nodes {found.nodes} "
                f"capped {found.capped} cap {cap} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        if u is u_lp and not found.capped and not found.found:
            best = min(best, lp)  # no group gains at the LP's duals: the LP optimum is the bound
            break
        if best - lp < 0.5 or time.perf_counter() - started > seconds:
            break
        if cap is not None and (len(new) < max(10, len(pp.compat) // 50) or estimate - lp < 0.03 * lp):
            cap = None  # the duals have settled: a complete search, the tight proof, is worth its work
        if not gains_at_lp:
            center = None  # a mispricing: the next search at the LP's own duals
    return Bound(best, lp, done, len(columns), nodes, time.perf_counter() - started, True)


def _shares(pp: PeerProblem, grouping: Sequence[Sequence[int]]) -> npt.NDArray[np.float64]:
    """Each peer's half of its fit with its group in ``grouping``: duals to start from (they sum to the
    grouping's fit; the restricted LP's own are degenerate and far off on large pools)."""
    out = np.zeros(len(pp.compat))
    for g in grouping:
        members = list(g)
        out[members] = pp.fit[np.ix_(members, members)].sum(axis=1) / 2
    return out


QUICK_ROWS = 120
"""Pools above this many placed peers get quick rounds (capped searches) before the complete ones."""


def problem_of(inp: MatchingInput, placed_ids: Collection[str]) -> PeerProblem:
    """The placed peers of a run as a ``PeerProblem``, computed from the input's rules here (the
    benchmark's ``_compatible_row``, ``PairRules.fit``), not from the solver's matrices."""
    people = sorted(inp.participants, key=lambda p: p.participant_id)
    rows = np.array([i for i, p in enumerate(people) if p.participant_id in placed_ids], dtype=np.int64)
    pol = inp.policy
    rules = PairRules(Pool.encode(people), pol, rows)
    n = len(rows)
    compat = np.zeros((n, n), dtype=bool)
    fit = np.zeros((n, n), dtype=np.int32)
    for a in range(n):
        compat[a] = _compatible_row(inp, people, rows, rules, a)
        fit[a] = rules.fit(int(rows[a]))
    np.fill_diagonal(fit, 0)
    members = [people[int(i)] for i in rows]
    if pol.require_shared_language:
        vocab = {tag: k for k, tag in enumerate(sorted({t for p in members for t in p.languages}))}
        if len(vocab) > 64:
            raise ValueError("more than 64 languages: the bound's language bits do not hold them")
        lang = np.array([sum(1 << vocab[t] for t in set(p.languages)) for p in members], dtype=np.uint64)
    else:
        lang = np.full(n, np.iinfo(np.uint64).max, dtype=np.uint64)
    departments = {d: k for k, d in enumerate(sorted({p.department for p in members}))}
    dept = np.array([departments[p.department] for p in members], dtype=np.int64)
    return PeerProblem(compat, fit, lang, dept, pol.group_members_min, pol.group_members_max, pol.max_same_department)


def run_groupings(inp: MatchingInput, result: MatchingResult) -> list[list[int]]:
    """The run's groups as rows of ``problem_of(inp, placed)``."""
    people = sorted(p.participant_id for p in inp.participants)
    placed = {m.participant_id for g in result.groups for m in g.members}
    row = {pid: k for k, pid in enumerate(pid for pid in people if pid in placed)}
    return [sorted(row[m.participant_id] for m in g.members) for g in result.groups]


def lp_fit_bound(inp: MatchingInput, result: MatchingResult, seconds: float = 600.0) -> Bound:
    """The module's bound for the run's placed set, columns seeded with the run's groups."""
    placed = {m.participant_id for g in result.groups for m in g.members}
    pp = problem_of(inp, placed)
    groups = run_groupings(inp, result)
    if not groups:
        return Bound(0.0, 0.0, 0, 0, 0, 0.0, True)
    return fit_bound(pp, [groups], seconds=seconds)


def beside_row(old: float | None, value: float, fit: float) -> tuple[str, str]:
    """The row's bound as printed, and the gap of ``fit`` to the tighter of it and ``value`` (a proven
    bound computed here): what a line under a peer row says about both."""
    tighter = value if old is None else min(old, value)
    gap = f"{(tighter - fit) / tighter:.2%}" if tighter else "-"
    return ("-" if old is None else f"{old:,.0f}"), gap
