"""Rehearse a matching offline, from an export: ``python -m services.matching.cli match INPUT.json``.

INPUT.json has the service's schema (``MatchingInput``): program_id, form, policy, participants,
existing_load, overrides (see docs/examples/matching_input.json) — or it is a run's audit record as
``GET /runs/{run_id}/input`` returns it, whose input and seed are used (replaying the run). Writes groups,
explanations, non-placements and statistics as JSON; progress and a summary go to stderr.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from collections import Counter
from pathlib import Path

from services.matching.domain import MatchingInput, match, validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.matching.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("match", help="match one program's pool from a JSON file")
    run.add_argument("input", type=Path)
    run.add_argument("--seed", type=int, help="lottery seed (default: the policy's fixed seed, else random)")
    run.add_argument("-o", "--output", type=Path, help="where to write the result (default: stdout)")
    run.add_argument("--time-limit", type=float, help="seconds for group forms (default: the policy's)")
    args = parser.parse_args(argv)

    try:
        document = json.loads(args.input.read_text())
        record = document if isinstance(document, dict) and "input" in document else {"input": document}
        inp = MatchingInput.model_validate(record["input"])
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else record.get("seed", inp.policy.seed)
    if seed is None:
        seed = secrets.randbits(62)

    def progress(message: str, fraction: float) -> None:
        print(f"\r[{fraction:5.0%}] {message:<60}", end="", file=sys.stderr, flush=True)

    result = match(inp, seed, time_limit_s=args.time_limit, progress=progress)
    print(file=sys.stderr)
    problems = validate(inp, result)
    text = json.dumps(result.model_dump(mode="json"), indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text)
    s = result.stats
    reasons = Counter(u.reason_code.value for u in result.unplaced)
    print(
        f"seed {seed}: placed {s.placed_count} (bound {s.placed_bound}), unplaced {s.unplaced_count} {dict(reasons)}, "
        f"{len(result.groups)} groups, total fit {s.total_fit:g}, max load ratio {s.max_load_ratio}, "
        f"{s.method} {s.status}, {s.wall_time_seconds} s",
        file=sys.stderr,
    )
    if problems:
        print("RULE VIOLATIONS:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
