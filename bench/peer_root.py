"""The root bound on every d_i at once, and duals u chosen to lower sum u + sum max(0, root_i(u)).

root_i(u) is the node bound of ``bench/peer_share.py`` at the node {i}: for r added members,
(-u_i + the r largest over j allowed beside i of (w_ij + half_r[j])) / (1 + r), half_r[j] = half of
(j's r - 1 largest (w_jl - u_l / (r - 1)) over its compatible l, less u_j). It bounds d_i for *any* u
(that module's proof), so sum u + sum max(0, root_i(u)) is a proof at every u, and the descent below
only chooses which u to prove at: a wrong step costs tightness, never validity.

It is a maximum of functions linear in u, so convex; its subgradient at u takes, for each peer with
root_i > 0 at its best r, -1 / (1 + r) on u_i, -1 / (2 (1 + r)) on each chosen j (-1 / (1 + r) for
r = 1), and -1 / (2 (r - 1) (1 + r)) on each of those j's chosen partners l; plus 1 for every u_l
(the sum u). (Where j has no partners for r, half_r[j] is -1e9, so j is never chosen.)
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from bench.peer_bound import PeerProblem

F = npt.NDArray[np.float64]

CHUNK = 1_000


def partners(pp: PeerProblem, u: F, r: int) -> tuple[F, npt.NDArray[np.int64]]:
    """half_r and each peer's r - 1 chosen partners (rows)."""
    n, k = len(pp.compat), r - 1
    half = np.zeros(n)
    picks = np.zeros((n, max(k, 1)), dtype=np.int64)
    for a in range(0, n, CHUNK):
        rows = slice(a, min(n, a + CHUNK))
        vals = np.where(pp.compat[rows], pp.fit[rows] - (u / k)[None, :], -1e9)
        idx = np.argpartition(-vals, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(vals, idx, axis=1)
        half[rows] = (top.sum(axis=1) - u[rows]) / 2
        picks[rows] = idx
    return half, picks


def _allowed(pp: PeerProblem, rows: slice) -> npt.NDArray[np.bool_]:
    """Who may share a group with each of ``rows`` (compatible, a language in common)."""
    ok = pp.compat[rows] & ((pp.lang[rows][:, None] & pp.lang[None, :]) != 0)
    return np.asarray(ok)


def root_bounds(pp: PeerProblem, u: F) -> tuple[F, F]:
    """root_i(u) for every peer, and the subgradient of sum u + sum max(0, root_i(u))."""
    n = len(pp.compat)
    best = np.full(n, -np.inf)
    grad = np.ones(n)
    parts: dict[int, npt.NDArray[np.int64]] = {}
    r_lo, r_hi = max(1, pp.size_min - 1), pp.size_max - 1
    best_r = np.zeros(n, dtype=np.int64)
    best_q: list[npt.NDArray[np.int64]] = [np.zeros(0, dtype=np.int64)] * n
    for r in range(r_lo, r_hi + 1):
        if r == 1:
            half, parts[r] = -u.copy(), np.zeros((n, 0), dtype=np.int64)
        else:
            half, parts[r] = partners(pp, u, r)
        for a in range(0, n, CHUNK):
            rows = slice(a, min(n, a + CHUNK))
            t = np.where(_allowed(pp, rows), pp.fit[rows] + half[None, :], -np.inf)
            idx = np.argpartition(-t, r - 1, axis=1)[:, :r]
            value = (np.take_along_axis(t, idx, axis=1).sum(axis=1) - u[rows]) / (1 + r)
            better = value > best[rows]
            for off in np.flatnonzero(better):
                best_q[a + off] = idx[off]
            best[rows] = np.where(better, value, best[rows])
            best_r[rows] = np.where(better, r, best_r[rows])
    for i in np.flatnonzero(best > 0):
        r = int(best_r[i])
        q = best_q[i]
        grad[i] -= 1 / (1 + r)
        np.subtract.at(grad, q, 1 / (1 + r) if r == 1 else 1 / (2 * (1 + r)))
        if r > 1:
            np.subtract.at(grad, parts[r][q].ravel(), 1 / (2 * (r - 1) * (1 + r)))
    return best, grad


def descend(pp: PeerProblem, u: F, steps: int = 40, first: float = 4.0) -> tuple[F, float, list[float]]:
    """Subgradient steps on sum u + sum max(0, root_i(u)) from ``u``: the best u met and its value."""
    best_u, best_v, trace = u.copy(), np.inf, []
    step = first
    for _ in range(steps):
        root, grad = root_bounds(pp, u)
        value = float(u.sum() + np.maximum(root, 0).sum())
        trace.append(value)
        if value < best_v:
            best_u, best_v = u.copy(), value
        else:
            step /= 2
        u = u - step * grad
    return best_u, best_v, trace
