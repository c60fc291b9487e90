"""Does the time limit hold on a loaded machine? Benchmark rows solved beside busy loops, in a thread
(``match``, as the service solved before) and in a child process stopped at the limit
(``adapters/solver_process.py``, as the service solves now).

    python -m bench.probes.hard_limit --only "facil capacity 50,000" --burners 6 [--modes child,thread]

Each line: the row, the mode, wall seconds of the solve plus ``validate`` against the limit, the
status, placed, fit, violations, the digest of the groups (``matching_bench.digest``), and, when the run
was stopped, the stage that stood. ``--burners N`` starts N processes spinning on the CPU for the whole
probe (killed at the end): on this 2-core machine 6 give a load of about 6-7, so a run gets about a
third of a core. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.matching_bench import cases, digest
from services.matching.adapters.solver_process import StoppedEmpty, solve_within_limit, warm_up
from services.matching.domain import MatchingInput, MatchingResult, match, validate


def _spin() -> None:
    while True:
        pass


@contextmanager
def burners(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU, stopped on exit whatever happens."""
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=_spin, daemon=True) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.join()


def solve(mode: str, inp: MatchingInput, seed: int) -> MatchingResult:
    return solve_within_limit(inp, seed) if mode == "child" else match(inp, seed)


def probe_line(name: str, mode: str, inp: MatchingInput, seed: int) -> str:
    started = time.perf_counter()
    try:
        result = solve(mode, inp, seed)
    except StoppedEmpty as exc:
        seconds = time.perf_counter() - started
        return (
            f"{name:<24} {mode:<6} {seconds:7.1f} of {inp.policy.time_limit_seconds:g} s  FAILED: {exc}  "
            f"load {os.getloadavg()[0]:.1f}"
        )
    violations = len(validate(inp, result))
    seconds = time.perf_counter() - started
    s = result.stats
    stood = next((n for n in s.notes if "ran out before the run ended" in n), "")
    stage = stood[stood.rfind("(") + 1 : stood.rfind(")")] if stood else "-"
    return (
        f"{name:<24} {mode:<6} {seconds:7.1f} of {inp.policy.time_limit_seconds:g} s  {s.status:<8} "
        f"placed {s.placed_count:>7,}  fit {s.total_fit:>10,.0f}  viol {violations}  {digest(result)}  "
        f"stood: {stage}  load {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="facil capacity 50,000", help="rows whose name contains this")
    parser.add_argument("--burners", type=int, default=6)
    parser.add_argument("--modes", default="child,thread", help="child (the service's way), thread (match)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rows = argparse.Namespace(facil_sizes="1000,5000,20000,50000", variants=1, pairs="")
    chosen = [(name, build) for name, build, _ in cases(rows) if args.only in name]
    warm_up()  # the fork server's imports, as at the service's start
    with burners(args.burners):
        for name, build in chosen:
            inp = build()
            for mode in args.modes.split(","):
                print(probe_line(name, mode, inp, args.seed), flush=True)


if __name__ == "__main__":
    main()
