"""Prometheus metrics of the runtime, named with the service prefix and base units.

One registry per service instance (not the global one) so several services can share a test process.
Labels name topics and outcomes, never participants.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class RuntimeMetrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        p = service
        self.outbox_published = Counter(
            f"{p}_outbox_published_total", "Events relayed from the outbox to Kafka", ["topic"], registry=self.registry
        )
        self.outbox_pending = Gauge(
            f"{p}_outbox_pending_events", "Outbox rows not yet published (relay lag)", registry=self.registry
        )
        self.outbox_relay_errors = Counter(
            f"{p}_outbox_relay_errors_total",
            "Relay failures (database or broker), by exception type; the relay backs off and starts over",
            ["error"],
            registry=self.registry,
        )
        self.consumed = Counter(
            f"{p}_events_consumed_total",
            "Events received, by outcome (applied, duplicate, dead_lettered, skipped = unknown type, ignored ="
            " no handler, retried = a batch or event applied again after a failure)",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            f"{p}_event_batch_seconds",
            "Time to apply one polled batch of events (parse, transaction, dead letters)",
            ["consumer"],
            registry=self.registry,
        )
        self.dead_letters_kept = Counter(
            f"{p}_dead_letters_kept_total",
            "Dead letters kept in the dead_letters table (copy not publishable, or its body cut)",
            ["topic"],
            registry=self.registry,
        )
        self.background_errors = Counter(
            f"{p}_background_task_errors_total",
            "Failures of a supervised background task (it restarts after a back-off)",
            ["task"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            f"{p}_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
