"""Same input and seed, same groups, on any CPU: a probe of the matcher's determinism across machines.

    python -m bench.probes.any_cpu [--set probe|small] [--cases REGEX] [--seed 2026]

numpy chooses its sort, partition and selection kernels by the CPU it runs on (AVX-512, AVX2 or the
baseline), and those kernels order *equal* keys differently: an ``argpartition`` of fits with ties
picks one mentor or peer on one machine and another elsewhere. A matcher that lets such an order
reach its groups gives different groups for the same input and seed on another machine (the 500-peer
benchmark row did: 7,821 on one machine, 7,798 on another). The probe runs every case twice, in
child processes: once with every kernel this CPU offers, once with numpy held to its baseline
(``NPY_DISABLE_CPU_FEATURES``), the wall clock off in both (the deterministic budgets decide), and
prints each case's two digests. On a CPU with nothing beyond the baseline both runs are the same
machine, which the probe says. Prints figures; asserts nothing (``test_any_cpu.py`` asserts on small
pools).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable

from bench.matching_bench import digest
from bench.probes import group_probe
from bench.probes.group_probe import fac, peer, team
from bench.synthetic_pool import instance
from contracts.policy import Form
from services.matching.domain import MatchingInput, match, validate

Builder = Callable[[], MatchingInput]


def small_cases() -> dict[str, Builder]:
    """Pools small enough for the test suite, with many equal fits (few skills and goals weighed)."""
    p = functools.partial
    return {
        "fac 60 s1": p(fac, 60, 1),
        "fac 200 2-6 s2": p(fac, 200, 2, group_members_min=2, group_members_max=6),
        "fac 120 mpg2 s3": p(fac, 120, 3, mentors_per_group=2, group_members_min=2, group_members_max=6),
        "fac 600 dept1 s4": p(fac, 600, 4, max_same_department=1),
        "peer 40 s5": p(peer, 40, 5),
        "peer 150 2-6 s6": p(peer, 150, 6, group_members_min=2, group_members_max=6),
        "team 60 s7": p(team, 60, 7, 12),
        "pairs 300 s8": p(instance, 300, Form.ONE_TO_ONE, 8),
    }


def probe_cases() -> dict[str, Builder]:
    """The outside-in probe's pools (``group_probe``): 1,000 to 20,000 people, every form."""
    return {name: build for name, (_size, build) in group_probe.cases().items()}


CASE_SETS: dict[str, Callable[[], dict[str, Builder]]] = {"small": small_cases, "probe": probe_cases}


def extra_kernels() -> list[str]:
    """The CPU features numpy dispatches to on this machine beyond its baseline."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def _child(case_set: str, pattern: str, seed: int) -> None:
    """Run the cases with the clock off; print {case: digest, or the violations when a rule broke}."""
    from services.matching.domain import levels

    levels.WALL_DEADLINE_SHARE = 1_000.0  # the budgets decide, not this machine's load
    out: dict[str, str] = {}
    for name, build in CASE_SETS[case_set]().items():
        if re.search(pattern, name):
            inp = build()
            result = match(inp, seed)
            problems = validate(inp, result)
            out[name] = digest(result) if not problems else f"violations: {problems[:3]}"
    print(json.dumps(out))


def digests(case_set: str, pattern: str, seed: int, *, baseline: bool) -> dict[str, str]:
    """Each case's digest from a child process, with numpy's CPU-specific kernels or without them."""
    env = dict(os.environ)
    if baseline:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(extra_kernels())
    else:
        env.pop("NPY_DISABLE_CPU_FEATURES", None)
    args = [sys.executable, "-m", "bench.probes.any_cpu", "--child", "--set", case_set, "--cases", pattern]
    done = subprocess.run([*args, "--seed", str(seed)], env=env, capture_output=True, text=True, check=True)
    parsed: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return parsed


def compare(case_set: str, pattern: str, seed: int) -> list[tuple[str, str, str]]:
    """(case, digest with this CPU's kernels, digest with the baseline's) for every matching case."""
    full = digests(case_set, pattern, seed, baseline=False)
    base = digests(case_set, pattern, seed, baseline=True)
    return [(name, full[name], base.get(name, "-")) for name in full]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", default="probe", choices=sorted(CASE_SETS))
    parser.add_argument("--cases", default=".", help="a regular expression on the case names")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.set, args.cases, args.seed)
        return
    kernels = extra_kernels()
    print(f"numpy kernels beyond the baseline on this CPU: {', '.join(kernels) or 'none (both runs are the same)'}")
    rows = compare(args.set, args.cases, args.seed)
    for name, full, base in rows:
        print(f"{name:40s} {full:>14s} {base:>14s} {'same' if full == base else 'DIFFERENT'}")
    print(f"{sum(f == b for _, f, b in rows)} of {len(rows)} cases give the same groups")


if __name__ == "__main__":
    main()
