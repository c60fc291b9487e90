"""Proven upper bounds on each peer's d_i (``bench/peer_bound.py``) by a best-first search with a
budget of expansions: it always ends, and what it leaves open is bounded, so sum u + sum d_i stays a
proof at any u (``bench/peer_descent.py`` chooses u).

d_i = max(0, max over valid groups S containing i of red(S) / |S|), red(S) = w(S) - u(S). The search
for peer i walks groups P containing i (i first, then members in one fixed order of the others, so
each group is met once). A node is P with its candidates C: the peers after P's last member in that
order that are compatible with all of P, speak a language all of P speak and keep the department
rule. Every group below the node is P + Q, Q a subset of C of size r (``size_min - |P| <= r <=
size_max - |P|``), its members pairwise compatible with a language in common.

Node bound (why it holds). red(P + Q) = red(P) + sum_{j in Q} (w(j, P) - u_j) + sum_{pairs j, l in Q} w_jl.
Spread each added member's u_j over its r - 1 pairs in Q: the last two sums equal
sum_{j in Q} (w(j, P) + h_j), h_j = half of sum_{l in Q, l != j} (w_jl - (u_j + u_l) / (r - 1)), and
h_j <= ``half_r[j]``: half of (j's r - 1 largest (w_jl - u_l / (r - 1)) over a set of l holding
Q - j, less u_j) (r = 1: h_j = -u_j). That set is every peer compatible with j (``partners``,
computed once per u) or, at nodes of at most LOCAL_HALF candidates, the candidates that are compatible
with j and share a language with it (``local_half``: tighter). So red(P + Q) <= red(P) + the r
largest of (w(j, P) + half_r[j]) over C, the share is that over |P| + r, and the node's bound is the
largest over r. A child's groups are some of its parent's, so a child takes the smaller of the two.

Best first: the open node with the largest bound is expanded (all its children bounded at once, each
built only when popped); groups met raise their members' ``Met``. When the budget is spent, every
group containing i not yet met lies below an open node, so d_i <= max(0, best share met, largest open
bound). A node is dropped once its bound is at most max(0, i's best share met): it cannot raise d_i.
A peer j whose proven bound (a finished search's) is at most that leaves i's candidates: every group
with i and j has share <= d_j's bound. Children's candidate pairs are read from a table of pairs
that are compatible and share a language (a superset of those sharing the group's language: looser,
so still a bound); a popped child's candidates are then cut to the group's language exactly.

The gradient (``with_slope``): each d_i is, at its witness, a function linear in u: a group met
(-1 / |S| on each member) or the open node's bound (``row_slope``: at its best r and its r largest,
-1 / (|P| + r) on each member of P, on each chosen j -1 / (|P| + r), or half that for r > 1, and
-1 / (2 (r - 1) (|P| + r)) on each of j's chosen partners). It only steers the choice of u.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bench.peer_bound import PeerProblem
from bench.peer_root import partners

F = npt.NDArray[np.float64]
Local = tuple[npt.NDArray[np.bool_], npt.NDArray[np.float32]]
"""A node's candidate pairs that may meet and their fits (``local_half``)."""
LOCAL_HALF = 250
"""Nodes with at most this many candidates take each candidate's partners among them (``local_half``:
tighter); larger ones use the precomputed partners among all its compatible peers (cheaper)."""
Ix = npt.NDArray[np.int64]


@dataclass
class Shares:
    """Per peer: ``d`` the proven bound on d_i and ``met`` the best share of a group met (a lower bound
    on d_i); ``expansions`` the nodes expanded in all searches, ``open_left`` the nodes they left open."""

    d: F
    met: F
    expansions: int
    open_left: int
    slope: F | None = None
    """The gradient in u of sum u + sum d (``shares(with_slope=True)``)."""


@dataclass(order=True)
class Node:
    key: tuple[float, int]
    members: tuple[int, ...] = field(compare=False)
    val: float = field(compare=False)
    cand: Ix = field(compare=False)
    w_p: F = field(compare=False)
    spoken: np.uint64 = field(compare=False)
    dcount: dict[int, int] = field(compare=False)
    origin: tuple[Kids, int] | None = field(compare=False, default=None)
    """The expansion this node is a child of (None at the root): where its bound came from."""

    @property
    def bound(self) -> float:
        return -self.key[0]


class Pricing:
    """The u-dependent tables of the node bound: ``fm`` (fits, 0 where incompatible) and ``half[r]``."""

    def __init__(self, pp: PeerProblem, u: F) -> None:
        self.pp, self.u = pp, u
        n = len(pp.compat)
        self.fm = np.where(pp.compat, pp.fit, 0).astype(np.float32)  # integers: exact; sums with u in float64
        self.half = np.zeros((pp.size_max, n))
        self.half[1] = -u
        self.picks: dict[int, Ix] = {}
        for r in range(2, pp.size_max):
            self.half[r], self.picks[r] = partners(pp, u, r)
        self.limit = pp.dept_limit if pp.dept_limit is not None else pp.size_max
        self.pairs, self.same = _pair_tables(pp)

    def local_half(self, cols: Ix, pair_ok: npt.NDArray[np.bool_], sub: npt.NDArray[np.float32], r: int) -> F:
        """``half_r`` with each j's partners l taken among ``cols`` where ``pair_ok`` (a superset of
        every Q below the node): at most the global one, still a bound."""
        if r == 1:
            return -self.u[cols]
        k = r - 1
        if len(cols) <= k:
            return np.full(len(cols), -1e9)
        vals = np.where(pair_ok, sub - self.u[cols][None, :] / k, -1e9)
        top = -np.partition(-vals, k - 1, axis=1)[:, :k]
        return np.asarray((top.sum(axis=1) - self.u[cols]) / 2)

    def share_bounds(self, p: int, val: F, terms: F, allowed: npt.NDArray[np.bool_], cols: Ix,
                     local: Local | None = None) -> F:  # fmt: skip
        """Per row, a node with |P| = p, red(P) = ``val``, candidates ``cols[allowed]`` and w(j, P) =
        ``terms``: the largest over r of (val + the r largest of terms + half_r) / (p + r)."""
        pp = self.pp
        out = np.full(len(val), -np.inf)
        for r in range(max(1, pp.size_min - p), pp.size_max - p + 1):
            if r > terms.shape[1]:
                break
            half = self.half[r][cols] if local is None else self.local_half(cols, *local, r)
            t = np.where(allowed, terms + half[None, :], -np.inf)
            top = -np.partition(-t, r - 1, axis=1)[:, :r]
            out = np.maximum(out, (val + top.sum(axis=1)) / (p + r))
        return out

    def root(self, i: int, order: Ix) -> Node:
        """The node {i} with every peer allowed beside i as candidates, strongest first (``order``)."""
        pp = self.pp
        cand = order[self.allowed_with(i, order, pp.lang[i], {int(pp.dept[i]): 1})]
        return Node((0.0, 0), (i,), -float(self.u[i]), cand, self.fm[i, cand].astype(np.float64), pp.lang[i],
                     {int(pp.dept[i]): 1})  # fmt: skip

    def allowed_with(self, j: int, cand: Ix, spoken: np.uint64, dcount: dict[int, int]) -> npt.NDArray[np.bool_]:
        pp = self.pp
        ok = pp.compat[j, cand] & ((pp.lang[cand] & spoken) != 0)
        if pp.dept_limit is not None:
            full = [d for d, c in dcount.items() if c >= self.limit]
            ok &= ~np.isin(pp.dept[cand], full)
        return np.asarray(ok, dtype=bool)

    def children(self, node: Node, floor: float, live: npt.NDArray[np.bool_]) -> tuple[Kids | None, F]:
        """Every child of ``node`` (P + cand[k], candidates after k), bounded (``Kids``, None at full
        size), and each child's own group share (``-inf`` below size_min)."""
        pp, c = self.pp, node.cand
        p = len(node.members) + 1
        vals = node.val + node.w_p - self.u[c]
        own = vals / p if p >= pp.size_min else np.full(len(c), -np.inf)
        if p == pp.size_max or len(c) < 2:
            return None, own
        pair_ok = self.pairs[np.ix_(c, c)] & live[c][None, :] & live[c][:, None]
        allowed = np.triu(pair_ok, 1)
        if pp.dept_limit is not None:
            counts = np.array([node.dcount.get(int(x), 0) for x in pp.dept[c]])
            allowed &= ~(self.same[np.ix_(c, c)] & (counts + 1 >= self.limit)[None, :])
        sub = self.fm[np.ix_(c, c)]
        terms = node.w_p[None, :] + sub
        local = (pair_ok, sub) if len(c) <= LOCAL_HALF else None
        mine = self.share_bounds(p, vals, terms, allowed, c, local)
        return Kids(node, vals, allowed, terms, np.minimum(mine, node.bound), local, mine), own

    def row_slope(self, members: tuple[int, ...], val: float, terms: F, allowed: npt.NDArray[np.bool_],
                  cols: Ix, local: Local | None, slope: F) -> None:  # fmt: skip
        """Adds to ``slope`` the gradient in u of one node's bound (``share_bounds`` for one row): each
        member of P and each chosen j less its weight in the bound, each of j's chosen partners less
        its u's share (the formula of the module's docstring, at its best r and its r largest)."""
        pp, p = self.pp, len(members)
        best, pick = -np.inf, (0, np.zeros(0, dtype=np.int64))
        for r in range(max(1, pp.size_min - p), pp.size_max - p + 1):
            half = self.half[r][cols] if local is None else self.local_half(cols, *local, r)
            t = np.where(allowed, terms + half, -np.inf)
            if np.count_nonzero(t > -np.inf) < r:
                break
            q = np.argpartition(-t, r - 1)[:r]
            if (val + t[q].sum()) / (p + r) > best:
                best, pick = (val + t[q].sum()) / (p + r), (r, q)
        r, q = pick
        if not r:
            return
        weight = 1 / (p + r)
        slope[list(members)] -= weight
        np.subtract.at(slope, cols[q], weight if r == 1 else weight / 2)
        if r > 1:
            np.subtract.at(slope, self._partners_of(cols, q, r, local).ravel(), weight / (2 * (r - 1)))

    def _partners_of(self, cols: Ix, q: Ix, r: int, local: Local | None) -> Ix:
        """The r - 1 partners each chosen j of ``q`` took in its half_r."""
        if local is None:
            return self.picks[r][cols[q]]
        pair_ok, sub = local
        vals = np.where(pair_ok[q], sub[q] - self.u[cols][None, :] / (r - 1), -1e9)
        return cols[np.argpartition(-vals, r - 2, axis=1)[:, : r - 1]]

    def slope_of(self, where: Node | Kids, kid: int, slope: F) -> None:
        """Adds the gradient of an open entry's bound (child ``kid`` of an expansion, or a root node): the
        row that carries it, its own or, where an ancestor's was smaller, that ancestor's."""
        while isinstance(where, Kids) and where.own[kid] > where.parent.bound:
            where, kid = where.parent, 0
            if where.origin is not None:
                where, kid = where.origin
        if isinstance(where, Kids):
            node = where.parent
            members = (*node.members, int(node.cand[kid]))
            self.row_slope(members, float(where.vals[kid]), where.terms[kid], where.allowed[kid], node.cand,
                           where.local, slope)  # fmt: skip
        else:
            whole = np.ones(len(where.cand), dtype=bool)
            self.row_slope(where.members, where.val, where.w_p, whole, where.cand, None, slope)

    def child(self, kids: Kids, k: int) -> Node:
        """The k-th child of an expansion, built when it is popped (most never are)."""
        node, pp = kids.parent, self.pp
        j = int(node.cand[k])
        dcount = dict(node.dcount)
        dcount[int(pp.dept[j])] = dcount.get(int(pp.dept[j]), 0) + 1
        spoken = node.spoken & pp.lang[j]
        keep = kids.allowed[k]
        cand, w_p = node.cand[keep], kids.terms[k, keep]
        speaks = (pp.lang[cand] & spoken) != 0  # the pairwise table let through a language not all speak
        return Node((-float(kids.bounds[k]), 0), (*node.members, j), float(kids.vals[k]), cand[speaks],
                     w_p[speaks], spoken, dcount, (kids, k))  # fmt: skip


@dataclass
class Kids:
    """One expansion: its children's red(P), candidates (rows of ``allowed``), w(., P) and bounds."""

    parent: Node
    vals: F
    allowed: npt.NDArray[np.bool_]
    terms: F
    bounds: F
    local: Local | None
    own: F
    """The children's bounds before the parent's is taken into account (``bounds`` is the smaller)."""


def search_share(pr: Pricing, i: int, met: Met, ceiling: F, budget: int) -> tuple[float, int, int, F | None]:
    """A proven bound on d_i: best first, at most ``budget`` expansions; ``met`` is raised for every
    member of every group met. ``ceiling``: proven bounds so far (a peer at or below i's best share met
    leaves the candidates). Returns the bound, the expansions, the nodes left open and, when the largest
    open bound is above 0 and what was met, its gradient in u (None otherwise)."""
    pp = pr.pp
    strength = pr.half[pp.size_max - 1]
    order = np.argsort(-(pr.fm[i] + strength), kind="stable").astype(np.int64)
    root = pr.root(i, order)
    whole = np.ones((1, len(root.cand)), dtype=bool)
    first = pr.share_bounds(1, np.array([root.val]), root.w_p[None, :], whole, root.cand)
    heap: list[tuple[float, int, Kids | Node, int]] = [(-float(first[0]), 0, root, 0)]
    counter, done = itertools.count(1), 0
    while heap and done < budget and -heap[0][0] > met.floor(i):
        key, _, where, k = heapq.heappop(heap)
        node = where if isinstance(where, Node) else pr.child(where, k)
        node.key = (key, 0)
        done += 1
        kids, own = pr.children(node, met.floor(i), ceiling > met.floor(i))
        met.meet(node, own)
        if kids is not None:
            for kid in np.flatnonzero(kids.bounds > met.floor(i)):
                heapq.heappush(heap, (-float(kids.bounds[kid]), next(counter), kids, int(kid)))
    top = -heap[0][0] if heap else -np.inf
    slope = None
    if top > met.floor(i):
        slope = np.zeros(len(pp.compat))
        pr.slope_of(heap[0][2], heap[0][3], slope)
    return max(met.floor(i), top), done, len(heap), slope


class Met:
    """Each peer's best share of a group met (a lower bound on d_i) and that group."""

    def __init__(self, n: int) -> None:
        self.share = np.zeros(n)
        self.group: list[tuple[int, ...]] = [()] * n

    def floor(self, i: int) -> float:
        return max(0.0, float(self.share[i]))

    def meet(self, node: Node, own: F) -> None:
        """Each child of ``node`` that is a group (its share not -inf) raises its members' share."""
        if not len(own) or own.max() == -np.inf:
            return
        for k in np.flatnonzero(own > self.share[node.cand]):
            self.share[node.cand[k]], self.group[node.cand[k]] = own[k], (*node.members, int(node.cand[k]))
        top = int(np.argmax(own))
        for m in node.members:
            if own[top] > self.share[m]:
                self.share[m], self.group[m] = own[top], (*node.members, int(node.cand[top]))


def shares(pp: PeerProblem, u: F, budget: int, with_slope: bool = False) -> Shares:
    """Proven d_i for every peer at ``u`` (``search_share``, ``budget`` expansions each), the weakest
    peers first (their small bounds then take them out of the others' candidates); ``with_slope``: and
    the gradient in u of sum u + sum d_i (each d_i's witness: the group met or the open bound)."""
    n = len(pp.compat)
    pr = Pricing(pp, u)
    met, ceiling = Met(n), np.full(n, np.inf)
    opened: dict[int, F] = {}
    total = left = 0
    for i in np.argsort(pr.half[pp.size_max - 1], kind="stable"):
        ceiling[i], done, open_now, slope = search_share(pr, int(i), met, ceiling, budget)
        total += done
        left += open_now
        if slope is not None and with_slope:
            opened[int(i)] = slope
    d = np.maximum(ceiling, met.share)
    gradient = np.ones(n)
    for i in np.flatnonzero(d > 0):
        if int(i) in opened and ceiling[i] > met.share[i]:
            gradient += opened[int(i)]
        elif met.group[i]:
            gradient[list(met.group[i])] -= 1 / len(met.group[i])
    return Shares(d, met.share, total, left, gradient if with_slope else None)


def _pair_tables(pp: PeerProblem, chunk: int = 1_000) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Pairs that may share a group (compatible, a language in common: a superset of those in a group
    with P, so still a bound) and pairs of one department."""
    n = len(pp.compat)
    pairs, same = np.zeros((n, n), dtype=bool), np.zeros((n, n), dtype=bool)
    for a in range(0, n, chunk):
        rows = slice(a, min(n, a + chunk))
        pairs[rows] = pp.compat[rows] & ((pp.lang[rows][:, None] & pp.lang[None, :]) != 0)
        same[rows] = pp.dept[rows][:, None] == pp.dept[None, :]
    return pairs, same
