"""Outside-in probe of issue 9 (delivery guarantees under faults): services run as separate uvicorn
processes (bench/probes/serve.py) on private topics (``p9<hex>.mentoring.*``, deleted afterwards), in
throw-away schemas, against the shared local Kafka and PostgreSQL; faults are injected with the
probe's own clients and proxy (bench/probes/harness.py). Prints what it measured; asserts nothing.

    STACK_DIR=/work/main/.stack python -m bench.probes.issue9 poison
    STACK_DIR=/work/main/.stack python -m bench.probes.issue9 dbout --seconds 5 [--blackhole]
    STACK_DIR=/work/main/.stack python -m bench.probes.issue9 brokerout --seconds 20
    STACK_DIR=/work/main/.stack python -m bench.probes.issue9 kill9 --service matching|enrollment
    STACK_DIR=/work/main/.stack python -m bench.probes.issue9 api
"""

# This module is the command line (its docstring is the --help text); each family of faults is a module of
# its own (issue9_poison, issue9_outages, issue9_api), on what they share in issue9_common.

from __future__ import annotations

import argparse
import asyncio
import os
import time

from bench.probes.issue9_api import api
from bench.probes.issue9_outages import brokerout, dbout, kill9
from bench.probes.issue9_poison import VARIANTS, poison


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="check", required=True)
    p = sub.add_parser("poison")
    p.add_argument("--keep-for-replay", action="store_true")
    p.add_argument("--set", choices=sorted(VARIANTS), default="basic")
    p.add_argument("--other-programs", type=int, default=0, help="programs (keys) enrolled besides the poisoned one")
    d = sub.add_parser("dbout")
    d.add_argument("--seconds", type=float, default=5)
    d.add_argument("--size", type=int, default=5000)
    d.add_argument("--service", choices=["matching", "enrollment"], default="matching")
    d.add_argument("--cut-after", type=float, default=0.3, help="enrollment: seconds after the upload starts")
    d.add_argument("--blackhole", action="store_true", help="a partition instead of a refused connection")
    d.add_argument("--wait", type=float, default=180)
    d.add_argument("--ready-wait", type=float, default=60)
    d.add_argument("--reset-on-restore", action="store_true", help="black-holed connections reset at the restore")
    d.add_argument("--terminate", action="store_true", help="pg_terminate_backend on the service's connections")
    b = sub.add_parser("brokerout")
    b.add_argument("--seconds", type=float, default=20)
    b.add_argument("--size", type=int, default=5000)
    b.add_argument("--blackhole", action="store_true")
    b.add_argument("--relay-batch", type=int, default=200, help="ENROLLMENT_OUTBOX_BATCH_SIZE: cut mid-relay")
    b.add_argument("--wait", type=float, default=240)
    b.add_argument("--ready-wait", type=float, default=60)
    b.add_argument("--reset-on-restore", action="store_true", help="black-holed connections reset at the restore")
    k = sub.add_parser("kill9")
    k.add_argument("--service", choices=["matching", "enrollment"], default="matching")
    k.add_argument("--size", type=int, default=5000)
    k.add_argument("--relay-batch", type=int, default=200)
    k.add_argument("--during-upload", type=float, default=0.0, help="kill this many seconds into the upload")
    a = sub.add_parser("api")
    a.add_argument("--good", type=int, default=1000)
    a.add_argument("--bad-rounds", type=int, default=10)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    asyncio.run(
        {"poison": poison, "dbout": dbout, "brokerout": brokerout, "kill9": kill9, "api": api}[args.check](args)
    )


if __name__ == "__main__":
    main()
