"""A proven peer fit bound at the set-partitioning LP's optimum: column generation whose last pricing pass
is exact (``bench/peer_cg_search.py``).

    python -m bench.peer_cg --size 500 --seconds 1800

The quantity is ``bench/peer_bound.py``'s: the most fit of any grouping of exactly the run's placed peers
into valid groups. Why the bound holds (this is ``bench/peer_bound.py``'s inequality with each group's
gain charged once, to its first member in a fixed order ``pos``, instead of shared among its members).
Take any numbers ``u_i``; for a valid group S let red(S) = w(S) - u(S) and first(S) its member lowest
in ``pos``. In any grouping P of the placed peers each peer is in exactly one group, so each peer is the
first member of at most one group of P, and

    fit(P) = sum_S w(S) = sum_i u_i + sum_{S in P} red(S) <= sum_i u_i + sum_i f_i,
    f_i = max(0, max over valid S with first(S) = i of red(S)).

Any upper bound on each f_i keeps it a proof; ``price_root`` gives one per peer by a complete search
(or, when its node budget is spent, by crediting the bounds of the branches it left). (It is the LP
dual: u + f is a feasible dual of the set-partitioning LP, u(S) + f(S) >= w(S) for every valid S.)

The u are the duals of the restricted set-partitioning LP (HiGHS, one thread) over the groups listed so
far. First rounds price with a cheap greedy (each peer's group grown from its best partners, then
improved by swaps; no proof); then each round prices exactly, every group found that gains is a new
column, and each exact round's ``sum u + sum f_i`` is a proof. When an exact round finds no group that
gains, the bound is the LP optimum (within EPS a peer). The least proof of all rounds is reported.
"""

from __future__ import annotations

import argparse
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import highspy
import numpy as np
import numpy.typing as npt

from bench.highs import quiet_highs
from bench.peer_bound import PeerProblem, beside_row, problem_of, run_groupings
from bench.peer_cg_search import EPS, Tables, price_root
from services.matching.domain import MatchingInput, MatchingResult

F = npt.NDArray[np.float64]
Group = tuple[int, ...]


class Master:
    """The restricted set-partitioning LP (each placed peer in exactly one listed group, most fit),
    columns added between solves and the simplex warm-started from the last basis."""

    def __init__(self, pp: PeerProblem) -> None:
        self.pp = pp
        self.h = quiet_highs()
        # primal simplex: added columns keep the last basis primal feasible (at 500 peers, 18,000 columns
        # added to 24,000 re-solved in 11 s of CPU where the default dual simplex took 51 s)
        self.h.setOptionValue("simplex_strategy", 4)
        self.h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        n = len(pp.compat)
        empty_i, empty_f = np.zeros(0, dtype=np.int32), np.zeros(0)
        for _ in range(n):
            self.h.addRow(1.0, 1.0, 0, empty_i, empty_f)
        self.listed: set[Group] = set()

    def add(self, groups: Sequence[Sequence[int]]) -> int:
        """Lists the groups not listed yet; returns how many."""
        new = [g for g in {tuple(sorted(int(x) for x in g)) for g in groups} if g not in self.listed]
        if not new:
            return 0
        new.sort()
        self.listed.update(new)
        costs = np.array([self.pp.value(g) for g in new], dtype=np.float64)
        starts = np.cumsum([0, *(len(g) for g in new[:-1])]).astype(np.int32)
        rows = np.concatenate([np.array(g, dtype=np.int32) for g in new])
        k = len(new)
        self.h.addCols(
            k, costs, np.zeros(k), np.full(k, highspy.kHighsInf), len(rows), starts, rows, np.ones(len(rows))
        )
        return k

    def solve(self) -> tuple[float, F]:
        """The LP's optimum and its rows' duals (they sum to it)."""
        self.h.run()
        if self.h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"restricted set-partitioning LP: {self.h.getModelStatus()}")
        value = float(self.h.getInfo().objective_function_value)
        u = np.array(self.h.getSolution().row_dual, dtype=np.float64)
        if abs(u.sum() - value) > 1e-6 * max(1.0, abs(value)):
            raise RuntimeError(f"duals sum to {u.sum()}, the LP is {value}: a sign convention changed")
        return value, u


def greedy_groups(pp: PeerProblem, ok: npt.NDArray[np.bool_], fm: F, u: F, i: int, seeds: int = 6) -> list[Group]:
    """Groups holding peer i that gain at ``u`` (red > EPS), found without proof: from each of i's
    ``seeds`` best partners, members added best first up to each size, each size improved by swaps."""
    cand = np.flatnonzero(ok[i])
    out: list[Group] = []
    for j in cand[np.argsort(-(fm[i, cand] - u[cand]), kind="stable")[:seeds]]:
        members = [i, int(j)]
        while len(members) < pp.size_max:
            gain = _gains(pp, ok, fm, u, members)
            if gain.max() == -np.inf:
                break
            members.append(int(np.argmax(gain)))
            if len(members) >= pp.size_min:
                group = _improved(pp, ok, fm, u, i, members)
                if pp.value(group) - u[list(group)].sum() > EPS:
                    out.append(tuple(sorted(group)))
    return out


def _gains(pp: PeerProblem, ok: npt.NDArray[np.bool_], fm: F, u: F, members: list[int]) -> F:
    """Each peer's red gained by joining ``members`` (-inf where a rule forbids it)."""
    allowed = ok[members].all(axis=0) & ((np.bitwise_and.reduce(pp.lang[members]) & pp.lang) != 0)
    allowed[members] = False
    if pp.dept_limit is not None:
        counts = np.bincount(pp.dept[members], minlength=int(pp.dept.max()) + 1)
        allowed &= counts[pp.dept] < pp.dept_limit
    return np.where(allowed, fm[members].sum(axis=0) - u, -np.inf)


def _improved(pp: PeerProblem, ok: npt.NDArray[np.bool_], fm: F, u: F, i: int, members: list[int]) -> list[int]:
    """``members`` after the best swaps of a member other than i for an outsider, while one gains."""
    group = list(members)
    while True:
        best, swap = EPS, (0, 0)
        for m in group:
            if m == i:
                continue
            rest = [x for x in group if x != m]
            gain = _gains(pp, ok, fm, u, rest)
            gain[group] = -np.inf
            k = int(np.argmax(gain))
            delta = float(gain[k] - (fm[m, rest].sum() - u[m]))
            if delta > best:
                best, swap = delta, (m, k)
        if best <= EPS:
            return group
        group[group.index(swap[0])] = swap[1]


@dataclass
class Round:
    """One round: the LP, the proof (exact rounds only), columns added, nodes searched, seconds so far."""

    exact: bool
    lp: float
    proof: float | None
    added: int
    nodes: int
    seconds: float
    complete: int = 0
    capped: int = 0


@dataclass
class CgBound:
    """``value``: the least proof (inf if no exact round ran); ``lp`` the last restricted LP (not a bound
    by itself); ``rounds`` each round; ``cpu`` the process's CPU seconds; ``columns`` listed at the end."""

    value: float
    lp: float
    wall: float
    cpu: float
    columns: int
    rounds: list[Round] = field(default_factory=list)
    duals: F | None = None
    """The last restricted LP's duals."""

    @property
    def proven_lp(self) -> bool:
        """The last exact round found no group that gains: the bound is the LP optimum."""
        return bool(self.rounds) and self.rounds[-1].exact and self.rounds[-1].added == 0


def exact_round(t: Tables, u: F, budget: int) -> tuple[float, list[Group], int, int, int]:
    """Every peer's search at ``u``: the proof sum u + sum f_i, the groups that gain, the nodes, and how
    many searches ended within their budget and how many were capped (their bound credited)."""
    most = np.zeros(len(t.ok))
    groups: list[Group] = []
    nodes = complete = 0
    for i in np.argsort(t.pos):
        found = price_root(t, u, int(i), budget)
        most[i] = found.most
        groups += [g for _, g in found.groups]
        nodes += found.nodes
        complete += found.complete
    return float(u.sum() + most.sum()), groups, nodes, complete, len(t.ok) - complete


def cg_bound(
    pp: PeerProblem,
    groupings: Sequence[Sequence[Sequence[int]]],
    seconds: float = 1_800.0,
    budget: int = 5_000_000,
    greedy_until: float = 0.02,
    log: bool = False,
) -> CgBound:
    """The module's bound for ``pp``, columns seeded with ``groupings`` (valid groupings of every row).
    Greedy rounds while they add more than ``greedy_until`` x the peers in columns (and for at most half of
    ``seconds``), then exact rounds
    (``budget`` nodes a peer) until one finds no group that gains or ``seconds`` have passed (checked
    between rounds; the bound is then the least proof of the exact rounds, still a proof)."""
    wall, cpu = time.perf_counter(), time.process_time()
    n = len(pp.compat)
    master = Master(pp)
    for grouping in groupings:
        master.add(grouping)
    t = Tables.of(pp)
    ok = t.ok.astype(bool)
    fm = t.w.astype(np.float64)
    out = CgBound(np.inf, 0.0, 0.0, 0.0, 0)
    exact = False
    while True:
        lp, u = master.solve()
        if exact:
            proof, found, nodes, complete, capped = exact_round(t, u, budget)
            out.value = min(out.value, proof)
            done = Round(True, lp, proof, master.add(found), nodes, time.perf_counter() - wall, complete, capped)
        else:
            found = [g for i in range(n) for g in greedy_groups(pp, ok, fm, u, i)]
            done = Round(False, lp, None, master.add(found), 0, time.perf_counter() - wall)
            exact = done.added <= greedy_until * n or done.seconds > seconds / 2
        out.rounds.append(done)
        out.lp, out.duals = lp, u
        if log:
            print(_round_text(len(out.rounds), done, out.value), flush=True)
        if (done.exact and done.added == 0) or (out.value < np.inf and done.seconds > seconds):
            break
    out.wall, out.cpu, out.columns = time.perf_counter() - wall, time.process_time() - cpu, len(master.listed)
    return out


def _round_text(k: int, r: Round, best: float) -> str:
    kind = "exact" if r.exact else "greedy"
    proof = "" if r.proof is None else f" proof {r.proof:,.1f} (least {best:,.1f})"
    searches = f", {r.complete} searches complete, {r.capped} capped" if r.exact else ""
    return (
        f"round {k} {kind}: lp {r.lp:,.1f}{proof}, {r.added} columns added, {r.nodes:,} nodes{searches} "
        f"({r.seconds:.0f} s)"
    )


def run_bound(
    inp: MatchingInput, result: MatchingResult, seconds: float, budget: int = 5_000_000, log: bool = False
) -> CgBound:
    """The bound for the run's placed set, columns seeded with the run's groups."""
    placed = {m.participant_id for g in result.groups for m in g.members}
    pp = problem_of(inp, placed)
    return cg_bound(pp, [run_groupings(inp, result)], seconds=seconds, budget=budget, log=log)


def cg_line(inp: MatchingInput, result: MatchingResult, old: float | None, seconds: float) -> str:
    """This module's bound beside the row's, and the gap to the tighter: a line under a peer row."""
    found = run_bound(inp, result, seconds)
    row, gap = beside_row(old, found.value, result.stats.total_fit)
    last = found.rounds[-1]
    return (
        f"  peer fit bound: row's {row}, set-partitioning LP by exact pricing {found.value:,.1f} "
        f"({'the LP optimum' if found.proven_lp else 'proven, LP not closed'}; {len(found.rounds)} rounds, "
        f"{found.columns:,} columns, last round {last.complete} searches complete / {last.capped} capped, "
        f"{found.wall:.0f} s wall, {found.cpu:.0f} s CPU); gap to the tighter {gap}"
    )


def main() -> None:
    from bench.fit_bounds import peer_fit_bound
    from bench.matching_pools import peers
    from services.matching.domain import levels, match

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=500, help="the benchmark's peer pool (500, 2000, 10000)")
    parser.add_argument("--seconds", type=float, default=1_800.0, help="no exact round starts after this")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--budget", type=int, default=5_000_000, help="nodes a peer's exact search may take")
    parser.add_argument(
        "--no-clock", action="store_true", help="the run without its wall-clock deadline (the quiet machine's groups)"
    )
    parser.add_argument(
        "--save", type=Path, default=None, help="pickle the problem, the run's groups and the last duals here"
    )
    args = parser.parse_args()
    if args.no_clock:
        levels.WALL_DEADLINE_SHARE = 1_000.0
    inp = peers(args.size)
    started = time.perf_counter()
    result = match(inp, args.seed)
    print(
        f"run: fit {result.stats.total_fit:,.0f}, placed {result.stats.placed_count:,} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    found = run_bound(inp, result, args.seconds, args.budget, log=True)
    if args.save:
        placed = {m.participant_id for g in result.groups for m in g.members}
        args.save.write_bytes(pickle.dumps((problem_of(inp, placed), run_groupings(inp, result), found.duals)))
    b_matching = peer_fit_bound(inp, result)
    row, gap = beside_row(b_matching, found.value, result.stats.total_fit)
    print(
        f"bound {found.value:,.1f} ({'the LP optimum' if found.proven_lp else 'proven, LP not closed'}), "
        f"last LP {found.lp:,.1f}, {found.columns:,} columns, {found.wall:.0f} s wall, {found.cpu:.0f} s CPU; "
        f"run's fit {result.stats.total_fit:,.0f}, b-matching {row}, gap {gap}"
    )


if __name__ == "__main__":
    main()
