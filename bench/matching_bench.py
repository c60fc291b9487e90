"""Matching at scale next to a greedy baseline, on synthetic programs.

    python -m bench.matching_bench [--sizes 1000,5000,20000] [--group-size 1000] [--peer-size 500]

For each size (one-to-one, about one mentor per four mentees, capacities 2-6, an org tree,
conflicts), one facilitated-group program and one peer-group program, prints: placed, total fit,
max load ratio, the placed bound, the fit bound and gap, wall time and peak memory, for the solver and
for the greedy. Every solution goes through the validator. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time

from bench.synthetic_pool import instance
from contracts.policy import Form
from services.matching.domain import MatchingResult, greedy, match, validate


def _row(name: str, result: MatchingResult, seconds: float, peak_mib: float, violations: int) -> str:
    s = result.stats
    gap = "-" if s.gap is None else f"{s.gap:.3%}"
    relaxed = "-" if s.relaxed_gap is None else f"{s.relaxed_gap:.1%}"
    bound = "-" if s.fit_bound is None else f"{s.fit_bound:,.0f}"
    return (
        f"{name:<22} {s.placed_count:>7,} {s.placed_bound:>7,} {s.total_fit:>10,.0f} {bound:>10} {gap:>8} "
        f"{relaxed:>8} {s.max_load_ratio:>6.3f} {s.status:>9} {seconds:>7.1f} {peak_mib:>8.0f} {violations:>4}"
    )


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(label: str, run: object) -> str:
    """Wall time and peak resident memory (sampled every 20 ms; tracing allocations would slow the run)."""
    peak = [_rss_mib()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result, inp = run()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return _row(label, result, seconds, peak[0], len(validate(inp, result)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--group-size", type=int, default=1000, help="mentees in the facilitated-group program")
    parser.add_argument("--peer-size", type=int, default=500, help="peers in the peer-group program")
    parser.add_argument("--group-limit", type=float, default=30.0, help="CP-SAT limit for group forms (s)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    header = (
        f"{'instance':<22} {'placed':>7} {'bound':>7} {'fit':>10} {'fit bound':>10} {'gap':>8} "
        f"{'relaxed':>8} {'maxload':>6} {'status':>9} {'secs':>7} {'peakRSS':>8} {'viol':>4}"
    )
    print(header)
    print("-" * len(header))
    cases = [(Form.ONE_TO_ONE, int(s)) for s in args.sizes.split(",") if s]
    if args.group_size:
        cases.append((Form.FACILITATED_GROUP, args.group_size))
    if args.peer_size:
        cases.append((Form.PEER_GROUP, args.peer_size))
    for form, size in cases:
        # a synthetic pool has a mentor per four mentees; in a peer program everyone is a peer
        inp = instance(size * 4 // 5 if form is Form.PEER_GROUP else size, form, seed=size)
        name = f"{form.value[:11]} {size:,}"
        limit = 60.0 if form is Form.ONE_TO_ONE else args.group_limit
        solve = lambda inp=inp, limit=limit: (match(inp, args.seed, time_limit_s=limit), inp)  # noqa: E731
        print(measure(f"{name} solver", solve), flush=True)
        print(measure(f"{name} greedy", lambda inp=inp: (greedy(inp, args.seed), inp)), flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess peak RSS {rss:.0f} MiB; gap = proven gap of the fit level given placement and fairness;")
    print("relaxed = fit lost to capacity and fairness against each placed person's best eligible mentor.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
