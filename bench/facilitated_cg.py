"""A fit bound for facilitated groups by column generation: the set-partitioning LP over single groups.

    python -m bench.facilitated_cg [--only one-dept] [--size 5000] [--seconds 900] [--seed 2026]

The group fit LP (``bench.group_fit_lp``) lets a mentor's people spread fractionally over its groups, so
where one department holds most people (the *one-dept* rows) it is loose: at 1,000 it says 4,178 where
the exact MILP proves 3,890. This bound keeps each group whole. For a run's placed set P and max load
ratio r (mentor ``k`` may lead ``allowed[k]`` groups; ``bench.facilitated_fit_exact.build``), a column is
one group of one mentor, valid for sizes and the department bound:

    max  sum_S fit(S) lam_S   s.t.  sum_{S contains i} lam_S = 1 (i in P),  sum_{S of k} lam_S <= allowed[k]

Its Lagrangian, coverage priced at ``pi``, bounds it (and every grouping) for any ``pi``:

    L(pi) = sum_i pi_i + sum_k allowed[k] * max(0, best_k(pi)),

``best_k`` the most a single group of ``k`` is worth at fits less ``pi``. That pricing is exact and
cheap: keep, per department, the ``room(k, d)`` best of ``k``'s eligible people (the department bound,
less one for ``k``'s own department); any set of those respects the bound, so the best group of each size
is the prefix of the kept ones in order of value, and ``best_k`` is the best prefix of a size within the
group's minimum and maximum. Pairs kept apart are left out of the pricing, and so is fair load: both
only loosen the bound (a relaxation of every rule still bounds what the rules allow).

Subgradient steps from each person's best fit, then column generation (HiGHS, priced halfway between
the best prices and the master's duals) drive ``L`` down; every ``L`` is a proven bound whatever the
prices, so the bound printed (the least ``L``) does not rest on the LP solver's answer, only on the
pricing being exact. When the master's own prices price no group in, the master is the LP's optimum and
``L`` at those prices equals its value. The run's own groups start the master. Prints figures; asserts
nothing.

Measured 2026-12-02 00:52-01:03 UTC (seed 2026; the test suite running beside the 5,000 row): one-dept
1,000, 82,365 eligible pairs, 3,891 in 8 s (the exact MILP's optimum is 3,890, the group fit LP said
4,178; the run's 3,879 is 0.31 % below); one-dept 5,000, 2.5 million pairs, the LP's optimum 27,299.4 in
478 s (1,049 subgradient steps, 14 master solves, 56,595 columns; the group fit LP said 29,755): the
run's 27,218 is 0.30 % below it.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from dataclasses import dataclass, field

import highspy
import numpy as np

from bench.facilitated_fit_exact import Instance, build
from bench.highs import quiet_highs
from bench.matching_pools import facilitated_family
from contracts.policy import Role
from services.matching.domain import MatchingInput, MatchingResult, match
from services.matching.domain.common import Prepared

TOLERANCE = 1e-6
"""A column enters the master when its reduced value at the master's prices is above this."""

SMOOTHING = 0.5
"""Column generation prices at this share of the best prices so far plus the rest of the master's."""

Column = tuple[int, list[int], float]
"""A group: its mentor's position, its members' placed rows, its fit."""

FloatArray = np.ndarray
IntArray = np.ndarray


@dataclass
class Arcs:
    """Eligible (placed row, mentor) pairs as arrays, sorted by (mentor, department): each (mentor,
    department) run is a segment whose ``room`` best may share a group."""

    row: IntArray
    mentor: IntArray
    fit: FloatArray
    room: IntArray
    segment: IntArray
    """The arc's (mentor, department) segment number, ascending with the arc's position."""

    @classmethod
    def of(cls, inst: Instance) -> Arcs:
        depts = {d: j for j, d in enumerate(sorted(set(inst.dept)))}
        row = np.array([r for r, _, _ in inst.arcs], dtype=np.int64)
        mentor = np.array([k for _, k, _ in inst.arcs], dtype=np.int64)
        fit = np.array([f for _, _, f in inst.arcs], dtype=np.float64)
        dept = np.array([depts[inst.dept[r]] for r in row.tolist()], dtype=np.int64)
        room = np.array([inst.room[(k, inst.dept[r])] for r, k, _ in inst.arcs], dtype=np.int64)
        order = np.lexsort((dept, mentor))
        row, mentor, fit, dept, room = row[order], mentor[order], fit[order], dept[order], room[order]
        change = np.ones(len(row), dtype=bool)
        change[1:] = (mentor[1:] != mentor[:-1]) | (dept[1:] != dept[:-1])
        return cls(row, mentor, fit, room, np.cumsum(change) - 1)

    @functools.cached_property
    def fit_of(self) -> dict[tuple[int, int], float]:
        return {(int(r), int(k)): float(f) for r, k, f in zip(self.row, self.mentor, self.fit, strict=True)}


@dataclass
class Priced:
    """Per mentor with a group of positive value at ``pi``: its best group (placed rows) and value."""

    value: dict[int, float] = field(default_factory=dict)
    members: dict[int, list[int]] = field(default_factory=dict)


def price(arcs: Arcs, pi: FloatArray, lo: int, hi: int) -> Priced:
    """Each mentor's best single group at fits less ``pi`` (exact; see the module docstring)."""
    if not len(arcs.row):
        return Priced()
    red = arcs.fit - pi[arcs.row]
    spread = float(np.abs(red).max()) + 1.0
    order = np.argsort(arcs.segment * (4.0 * spread) - red, kind="stable")  # segment, then value down
    seg = arcs.segment[order]
    start = np.searchsorted(seg, seg, side="left")
    kept = order[(np.arange(len(order)) - start) < arcs.room[order]]
    mentor, value = arcs.mentor[kept], red[kept]
    by = np.lexsort((-value, mentor))
    kept, mentor, value = kept[by], mentor[by], value[by]
    first = np.searchsorted(mentor, mentor, side="left")
    rank = np.arange(len(kept)) - first
    csum = np.cumsum(value)
    prefix = csum - np.concatenate(([0.0], csum))[first]
    size_ok = (rank >= lo - 1) & (rank <= hi - 1)
    out = Priced()
    best: dict[int, tuple[float, int]] = {}
    for j in np.flatnonzero(size_ok).tolist():
        k, v = int(mentor[j]), float(prefix[j])
        if k not in best or v > best[k][0]:
            best[k] = (v, j)
    for k, (v, j) in best.items():
        if v > 0.0:  # every positive value counts in L (a proof); TOLERANCE only decides what enters the master
            out.value[k] = v
            out.members[k] = arcs.row[kept[first[j] : j + 1]].tolist()
    return out


def lagrangian(pi: FloatArray, priced: Priced, allowed: IntArray) -> float:
    """``L(pi)``: a proven upper bound on the fit of every grouping of the placed set at the ratio."""
    return float(pi.sum()) + sum(float(allowed[k]) * v for k, v in priced.value.items())


class Master:
    """The restricted set-partitioning LP in HiGHS: coverage rows (= 1) then mentor rows (<= allowed).
    Each coverage row also has a column of its own at ``-penalty``, so the master is feasible before any
    group is in it; columns only enlarge a maximisation, so its optimum still bounds the groupings."""

    def __init__(self, placed: int, allowed: IntArray, penalty: float) -> None:
        self.placed = placed
        self.h = quiet_highs()
        self.h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        lower = np.concatenate((np.ones(placed), np.zeros(len(allowed))))
        upper = np.concatenate((np.ones(placed), allowed.astype(np.float64)))
        self.h.addRows(len(lower), lower, upper, 0, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32),
                       np.zeros(0))  # fmt: skip
        self.h.addCols(placed, np.full(placed, -penalty), np.zeros(placed), np.ones(placed), placed,
                       np.arange(placed, dtype=np.int32), np.arange(placed, dtype=np.int32),
                       np.ones(placed))  # fmt: skip
        self.seen: set[tuple[int, tuple[int, ...]]] = set()
        """The groups listed (mentor, sorted rows): none is added twice."""

    @property
    def columns(self) -> int:
        return len(self.seen)

    def add(self, groups: list[Column]) -> int:
        """Adds (mentor, placed rows, fit) columns not added before; returns how many were new."""
        starts: list[int] = []
        index: list[int] = []
        costs: list[float] = []
        for k, rows, fit in groups:
            key = (k, tuple(sorted(rows)))
            if key in self.seen:
                continue
            self.seen.add(key)
            starts.append(len(index))
            index += [*sorted(rows), self.placed + k]
            costs.append(fit)
        if costs:
            n = len(costs)
            self.h.addCols(n, np.array(costs), np.zeros(n), np.full(n, highspy.kHighsInf), len(index),
                           np.array(starts, dtype=np.int32), np.array(index, dtype=np.int32),
                           np.ones(len(index)))  # fmt: skip
        return len(costs)

    def solve(self) -> tuple[float, FloatArray, FloatArray]:
        """The LP's value and its row duals, coverage then mentor rows (HiGHS' duals of a maximisation:
        what one more unit of the row would add, so a column's reduced value is its fit less its rows')."""
        self.h.run()
        duals = np.array(self.h.getSolution().row_dual)
        return float(self.h.getInfo().objective_function_value), duals[: self.placed], duals[self.placed :]


def run_columns(prep: Prepared, inst: Instance, arcs: Arcs, result: MatchingResult) -> list[Column]:
    """The run's groups as columns: they place exactly P, so the master is feasible from the start."""
    index = {p: r for r, p in enumerate(inst.placed)}
    position = {m: k for k, m in enumerate(prep.mentor_ids)}
    fits = arcs.fit_of
    out = []
    for g in result.groups:
        mentor = next(position[m.participant_id] for m in g.members if m.role is Role.MENTOR)
        rows = [index[m.participant_id] for m in g.members if m.role is not Role.MENTOR]
        out.append((mentor, rows, sum(fits[(r, mentor)] for r in rows)))
    return out


@dataclass
class Progress:
    """Where the search stands: the best ``L`` (the proven bound) and the prices that gave it, the
    master's value (a lower end: the LP's optimum lies between), iterations and time of each phase."""

    bound: float
    pi: FloatArray
    lp: float = 0.0
    subgradient: int = 0
    generation: int = 0
    seconds: float = 0.0
    columns: int = 0
    optimal: bool = False

    def offer(self, value: float, pi: FloatArray) -> None:
        if value < self.bound:
            self.bound, self.pi = value, pi.copy()


def columns_of(arcs: Arcs, priced: Priced) -> list[Column]:
    fits = arcs.fit_of
    return [(k, rows, sum(fits[(r, k)] for r in rows)) for k, rows in priced.members.items()]


def subgradient(
    arcs: Arcs, allowed: IntArray, target: float, master: Master, out: Progress, lo: int, hi: int, seconds: float
) -> None:
    """Polyak steps towards ``target`` (a fit some grouping reaches) from each person's best fit, halving
    the step after 10 iterations without a better ``L``; every group priced joins the master."""
    pi, theta, stall, began = out.pi.copy(), 1.0, 0, time.perf_counter()
    while time.perf_counter() - began < seconds and theta > 1e-4:
        priced = price(arcs, pi, lo, hi)
        value = lagrangian(pi, priced, allowed)
        stall = 0 if value < out.bound - TOLERANCE else stall + 1
        out.offer(value, pi)
        out.subgradient += 1
        if stall >= 10:
            theta, stall = theta / 2, 0
        master.add(columns_of(arcs, priced))
        step = np.ones(len(pi))
        for k, rows in priced.members.items():
            np.subtract.at(step, rows, float(allowed[k]))
        norm = float(step @ step)
        if norm == 0.0:
            break
        pi = pi - theta * max(value - target, 1.0) / norm * step


def smoothed(
    arcs: Arcs, allowed: IntArray, master: Master, out: Progress, lo: int, hi: int, seconds: float, report: int
) -> None:
    """Column generation priced halfway between the best prices and the master's (Wentges smoothing: the
    master's own duals jump about, degenerate); when that prices nothing new, at the master's alone, and
    when that too prices nothing the master is the LP's optimum."""
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        out.lp, pi_lp, mu = master.solve()
        out.generation += 1
        new = 0
        for pi in (SMOOTHING * out.pi + (1 - SMOOTHING) * pi_lp, pi_lp):
            priced = price(arcs, pi, lo, hi)
            out.offer(lagrangian(pi, priced, allowed), pi)
            useful = [c for c in columns_of(arcs, priced) if c[2] - pi_lp[c[1]].sum() - mu[c[0]] > TOLERANCE]
            new = master.add(useful)
            if new:
                break
        if report and out.generation % report == 0:
            print(f"  iteration {out.generation}: LP {out.lp:,.2f}, bound {out.bound:,.2f}, "
                  f"columns {master.columns:,}, {time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
        if not new:  # the bound stays the best L (the last, at the master's prices, equals the LP's value)
            out.optimal = True
            return


def bound_fit(
    inst: Instance, arcs: Arcs, start: list[Column], lo: int, hi: int, seconds: float, report: int = 0
) -> Progress:
    """The set-partitioning LP's optimum (or, stopped by ``seconds``, the best ``L`` seen): a third of the
    time in subgradient steps, the rest in smoothed column generation, both feeding one master. ``start``:
    groups of a grouping of the placed set (the run's), a good first master; may be empty."""
    began = time.perf_counter()
    best = np.full(len(inst.placed), -np.inf)
    np.maximum.at(best, arcs.row, arcs.fit)
    out = Progress(bound=float(best.sum()), pi=best)
    master = Master(len(inst.placed), inst.allowed, penalty=1.0 + float(np.abs(best).sum()))
    master.add(start)
    target = sum(c[2] for c in start) if start else 0.0
    subgradient(arcs, inst.allowed, target, master, out, lo, hi, seconds / 3)
    if report:
        print(f"  subgradient: {out.subgradient} steps, bound {out.bound:,.2f}, "
              f"{time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
    smoothed(arcs, inst.allowed, master, out, lo, hi, seconds - (time.perf_counter() - began), report)
    out.seconds = time.perf_counter() - began
    out.columns = master.columns
    return out


@dataclass
class RowBound:
    """The bound at a benchmark row's placed set and max load ratio: the search, its eligible pairs, and
    the bound rounded down (fits are whole numbers; 1e-3 of slack for the LP's floating point)."""

    got: Progress
    pairs: int
    bound: int


@dataclass
class Row:
    """A benchmark row's question: its placed set's eligible pairs and groups allowed, and its own groups
    as the master's first columns."""

    inst: Instance
    arcs: Arcs
    start: list[Column]
    lo: int
    hi: int

    @classmethod
    def of(cls, inp: MatchingInput, result: MatchingResult, seed: int) -> Row:
        prep = Prepared.of(inp, seed)
        inst = build(prep, result)
        arcs = Arcs.of(inst)
        pol = inp.policy
        return cls(inst, arcs, run_columns(prep, inst, arcs, result), pol.group_members_min, pol.group_members_max)

    def bound(self, seconds: float, report: int = 0) -> RowBound:
        got = bound_fit(self.inst, self.arcs, self.start, self.lo, self.hi, seconds, report)
        return RowBound(got, len(self.arcs.row), math.floor(got.bound + 1e-3))


def cg_fit_line(inp: MatchingInput, result: MatchingResult, seed: int, seconds: float) -> str:
    """A line under a facilitated benchmark row (``matching_bench --facil-cg``): this bound at the row's
    placed set and max load ratio, and the row's gap to it."""
    found, fit = Row.of(inp, result, seed).bound(seconds), result.stats.total_fit
    got = found.got
    state = "the LP's optimum" if got.optimal else f"best Lagrangian bound (LP at {got.lp:,.1f})"
    return (
        f"  whole-group fit bound (column generation, {found.pairs:,} eligible pairs, {got.seconds:.0f} s): "
        f"{found.bound:,}, {state}; gap to it {(found.bound - fit) / found.bound:.2%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="one-dept", help="one-dept, capacity or tight")
    parser.add_argument("--size", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--report", type=int, default=10, help="a progress line every this many iterations")
    args = parser.parse_args()
    inp = facilitated_family(args.only, args.size)
    result = match(inp, args.seed)
    fit = result.stats.total_fit
    row = Row.of(inp, result, args.seed)
    pairs = len(row.arcs.row)
    print(f"{args.only} {args.size:,}: run placed {result.stats.placed_count:,}, fit {fit:,.0f}, "
          f"max load ratio {result.stats.max_load_ratio}, {pairs:,} eligible pairs", flush=True)  # fmt: skip
    found = row.bound(args.seconds, args.report)
    got, bound = found.got, found.bound
    state = "the LP's optimum" if got.optimal else "stopped by --seconds"
    print(f"  {got.subgradient} subgradient steps, {got.generation} master solves, {got.columns:,} columns, "
          f"{got.seconds:.0f} s, {state}; LP {got.lp:,.2f}, proven bound {bound:,}; "
          f"run {fit:,.0f} is {(bound - fit) / bound:.2%} below it")  # fmt: skip


if __name__ == "__main__":
    main()
