"""Matching's own operations metrics, in its service's registry (served on the same ``/metrics``):
how many runs end in each outcome and how long they take, so operations see failing or slow solves.

Runs are labelled by outcome and by dry run, never by program or person.
"""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RUN_OUTCOMES = ("completed", "failed", "cancelled")
"""``completed``: solved and recorded (published unless a dry run); ``failed``: it ended with an error
(recorded on the run); ``cancelled``: the service stopped during the run."""

RUN_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""Seconds: from a few pairs (well under a second) to a large program's time-limited solve."""


class RunMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "matching_runs_total",
            "Matching runs this process finished, by outcome (completed, failed, cancelled = the service"
            " stopped during the run) and dry_run (true, false)",
            ["outcome", "dry_run"],
            registry=registry,
        )
        self.duration = Histogram(
            "matching_run_duration_seconds",
            "From a run's start to its end (solve, any re-solve, publication), by outcome and dry_run",
            ["outcome", "dry_run"],
            buckets=RUN_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "matching_runs_in_progress", "Runs this process is solving or publishing now", registry=registry
        )
        self.orphaned = Counter(
            "matching_runs_orphaned_total",
            "Runs found without a heartbeat (their process died) and marked failed by this process",
            registry=registry,
        )
        for outcome in RUN_OUTCOMES:  # every series from 0, so the first failure shows in increase()
            for dry_run in ("true", "false"):
                self.runs.labels(outcome, dry_run)

    def finished(self, outcome: str, dry_run: bool, seconds: float) -> None:
        labels = (outcome, "true" if dry_run else "false")
        self.runs.labels(*labels).inc()
        self.duration.labels(*labels).observe(seconds)


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, RunMetrics] = weakref.WeakKeyDictionary()


def run_metrics(registry: CollectorRegistry) -> RunMetrics:
    """The run metrics of the service that owns ``registry``, registered there on first use (a metric
    name can be registered only once per registry)."""
    metrics = _BY_REGISTRY.get(registry)
    if metrics is None:
        metrics = _BY_REGISTRY[registry] = RunMetrics(registry)
    return metrics
