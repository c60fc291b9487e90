"""The most fit any facilitated grouping reaches for a run's placed set, load ratio and fair load, proven
offline with a MILP (HiGHS): the truth behind a row's fit gap.

    python -m bench.facilitated_fit_exact [--only one-dept] [--size 1000] [--seconds 600] [--loads-free] [--arcs K]

For a benchmark pool (``bench.matching_pools``; one mentor per group), the matcher runs once (its placed
set P and max load ratio r are then fixed), and a MILP over every eligible (mentee of P, mentor) pair
maximises fit:

- ``x[i, k]`` binary: mentee ``i`` in a group of mentor ``k`` (eligible, ``k`` has groups allowed at r:
  ``floor(r x capacity) - existing load``, and room for ``i``'s department); ``sum_k x[i, k] = 1``;
- ``g[k]`` integer in [0, allowed]: the groups ``k`` leads; ``min x g <= sum_i x[i, k] <= max x g``;
- departments: ``sum_{i of d} x[i, k] <= room(k, d) x g[k]`` (the bound, less one for ``k``'s own);
- pairs kept apart (reporting lines, conflicts, excluded pairs), for each ``k`` eligible for both:
  ``x[a, k] + x[b, k] <= g[k]`` (exact when ``k`` leads one group, void from two);
- fair load (b), a level above fit, unless ``--loads-free``: ``u[k] <= g[k]`` binary, mentors used first
  maximised (that optimum is proven and printed), then ``sum u >= that`` while fit is maximised.

Why its optimum bounds every grouping of P at r with that many mentors used: a grouping's own numbers
satisfy each row (a group holds min..max people and at most room(k, d) of d; two apart people are never
in one group, so a one-group mentor holds at most one of them). Why, conversely, an optimum whose
mentors of two or more groups can be split into groups is a grouping: a mentor's people laid out by
department and dealt round-robin into its g groups give each group floor or ceil of the mean size (within
min..max) and at most ceil(count of d / g) <= room of each d; with apart pairs the split is searched
(CP-SAT, every rule) and the realised fit printed. When the realisation is valid (``validate``) and its fit
equals the MILP's proven bound, it is the optimum. Prints figures; asserts nothing.

Measured 2026-12-01 (seed 2026, load 2-7 with other work on the 2 cores): one-dept 1,000, 82,365 arcs,
most mentors used 55 (proven, the run's), fit **3,890 proven optimal** in 45 s (10 s with
``--loads-free``: 3,890 too), realised as 157 groups with 0 violations; the run had 3,794 (3,879 with
``load_swaps``), the group fit LP says 4,178. One-dept 5,000 (2.5 M arcs): no bound in 900 s. With
``--arcs K`` (a bound only: each person's K best arcs, and one to a virtual mentor without rules worth
its next-best fit, counted towards the sizes of the mentor it stands for) 60 arcs give 4,189 at 1,000,
looser than the LP.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import dataclass, field

import highspy
import numpy as np
from ortools.sat.python import cp_model

from bench.highs import quiet_highs
from bench.matching_pools import facilitated_family
from contracts.policy import Role
from services.matching.domain import MatchingInput, MatchingResult, match, validate
from services.matching.domain.common import Prepared, apart_pairs, make_group
from services.matching.domain.facilitated_prep import eligibility
from services.matching.domain.rules import PairRules, Pool

RATIO_SLACK = 1e-4
"""As ``bench.fit_bounds``: the stats' ratio is rounded to 6 decimals."""


@dataclass
class Instance:
    """The MILP's data: arcs (row of P, mentor position, fit), groups allowed, departments, apart pairs."""

    placed: list[str]
    arcs: list[tuple[int, int, int]]
    allowed: np.ndarray
    room: dict[tuple[int, str], int]
    dept: list[str]
    apart: list[tuple[int, int]]
    wanted: np.ndarray
    """Mentors with room whom some seeker (placed or not) may join: those fair load (b) counts."""
    run_leads: dict[int, int] = field(default_factory=dict)
    next_best: dict[int, int] = field(default_factory=dict)
    """With ``--arcs``: per placed row whose arcs were cut, the best fit of the arcs not kept."""


def build(prep: Prepared, result: MatchingResult, keep: int | None = None) -> Instance:
    """Every eligible arc of the run's placed set at its max load ratio (with ``keep``, each person's
    ``keep`` best, and the best fit of the others as ``next_best``)."""
    pol = prep.policy
    rules = PairRules(Pool.encode(prep.people), pol, np.array(prep.mentors, dtype=np.int64))
    free = np.array([prep.free(pid) for pid in prep.mentor_ids], dtype=np.int64)
    el = eligibility(prep, rules, free)
    cap = np.array([prep.capacity[m] for m in prep.mentor_ids], dtype=np.int64)
    load = np.array([prep.load[m] for m in prep.mentor_ids], dtype=np.int64)
    ratio = result.stats.max_load_ratio
    allowed = np.maximum(0, np.floor(ratio * cap + RATIO_SLACK).astype(np.int64) - load)
    position = {m: k for k, m in enumerate(prep.mentor_ids)}
    leads: dict[int, int] = defaultdict(int)
    placed: list[str] = []
    for g in result.groups:
        for m in g.members:
            if m.role is Role.MENTOR:
                leads[position[m.participant_id]] += 1
            else:
                placed.append(m.participant_id)
    placed.sort()
    mentor_dept = [prep.by_id[m].department for m in prep.mentor_ids]
    dept = [prep.by_id[p].department for p in placed]
    limit = pol.max_same_department
    arcs, room, next_best = [], {}, {}
    for r, pid in enumerate(placed):
        row = el.row[pid]
        mine = []
        for k in np.flatnonzero(el.eligible[row] & (allowed > 0)).tolist():
            space = pol.group_members_max if limit is None else limit - (dept[r] == mentor_dept[k])
            if space <= 0:
                continue
            room[(k, dept[r])] = space
            mine.append((r, k, int(el.fit[row, k])))
        mine.sort(key=lambda a: (-a[2], a[1]))
        if keep is not None and len(mine) > keep:
            next_best[r] = mine[keep][2]
            mine = mine[:keep]
        arcs += mine
    index = {p: r for r, p in enumerate(placed)}
    apart = [(index[a], index[b]) for a, b in apart_pairs(prep, placed)]
    wanted = (el.eligible.any(axis=0)) & (free > 0)
    return Instance(placed, arcs, allowed, room, dept, apart, wanted, dict(leads), next_best)


def _rows(h: highspy.Highs, rows: list[tuple[float, float, list[int], list[float]]]) -> None:
    """Adds (lower, upper, columns, values) rows in one call."""
    starts: list[int] = []
    index: list[int] = []
    value: list[float] = []
    for _, _, cols, vals in rows:
        starts.append(len(index))
        index += cols
        value += vals
    lower = np.array([r[0] for r in rows], dtype=np.float64)
    upper = np.array([r[1] for r in rows], dtype=np.float64)
    h.addRows(len(rows), lower, upper, len(index), np.array(starts, dtype=np.int32),
              np.array(index, dtype=np.int32), np.array(value, dtype=np.float64))  # fmt: skip


@dataclass
class Found:
    """The MILP's answer: sizes, mentors used (most, its bound, status), fit found and proven bound, and
    the optimum's assignment (placed row -> mentor position) and groups per mentor."""

    arcs: int
    rows: int
    mentors: int
    used: tuple[int, int, str] | None = None
    fit: float = 0.0
    bound: float = 0.0
    status: str = ""
    seconds: float = 0.0
    assign: dict[int, int] = field(default_factory=dict)
    groups: dict[int, int] = field(default_factory=dict)
    virtual: int = 0
    """People the optimum sends to the virtual mentor (``--arcs``): then it is a bound, not a grouping."""


def solve(inst: Instance, pol_min: int, pol_max: int, seconds: float, fair: bool) -> Found:
    """The MILP of the module doc; with ``fair``, mentors used maximised first. Returns figures and the
    optimum's assignment (mentor per placed mentee, groups per mentor)."""
    inf = highspy.kHighsInf
    n_x = len(inst.arcs)
    mentors = sorted({k for _, k, _ in inst.arcs})
    gcol = {k: n_x + j for j, k in enumerate(mentors)}
    ucol = {k: n_x + len(mentors) + j for j, k in enumerate(mentors) if inst.wanted[k]}
    vcol = {r: n_x + len(mentors) + len(ucol) + j for j, r in enumerate(sorted(inst.next_best))}
    base = n_x + len(mentors) + len(ucol) + len(vcol)
    scol = {k: base + j for j, k in enumerate(mentors)} if vcol else {}
    """With cut arcs, the members of ``k``'s groups who came through a cut arc (``spill``): they count
    towards its sizes, at most as many in all as the virtual arcs taken (some may be with mentors that
    have no kept arc). Without them a grouping with such members would break the size rows and the
    bound would not hold."""
    n = base + len(scol)
    h = quiet_highs()
    h.setOptionValue("time_limit", seconds)
    lower = np.zeros(n)
    upper = np.ones(n)
    for k, c in gcol.items():
        upper[c] = float(inst.allowed[k])
    for k, c in scol.items():
        upper[c] = float(inst.allowed[k] * pol_max)
    h.addVars(n, lower, upper)
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.full(n, highspy.HighsVarType.kInteger))
    of_mentee: dict[int, list[int]] = defaultdict(list)
    of_mentor: dict[int, list[int]] = defaultdict(list)
    of_dept: dict[tuple[int, str], list[int]] = defaultdict(list)
    at: dict[tuple[int, int], int] = {}
    for c, (r, k, _) in enumerate(inst.arcs):
        of_mentee[r].append(c)
        of_mentor[k].append(c)
        of_dept[(k, inst.dept[r])].append(c)
        at[(r, k)] = c
    rows: list[tuple[float, float, list[int], list[float]]] = []
    for r in vcol:  # a person whose arcs were cut may go to a mentor without rules, at its next-best fit
        of_mentee[r].append(vcol[r])
    rows += [(1.0, 1.0, cs, [1.0] * len(cs)) for cs in of_mentee.values()]
    for k, cs in of_mentor.items():
        spill = [scol[k]] if scol else []
        rows.append((0.0, inf, [*cs, *spill, gcol[k]], [1.0] * (len(cs) + len(spill)) + [-float(pol_min)]))
        rows.append((-inf, 0.0, [*cs, *spill, gcol[k]], [1.0] * (len(cs) + len(spill)) + [-float(pol_max)]))
    if scol:
        rows.append((-inf, 0.0, [*scol.values(), *vcol.values()], [1.0] * len(scol) + [-1.0] * len(vcol)))
    for (k, d), cs in of_dept.items():
        if len(cs) > inst.room[(k, d)]:
            rows.append((-inf, 0.0, [*cs, gcol[k]], [1.0] * len(cs) + [-float(inst.room[(k, d)])]))
    for a, b in inst.apart:
        for k in mentors:
            if (a, k) in at and (b, k) in at:
                rows.append((-inf, 0.0, [at[(a, k)], at[(b, k)], gcol[k]], [1.0, 1.0, -1.0]))
    rows += [(-inf, 0.0, [u, gcol[k]], [1.0, -1.0]) for k, u in ucol.items()]
    _rows(h, rows)
    out = Found(n_x, len(rows), len(mentors))
    started = time.perf_counter()
    if fair:
        h.changeColsCost(len(ucol), np.array(list(ucol.values()), dtype=np.int32), np.ones(len(ucol)))
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        h.run()
        used = round(h.getInfo().objective_function_value)
        out.used = (used, round(h.getInfo().mip_dual_bound), h.modelStatusToString(h.getModelStatus()))
        _rows(h, [(float(used), inf, list(ucol.values()), [1.0] * len(ucol))])
        h.changeColsCost(len(ucol), np.array(list(ucol.values()), dtype=np.int32), np.zeros(len(ucol)))
    cols = np.array([*range(n_x), *vcol.values()], dtype=np.int32)
    costs = [float(f) for _, _, f in inst.arcs] + [float(inst.next_best[r]) for r in vcol]
    h.changeColsCost(len(cols), cols, np.array(costs))
    h.changeObjectiveSense(highspy.ObjSense.kMaximize)
    h.run()
    info = h.getInfo()
    out.fit = info.objective_function_value
    out.bound = info.mip_dual_bound
    out.status = h.modelStatusToString(h.getModelStatus())
    out.seconds = time.perf_counter() - started
    values = np.array(h.getSolution().col_value)
    out.assign = {inst.arcs[c][0]: inst.arcs[c][1] for c in range(n_x) if values[c] > 0.5}
    out.groups = {k: round(values[gcol[k]]) for k in mentors if values[gcol[k]] > 0.5}
    out.virtual = sum(1 for c in vcol.values() if values[c] > 0.5)
    return out


def split(prep: Prepared, inst: Instance, k: int, members: list[int], g: int) -> list[list[int]] | None:
    """Mentor ``k``'s members in ``g`` groups under every rule (CP-SAT); None if none exists."""
    pol = prep.policy
    if g == 1:
        return [members]
    model = cp_model.CpModel()
    y = {(r, j): model.new_bool_var("") for r in members for j in range(g)}
    for r in members:
        model.add_exactly_one(y[r, j] for j in range(g))
    apart = set(inst.apart)
    for j in range(g):
        model.add(sum(y[r, j] for r in members) >= pol.group_members_min)
        model.add(sum(y[r, j] for r in members) <= pol.group_members_max)
        for d in {inst.dept[r] for r in members}:
            model.add(sum(y[r, j] for r in members if inst.dept[r] == d) <= inst.room[(k, d)])
        for a in members:
            for b in members:
                if (a, b) in apart:
                    model.add_bool_or([~y[a, j], ~y[b, j]])
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = 30.0
    if solver.solve(model) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    return [[r for r in members if solver.value(y[r, j])] for j in range(g)]


def realise(
    inp: MatchingInput, prep: Prepared, inst: Instance, result: MatchingResult, found: Found
) -> tuple[float, int, list[str]]:
    """The MILP's optimum as groups: (their fit, idle wanted mentors, validate's problems)."""
    assign, counts = found.assign, found.groups
    by_mentor: dict[int, list[int]] = defaultdict(list)
    for r, k in sorted(assign.items()):
        by_mentor[k].append(r)
    groups = []
    for k, members in sorted(by_mentor.items()):
        parts = split(prep, inst, k, members, counts[k])
        if parts is None:
            return 0.0, -1, [f"mentor {prep.mentor_ids[k]}: no split into {counts[k]} groups"]
        groups += [make_group(prep, [prep.mentor_ids[k]], [inst.placed[r] for r in p]) for p in parts]
    realised = result.model_copy(update={"groups": groups})
    idle = int(sum(1 for k in np.flatnonzero(inst.wanted).tolist() if k not in by_mentor))
    return sum(g.fit for g in groups), idle, validate(inp, realised)


def exact_line(inp: MatchingInput, result: MatchingResult, seed: int, seconds: float) -> str:
    """A line under a facilitated benchmark row (``matching_bench --facil-exact``): the MILP's proven bound
    at the row's placed set, max load ratio and most mentors used, and the row's gap to it."""
    prep = Prepared.of(inp, seed)
    inst = build(prep, result)
    pol = inp.policy
    found = solve(inst, pol.group_members_min, pol.group_members_max, seconds, True)
    bound, fit = found.bound, result.stats.total_fit
    used = found.used or (0, 0, "-")
    return (
        f"  exact fit (HiGHS MILP, {found.arcs:,} eligible pairs, most mentors used {used[0]} {used[2]}): "
        f"best {found.fit:,.0f}, proven bound {bound:,.0f}, {found.status} in {found.seconds:.0f} s; "
        f"gap to it {(bound - fit) / bound:.2%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="one-dept", help="one-dept, capacity or tight")
    parser.add_argument("--size", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--loads-free", action="store_true", help="drop fair load (b): any mentors used")
    parser.add_argument(
        "--arcs", type=int, default=None, help="keep each person's best arcs, the rest as one virtual arc (a bound)"
    )
    args = parser.parse_args()
    inp = facilitated_family(args.only, args.size)
    result = match(inp, args.seed)
    prep = Prepared.of(inp, args.seed)
    inst = build(prep, result, args.arcs)
    run_idle = int(sum(1 for k in np.flatnonzero(inst.wanted).tolist() if k not in inst.run_leads))
    print(f"{args.only} {args.size:,}: run placed {result.stats.placed_count:,}, fit {result.stats.total_fit:,.0f}, "
          f"max load ratio {result.stats.max_load_ratio}, groups {len(result.groups)}, idle {run_idle}")  # fmt: skip
    fair = not args.loads_free and not inst.next_best  # the most mentors used needs every arc
    found = solve(inst, inp.policy.group_members_min, inp.policy.group_members_max, args.seconds, fair)
    print(f"  MILP: {found.arcs:,} arcs, {found.rows:,} rows, {found.mentors} mentors")
    if found.used is not None:
        print(f"  mentors used: most {found.used}")
    fit, bound, run = found.fit, found.bound, result.stats.total_fit
    print(f"  fit: best {fit:,.1f}, proven bound {bound:,.1f}, {found.status} in {found.seconds:.0f} s; "
          f"run {run:,.0f} is {(bound - run) / bound:.2%} below the bound")  # fmt: skip
    if found.virtual or not found.assign:
        print(f"  not realised: {found.virtual} people at the virtual mentor (a bound only)")
        return
    real, idle, problems = realise(inp, prep, inst, result, found)
    print(f"  realised as groups: fit {real:,.0f}, idle {idle}, violations {len(problems)} {problems[:3]}")


if __name__ == "__main__":
    main()
