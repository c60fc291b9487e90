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

# This module runs the rows and prints the table (its docstring is the --help text); the pools are built
# in bench/matching_pools.py and the fit bounds computed in bench/fit_bounds.py.

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import multiprocessing
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from bench.facilitated_cg import cg_fit_line
from bench.facilitated_fit_exact import exact_line
from bench.fit_bounds import EXACT_PEERS, idle_and_fit_bound
from bench.matching_pools import facilitated, facilitated_one_department, pairs, peers, teams
from bench.peer_bound import beside_row, lp_fit_bound
from bench.peer_cg import cg_line
from bench.peer_descent import share_line
from contracts.policy import Form
from services.matching.adapters.solver_process import solve_within_limit
from services.matching.domain import MatchingInput, MatchingResult, greedy, levels, match, validate


def _rss_mib(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:  # a child that has just ended
        pass
    return 0.0


def _rss_with_children_mib() -> float:
    """This process and its live children (a run solved in a child process, ``--in-child``)."""
    return _rss_mib() + sum(_rss_mib(child.pid) for child in multiprocessing.active_children() if child.pid)


def _cpu_seconds() -> float:
    """This process's CPU time and its finished children's (the solver's child is joined in the run)."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


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
    peak = [_rss_with_children_mib()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_with_children_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started, cpu = time.perf_counter(), _cpu_seconds()
    result = run()
    violations = len(validate(inp, result))
    seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    done.set()
    sampler.join()
    return result, seconds, cpu, peak[0], violations


def peer_lp_line(inp: MatchingInput, result: MatchingResult, old: float | None, seconds: float) -> str:
    """The set-partitioning LP bound (``bench/peer_bound.py``) beside the row's bound, and the gap to the
    tighter of the two: a line under a peer row (``--peer-lp``)."""
    found = lp_fit_bound(inp, result, seconds)
    row, gap = beside_row(old, found.value, result.stats.total_fit)
    return (
        f"  peer fit bound: row's {row}, set-partitioning LP {found.value:,.1f} "
        f"(proven; restricted LP {found.lp:,.1f}, {found.rounds} rounds, {found.columns:,} columns, "
        f"{found.nodes:,} nodes, {found.seconds:.0f} s); gap to the tighter {gap}"
    )


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


@dataclass(frozen=True)
class CaseOptions:
    """What the command line asks of every row: the greedy baseline beside it, its digest, and the bound
    lines printed under it (0 or -1: off)."""

    with_greedy: bool = True
    show_digest: bool = False
    peer_lp: float = 0.0
    peer_share: tuple[int, int] = (-1, 0)
    facil_exact: float = 0.0
    in_child: bool = False
    peer_cg: float = 0.0
    facil_cg: float = 0.0

    @classmethod
    def of(cls, args: argparse.Namespace) -> CaseOptions:
        return cls(
            with_greedy=not args.no_greedy,
            show_digest=args.digest,
            peer_lp=args.peer_lp,
            peer_share=(args.peer_share, args.peer_share_steps),
            facil_exact=args.facil_exact,
            in_child=args.in_child,
            peer_cg=args.peer_cg,
            facil_cg=args.facil_cg,
        )


def run_case(name: str, inp: MatchingInput, seed: int, opts: CaseOptions) -> None:
    limit = inp.policy.time_limit_seconds if inp.form is not Form.ONE_TO_ONE else None
    solve = (lambda: solve_within_limit(inp, seed)) if opts.in_child else (lambda: match(inp, seed))
    result, seconds, cpu, peak, violations = measure(solve, inp)
    idle, bound = idle_and_fit_bound(inp, result)
    row = line(Row(f"{name} solver", result, seconds, cpu, peak, violations, bound, idle), limit)
    print(row + (f" {digest(result)}" if opts.show_digest else ""), flush=True)
    if inp.form is Form.FACILITATED_GROUP and inp.policy.mentors_per_group == 1 and opts.facil_exact > 0:
        print(exact_line(inp, result, seed, opts.facil_exact), flush=True)
    if inp.form is Form.FACILITATED_GROUP and inp.policy.mentors_per_group == 1 and opts.facil_cg > 0:
        print(cg_fit_line(inp, result, seed, opts.facil_cg), flush=True)
    if inp.form is Form.PEER_GROUP and opts.peer_lp > 0:
        print(peer_lp_line(inp, result, bound, opts.peer_lp), flush=True)
    if inp.form is Form.PEER_GROUP and opts.peer_share[0] >= 0:
        print(share_line(inp, result, bound, *opts.peer_share), flush=True)
    if inp.form is Form.PEER_GROUP and opts.peer_cg > 0:
        print(cg_line(inp, result, bound, opts.peer_cg), flush=True)
    if opts.with_greedy:
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
    parser.add_argument(
        "--peer-cg",
        type=float,
        default=0.0,
        help="seconds after which no exact round of the set-partitioning LP bound by exact pricing starts, under "
        "each peer row (bench/peer_cg.py; 0: off)",
    )
    parser.add_argument(
        "--facil-exact",
        type=float,
        default=0.0,
        help="seconds for the exact fit MILP under each facilitated row (bench/facilitated_fit_exact.py; 0: off)",
    )
    parser.add_argument(
        "--facil-cg",
        type=float,
        default=0.0,
        help="seconds for the whole-group fit bound by column generation under each facilitated row "
        "(bench/facilitated_cg.py; 0: off)",
    )
    parser.add_argument(
        "--in-child",
        action="store_true",
        help="solve as the service does, in a child process stopped at the limit (adapters/solver_process.py); "
        "secs, cpu and peakMiB then count the child too (not with --no-clock: the child keeps the service's clock)",
    )
    args = parser.parse_args()
    if args.no_clock and args.in_child:
        parser.error("--no-clock cannot reach a child process: the child is stopped at the policy's limit")
    if args.no_clock:
        levels.WALL_DEADLINE_SHARE = 1_000.0
    options = CaseOptions.of(args)
    print(HEADER)
    print("-" * len(HEADER))
    for name, build, greedy_too in cases(args):
        words = [w for w in name.split() if w[0].isdigit()]
        size = int(words[0].replace(",", ""))
        if args.only not in name or size > args.max_size:
            continue
        run_case(name, build(), args.seed, replace(options, with_greedy=greedy_too and options.with_greedy))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess peak RSS {rss:.0f} MiB. fit bnd: transportation relaxation at the run's placed set and max")
    print("load ratio (computed here, not by the solver), for facilitated rows up to 400,000 kept arcs the smaller")
    print("of it and an LP that keeps group minimums with the department bound (bench/group_fit_lp.py);")
    print("gap = (fit bnd - fit) / fit bnd; secs = match + validate")
    print("(wall), cpu = the process's CPU seconds in them (threads included). Peer rows: fit bnd is the exact")
    print(f"optimum (every valid group, set partitioning by CBC) up to {EXACT_PEERS} placed peers, else b-matching.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
