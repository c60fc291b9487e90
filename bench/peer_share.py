"""Proven upper bounds on each peer's d_i (``bench/peer_bound.py``) by a best-first search with a node
budget: it always ends, and what it leaves open is bounded, so sum u + sum d_i stays a proof.

d_i = max(0, max over valid groups S containing i of red(S) / |S|), red(S) = w(S) - u(S). The search
for peer i walks groups P containing i (i first, then members in candidate order, so each group is
met once). A node is P with its candidates C: the peers after P's last member in the order that are
compatible with all of P and keep the language and department rules. Every group below the node is
P + Q with Q a subset of C of size r (``size_min - |P| <= r <= size_max - |P|``).

Node bound (why it holds). red(P + Q) = red(P) + sum_{j in Q} (w(j, P) - u_j) + sum_{pairs j, l in Q} w_jl.
Spread each added member's u_j over its r - 1 pairs in Q: the last two sums equal
sum_{j in Q} (w(j, P) + h_j), h_j = half of sum_{l in Q, l != j} (w_jl - (u_j + u_l) / (r - 1)), and
h_j is at most ``half_r[j]``: half of j's r - 1 largest values of (w_jl - (u_j + u_l) / (r - 1)) over
*every* peer l compatible with j (r = 1: h_j = -u_j). So red(P + Q) <= red(P) + the r largest of
(w(j, P) + half_r[j]) over C, and the share is that over |P| + r; the node's bound is the largest over r.
A child's groups are some of its parent's, so a child is bounded by the smaller of the two.

Best first: the open node with the largest bound is expanded (all its children bounded at once);
groups met are incumbents. When the budget of expansions is spent, every group containing i not yet
met lies below an open node, so d_i <= max(0, best share met, largest open bound). A node is dropped
once its bound is at most the best share met (it cannot raise d_i) or at most 0.

Two reductions keep it small, both proofs by the same inequality: a peer j whose proven bound D_j
(``root`` bounds for all, then the finished searches) is at most i's best share met leaves i's
candidates (every group with i and j has share <= D_j), and a search stops when its largest open bound
is within ``slack`` of its best share (d_i is then credited that open bound).
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bench.peer_bound import PeerProblem, _shares, problem_of, run_groupings
from bench.peer_root import descend
from services.matching.domain import MatchingInput, MatchingResult

F = npt.NDArray[np.float64]
Ix = npt.NDArray[np.int64]


@dataclass
class Shares:
    """Per peer: ``d`` the proven bound on d_i and ``met`` the best share of a group met (a lower bound
    on d_i); ``expansions`` the nodes expanded in all searches, ``open_left`` the nodes they left open."""

    d: F
    met: F
    expansions: int
    open_left: int


@dataclass(order=True)
class _Node:
    key: tuple[float, int]
    members: tuple[int, ...] = field(compare=False)
    val: float = field(compare=False)
    cand: Ix = field(compare=False)
    w_p: F = field(compare=False)
    spoken: np.uint64 = field(compare=False)
    dcount: dict[int, int] = field(compare=False)

    @property
    def bound(self) -> float:
        return -self.key[0]


class Pricing:
    """The u-dependent tables of the node bound: ``fm`` (fits, 0 where incompatible) and ``half[r]``."""

    def __init__(self, pp: PeerProblem, u: F) -> None:
        self.pp, self.u = pp, u
        n = len(pp.compat)
        self.fm = np.where(pp.compat, pp.fit, 0).astype(np.float64)
        self.half = np.zeros((pp.size_max, n))
        self.half[1] = -u
        for r in range(2, pp.size_max):
            self.half[r] = _half_best(pp, u, r)
        self.limit = pp.dept_limit if pp.dept_limit is not None else pp.size_max

    def local_half(self, cols: Ix, pair_ok: npt.NDArray[np.bool_], r: int) -> F:
        """``half_r`` with each j's partners l taken among ``cols`` where ``pair_ok`` (a superset of
        every Q below the node): at most the global one, still a bound."""
        if r == 1:
            return -self.u[cols]
        k = r - 1
        if len(cols) <= k:
            return np.full(len(cols), -1e9)
        vals = np.where(pair_ok, self.fm[np.ix_(cols, cols)] - self.u[cols][None, :] / k, -1e9)
        top = -np.partition(-vals, k - 1, axis=1)[:, :k]
        return np.asarray((top.sum(axis=1) - self.u[cols]) / 2)

    def share_bounds(self, p: int, val: F, terms: F, allowed: npt.NDArray[np.bool_], cols: Ix,
                     pair_ok: npt.NDArray[np.bool_] | None = None) -> F:  # fmt: skip
        """Per row, a node with |P| = p, red(P) = ``val``, candidates ``cols[allowed]`` and w(j, P) =
        ``terms``: the largest over r of (val + the r largest of terms + half_r) / (p + r)."""
        pp = self.pp
        out = np.full(len(val), -np.inf)
        for r in range(max(1, pp.size_min - p), pp.size_max - p + 1):
            if r > terms.shape[1]:
                break
            half = self.half[r][cols] if pair_ok is None else self.local_half(cols, pair_ok, r)
            t = np.where(allowed, terms + half[None, :], -np.inf)
            top = -np.partition(-t, r - 1, axis=1)[:, :r]
            out = np.maximum(out, (val + top.sum(axis=1)) / (p + r))
        return out

    def root(self, i: int, order: Ix) -> _Node:
        """The node {i} with every peer allowed beside i as candidates, strongest first (``order``)."""
        pp = self.pp
        cand = order[self.allowed_with(i, order, pp.lang[i], {int(pp.dept[i]): 1})]
        return _Node((0.0, 0), (i,), -float(self.u[i]), cand, self.fm[i, cand].copy(), pp.lang[i],
                     {int(pp.dept[i]): 1})  # fmt: skip

    def allowed_with(self, j: int, cand: Ix, spoken: np.uint64, dcount: dict[int, int]) -> npt.NDArray[np.bool_]:
        pp = self.pp
        ok = pp.compat[j, cand] & ((pp.lang[cand] & spoken) != 0)
        if pp.dept_limit is not None:
            full = [d for d, c in dcount.items() if c >= self.limit]
            ok &= ~np.isin(pp.dept[cand], full)
        return np.asarray(ok, dtype=bool)

    def children(self, node: _Node, floor: float, live: npt.NDArray[np.bool_]) -> tuple[list[_Node], list[float]]:
        """Every child of ``node`` (P + cand[k], candidates after k), bounded; those bounded above
        ``floor`` are returned, with each child's own group share (``-inf`` below size_min)."""
        pp, c = self.pp, node.cand
        p = len(node.members) + 1
        vals = node.val + node.w_p - self.u[c]
        own = vals / p if p >= pp.size_min else np.full(len(c), -np.inf)
        if p == pp.size_max or len(c) < 2:
            return [], list(own)
        pair_ok = pp.compat[np.ix_(c, c)] & ((pp.lang[c][None, :] & pp.lang[c][:, None] & node.spoken) != 0)
        pair_ok &= live[c][None, :] & live[c][:, None]
        allowed = np.triu(pair_ok, 1)
        if pp.dept_limit is not None:
            d = pp.dept[c]
            counts = np.array([node.dcount.get(int(x), 0) for x in d])
            allowed &= ~((d[None, :] == d[:, None]) & (counts[None, :] + 1 >= self.limit))
        terms = node.w_p[None, :] + self.fm[np.ix_(c, c)]
        bounds = np.minimum(self.share_bounds(p, vals, terms, allowed, c, pair_ok), node.bound)
        out: list[_Node] = []
        for k in np.flatnonzero(bounds > floor):
            j = int(c[k])
            dcount = dict(node.dcount)
            dcount[int(pp.dept[j])] = dcount.get(int(pp.dept[j]), 0) + 1
            keep = allowed[k]
            out.append(_Node((-float(bounds[k]), 0), (*node.members, j), float(vals[k]), c[keep],
                             terms[k, keep], node.spoken & pp.lang[j], dcount))  # fmt: skip
        return out, list(own)


def search_share(pr: Pricing, i: int, met: F, ceiling: F, budget: int) -> tuple[float, int, int]:
    """A proven bound on d_i: best first, at most ``budget`` expansions; ``met`` is raised for every
    member of every group met. ``ceiling``: proven bounds so far (a peer at or below i's best share met
    leaves the candidates). Returns (the bound, expansions, nodes left open)."""
    pp = pr.pp
    strength = pr.half[pp.size_max - 1]
    order = np.argsort(-(pr.fm[i] + strength), kind="stable").astype(np.int64)
    root = pr.root(i, order)
    whole = np.ones((1, len(root.cand)), dtype=bool)
    first = pr.share_bounds(1, np.array([root.val]), root.w_p[None, :], whole, root.cand)
    root.key = (-float(first[0]), 0)
    heap, counter, done = [root], itertools.count(1), 0
    while heap and done < budget and heap[0].bound > max(0.0, met[i]):
        node = heapq.heappop(heap)
        done += 1
        kids, own = pr.children(node, max(0.0, met[i]), ceiling > max(0.0, met[i]))
        _meet(node, own, met)
        for kid in kids:
            if kid.bound > max(0.0, met[i]):
                kid.key = (kid.key[0], next(counter))
                heapq.heappush(heap, kid)
    top = heap[0].bound if heap else -np.inf
    return max(0.0, float(met[i]), top), done, len(heap)


def _meet(node: _Node, own: list[float], met: F) -> None:
    """Each child of ``node`` that is a group (its share not -inf) raises its members' ``met``."""
    for k, share in enumerate(own):
        if share > -np.inf:
            group = [*node.members, int(node.cand[k])]
            met[group] = np.maximum(met[group], share)


def shares(pp: PeerProblem, u: F, budget: int) -> Shares:
    """Proven d_i for every peer at ``u`` (``search_share``, ``budget`` expansions each), the weakest
    peers first (their small bounds then take them out of the others' candidates)."""
    n = len(pp.compat)
    pr = Pricing(pp, u)
    met, ceiling = np.zeros(n), np.full(n, np.inf)
    total = left = 0
    for i in np.argsort(pr.half[pp.size_max - 1], kind="stable"):
        ceiling[i], done, opened = search_share(pr, int(i), met, ceiling, budget)
        total += done
        left += opened
    return Shares(np.maximum(ceiling, met), met, total, left)


def _half_best(pp: PeerProblem, u: F, r: int, chunk: int = 1_000) -> F:
    """Half of each peer's r - 1 largest (w_jl - (u_j + u_l) / (r - 1)) over its compatible l, less u_j
    (a peer with fewer compatible peers cannot be in such a group: a very low value)."""
    n = len(pp.compat)
    out = np.zeros(n)
    k = r - 1
    for a in range(0, n, chunk):
        rows = slice(a, min(n, a + chunk))
        vals = np.where(pp.compat[rows], pp.fit[rows] - u[None, :] / k, -1e9)
        top = -np.partition(-vals, k - 1, axis=1)[:, :k]
        out[rows] = (top.sum(axis=1) - u[rows]) / 2
    return out


@dataclass
class ShareBound:
    """``value`` = sum u + sum d_i (the proof); ``root`` the same with every search at its root (after
    ``descend``); ``estimate`` sum u + sum of the shares met (no proof: where the optimum may lie)."""

    value: float
    root: float
    estimate: float
    expansions: int
    seconds: float


def share_bound(pp: PeerProblem, groupings: list[list[int]], budget: int, steps: int = 40) -> ShareBound:
    """The proof at u chosen by ``descend`` from the shares of the run's grouping ``groupings``."""
    started = time.process_time()
    u, root, _ = descend(pp, _shares(pp, groupings), steps)
    found = shares(pp, u, budget)
    return ShareBound(
        float(u.sum() + found.d.sum()), root, float(u.sum() + found.met.sum()), found.expansions,
        time.process_time() - started,
    )  # fmt: skip


def share_line(inp: MatchingInput, result: MatchingResult, old: float | None, budget: int) -> str:
    """This module's bound beside the row's, and the gap to the tighter: a line under a peer row."""
    placed = {m.participant_id for g in result.groups for m in g.members}
    pp = problem_of(inp, placed)
    found = share_bound(pp, run_groupings(inp, result), budget)
    tighter = found.value if old is None else min(old, found.value)
    fit = result.stats.total_fit
    gap = f"{(tighter - fit) / tighter:.2%}" if tighter else "-"
    return (
        f"  peer fit bound: row's {'-' if old is None else f'{old:,.0f}'}, best-first shares {found.value:,.1f} "
        f"(proven; root {found.root:,.1f}, groups met {found.estimate:,.1f}, {budget} expansions a peer, "
        f"{found.expansions:,} in all, {found.seconds:.0f} s CPU); gap to the tighter {gap}"
    )
