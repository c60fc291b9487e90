"""Run one service under uvicorn as its own process, with the probe's isolation applied first.

    python -m bench.probes.serve services.matching.app:app --port 40123

``PROBE_TOPIC_PREFIX=p9x`` renames every topic of ``contracts.topics`` to ``p9x.<name>`` before any
service module is imported, so a probe's poison records and bursts never reach the shared topics (the
lead's services and other helpers consume those). ``PROBE_KAFKA_VIA=host:port`` sends every broker
connection of the process (bootstrap and advertised addresses alike) through that address: a TCP proxy
the probe cuts to take the broker away from this service alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import os


def _rename_topics(prefix: str) -> None:
    import contracts.topics as topics

    names = ("ENROLLMENT", "MATCHING", "SESSIONS", "FEEDBACK", "ALERTS")
    for name in names:
        old = getattr(topics, name)
        setattr(topics, name, dataclasses.replace(old, name=f"{prefix}.{old.name}"))
    topics.ALL_TOPICS = tuple(getattr(topics, n) for n in names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("app")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if prefix := os.environ.get("PROBE_TOPIC_PREFIX"):
        _rename_topics(prefix)
    if via := os.environ.get("PROBE_KAFKA_VIA"):
        from tests.probe import redirect_kafka  # after the renaming: it imports contracts.topics

        redirect_kafka(via)
    import uvicorn

    uvicorn.run(args.app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                timeout_keep_alive=300)  # fmt: skip


if __name__ == "__main__":
    main()
