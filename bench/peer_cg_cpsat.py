"""One peer's pricing step as a CP-SAT model, kept to measure why ``bench/peer_cg.py`` prices by a
search in C instead (``bench/peer_cg_search.py``), and as an independent cross-check of that search.

    python -m bench.peer_cg_cpsat SAVED --peer 0 --group-size 6 --seconds 60

(SAVED: the pickle ``python -m bench.peer_cg --save SAVED`` writes: the problem, the run's groups and the
last LP's duals.) The model, for root i and group size s at duals u: a boolean x_j for every peer j
compatible with i and speaking a language with it, sum x = s - 1; x_j + x_k <= 1 for every such pair that
may not meet; a boolean y_jk <= x_j, x_k for every pair with fit (maximising, y is x_j x_k); sum_k y_jk
<= (s - 2) x_j (a member has s - 2 partners besides i); at most the department limit of each department
(i's own counted); one language all members speak (a boolean per language of i). Objective w(S) - u(S)
with u rounded down to thousandths (so the proven bound stays an upper bound at u). One worker.
"""

from __future__ import annotations

import argparse
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from ortools.sat.python import cp_model

from bench.peer_bound import PeerProblem

SCALE = 1_000


@dataclass(frozen=True)
class Priced:
    """The model's answer: status, best red found and the proven upper bound on red (at u), seconds."""

    status: str
    red: float
    bound: float
    seconds: float
    candidates: int
    pairs: int


def price(pp: PeerProblem, u: npt.NDArray[np.float64], i: int, size: int, seconds: float) -> Priced:
    """max w(S) - u(S) over valid groups S of ``size`` members holding ``i``, by CP-SAT."""
    ok = pp.compat & ((pp.lang[:, None] & pp.lang[None, :]) != 0)
    cand = [int(j) for j in np.flatnonzero(ok[i])]
    down = np.floor(u * SCALE).astype(np.int64)
    m = cp_model.CpModel()
    x = {j: m.new_bool_var(f"x{j}") for j in cand}
    m.add(sum(x.values()) == size - 1)
    terms = [(int(pp.fit[i, j]) * SCALE - int(down[j]), x[j]) for j in cand]
    partners: dict[int, list[cp_model.IntVar]] = {j: [] for j in cand}
    for a, j in enumerate(cand):
        for k in cand[a + 1 :]:
            if not ok[j, k]:
                m.add_bool_or([x[j].negated(), x[k].negated()])
            elif pp.fit[j, k] > 0:
                y = m.new_bool_var("")
                m.add_implication(y, x[j])
                m.add_implication(y, x[k])
                terms.append((int(pp.fit[j, k]) * SCALE, y))
                partners[j].append(y)
                partners[k].append(y)
    for j in cand:
        if partners[j]:
            m.add(sum(partners[j]) <= (size - 2) * x[j])
    _departments(m, pp, i, cand, x)
    _language(m, pp, i, cand, x)
    m.maximize(sum(c * v for c, v in terms) - int(down[i]))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = seconds
    started = time.perf_counter()
    status = solver.solve(m)
    spent = time.perf_counter() - started
    found = solver.objective_value / SCALE if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else -np.inf
    bound = -np.inf if status == cp_model.INFEASIBLE else solver.best_objective_bound / SCALE
    pairs = len(terms) - len(cand)
    return Priced(solver.status_name(status), found, bound, spent, len(cand), pairs)


def _departments(m: cp_model.CpModel, pp: PeerProblem, i: int, cand: list[int], x: dict[int, cp_model.IntVar]) -> None:
    if pp.dept_limit is None:
        return
    for d in {int(pp.dept[j]) for j in cand}:
        members = [x[j] for j in cand if pp.dept[j] == d]
        room = pp.dept_limit - int(pp.dept[i] == d)
        if len(members) > room:
            m.add(sum(members) <= room)


def _language(m: cp_model.CpModel, pp: PeerProblem, i: int, cand: list[int], x: dict[int, cp_model.IntVar]) -> None:
    """One of i's languages chosen; every member speaks it (left out when i and every candidate speak one
    language in common, as on the benchmark's pools)."""
    common = int(pp.lang[i])
    for j in cand:
        common &= int(pp.lang[j])
    if common:
        return
    bits = [b for b in range(64) if int(pp.lang[i]) >> b & 1]
    chosen = {b: m.new_bool_var(f"l{b}") for b in bits}
    m.add_exactly_one(chosen.values())
    for j in cand:
        m.add_bool_or([x[j].negated(), *(chosen[b] for b in bits if int(pp.lang[j]) >> b & 1)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("saved", type=Path)
    parser.add_argument("--peer", type=int, default=0)
    parser.add_argument("--group-size", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    pp, _, u = pickle.loads(args.saved.read_bytes())
    found = price(pp, u, args.peer, args.group_size, args.seconds)
    print(
        f"peer {args.peer}, groups of {args.group_size}: {found.candidates} candidates, {found.pairs:,} pairs with "
        f"fit; {found.status}, best red {found.red:.3f}, proven bound {found.bound:.3f}, {found.seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
