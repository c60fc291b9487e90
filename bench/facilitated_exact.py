"""The most mentees any facilitated grouping places, proven offline: an exact cross-check of the matcher.

    python -m bench.facilitated_exact [--size 1000] [--family tight] [--variant 0] [--seconds 600]

For pools whose mentors lead one group each (both benchmark families), two independent computations:

- an upper bound: the max flow mentee -> (mentor, department) -> mentor over *every* eligible pair,
  a mentor taking at most its group maximum, and of each department at most the room the department
  bound leaves in its group (group minimums and the rules between members relaxed);
- a solution: an exact CP-SAT model of every eligible pair and every rule (group size, department
  bound, reporting lines, conflicts, excluded pairs), maximising the placed count, with the flow's
  value as a cap so that reaching it stops the search, run without a clock for as long as it takes.

When the two meet, that is the optimum. Prints both, and the matcher's placed count and ``placed_bound``
for the same pool. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from ortools.graph.python import max_flow
from ortools.sat.python import cp_model

from bench.matching_pools import facilitated
from services.matching.domain import match
from services.matching.domain.common import Prepared, apart_pairs
from services.matching.domain.facilitated_prep import eligibility
from services.matching.domain.rules import BoolArray, PairRules, Pool


def _instance(prep: Prepared) -> tuple[BoolArray, list[str], list[str], list[tuple[int, int]]]:
    """Eligible (mentee, mentor) pairs with room (a mentee of the mentor's own department excluded when
    the bound leaves it no room), departments of both sides, and the mentee pairs kept apart."""
    free = np.array([prep.free(pid) for pid in prep.mentor_ids], dtype=np.int64)
    if free.max(initial=0) > 1:
        raise SystemExit("this cross-check models mentors who lead one group each")
    rules = PairRules(Pool.encode(prep.people), prep.policy, np.array(prep.mentors, dtype=np.int64))
    el = eligibility(prep, rules, free)
    dept = [prep.by_id[p].department for p in el.seekers]
    mentor_dept = [prep.by_id[m].department for m in prep.mentor_ids]
    cells = el.eligible & (free > 0)[None, :]
    limit = prep.policy.max_same_department
    if limit is not None and limit < 2:
        cells &= ~np.array([[d == md for md in mentor_dept] for d in dept], dtype=bool)
    row = {p: r for r, p in enumerate(el.seekers)}
    apart = [(row[a], row[b]) for a, b in apart_pairs(prep, el.seekers)]
    return cells, dept, mentor_dept, apart


def flow_bound(prep: Prepared, cells: BoolArray, dept: list[str], mentor_dept: list[str]) -> int:
    """The max flow through (mentor, department) nodes over every eligible pair."""
    n, m = cells.shape
    names = sorted(set(dept) | set(mentor_dept))
    code = {d: c for c, d in enumerate(names)}
    limit = prep.policy.max_same_department
    f = max_flow.SimpleMaxFlow()
    mentors, nodes = 2 + n, 2 + n + m
    for i in range(n):
        f.add_arc_with_capacity(0, 2 + i, 1)
        for k in np.flatnonzero(cells[i]):
            f.add_arc_with_capacity(2 + i, nodes + int(k) * len(names) + code[dept[i]], 1)
    for j in range(m):
        for d, c in code.items():
            room = prep.policy.group_members_max if limit is None else limit - (d == mentor_dept[j])
            if room > 0:
                f.add_arc_with_capacity(nodes + j * len(names) + c, mentors + j, room)
        f.add_arc_with_capacity(mentors + j, 1, prep.policy.group_members_max)
    f.solve(0, 1)
    return int(f.optimal_flow())


def exact(
    prep: Prepared,
    cells: BoolArray,
    depts: tuple[list[str], list[str]],
    apart: list[tuple[int, int]],
    cap: int,
    seconds: float,
) -> tuple[str, int, float]:
    """The exact model, capped at ``cap``: (status, most placed found, seconds)."""
    dept, mentor_dept = depts
    pol = prep.policy
    m = cells.shape[1]
    model = cp_model.CpModel()
    x = {(int(i), int(k)): model.new_bool_var("") for i, k in zip(*np.nonzero(cells), strict=True)}
    open_ = [model.new_bool_var("") for _ in range(m)]
    of_mentee: dict[int, list[cp_model.IntVar]] = defaultdict(list)
    of_mentor: dict[int, list[tuple[int, cp_model.IntVar]]] = defaultdict(list)
    for (i, k), v in x.items():
        of_mentee[i].append(v)
        of_mentor[k].append((i, v))
    for vs in of_mentee.values():
        model.add_at_most_one(vs)
    for k in range(m):
        vs = [v for _, v in of_mentor[k]]
        model.add(sum(vs) >= pol.group_members_min * open_[k])
        model.add(sum(vs) <= pol.group_members_max * open_[k])
        by_dept: dict[str, list[cp_model.IntVar]] = defaultdict(list)
        for i, v in of_mentor[k]:
            by_dept[dept[i]].append(v)
        if pol.max_same_department is not None:
            for d, same in by_dept.items():
                model.add(sum(same) <= pol.max_same_department - (d == mentor_dept[k]))
    for a, b in apart:
        for k in range(m):
            if (a, k) in x and (b, k) in x:
                model.add_bool_or([~x[a, k], ~x[b, k]])
    placed = sum(x.values())
    model.add(placed <= cap)
    model.maximize(placed)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = seconds
    solver.parameters.num_workers = 2
    started = time.perf_counter()
    status = solver.solve(model)
    return solver.status_name(status), int(solver.objective_value), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000)
    parser.add_argument("--family", default="tight")
    parser.add_argument("--variant", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    inp = facilitated(args.size, args.family, args.variant)
    prep = Prepared.of(inp, args.seed)
    cells, dept, mentor_dept, apart = _instance(prep)
    bound = flow_bound(prep, cells, dept, mentor_dept)
    pairs = int(cells.sum())
    print(f"{args.family} {args.size:,} v{args.variant}: {cells.shape[0]:,} mentees, {pairs:,} eligible pairs")
    print(f"max flow through (mentor, department) over every eligible pair: {bound:,}")
    status, found, seconds = exact(prep, cells, (dept, mentor_dept), apart, bound, args.seconds)
    print(f"exact CP-SAT model, capped at the flow: {status} {found:,} in {seconds:.0f} s")
    result = match(inp, args.seed)
    print(f"matcher: placed {result.stats.placed_count:,}, placed_bound {result.stats.placed_bound:,}")


if __name__ == "__main__":
    main()
