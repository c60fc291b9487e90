"""Prometheus metrics of the runtime, named with the service prefix and base units.

One registry per service instance (not the global one) so several services can share a test process.
Labels name topics and outcomes, never participants; HTTP requests are labelled by route *template*
(``/programs/{program_id}/runs``), never by a path that holds an id, and unknown methods are grouped.
``deploy/grafana/mentoring-operations.json`` and ``deploy/prometheus/alerts.yml`` are built on these
names; ``tests/test_prometheus_rules.py`` checks that they reference nothing a service does not expose.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds; up to a minute, for ``POST /programs/{id}/runs`` with ``"wait": true``."""

EVENT_OUTCOMES = ("applied", "duplicate", "skipped", "ignored", "retried", "dead_lettered")
"""The outcomes of ``<service>_events_consumed_total``; each starts at 0 per topic when a consumer starts,
so ``increase()`` sees the first dead letter too (a series born at 1 has no increase)."""

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Any other method is labelled ``other``: a label value a client chooses must not grow the series."""


class RuntimeMetrics:
    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        p = service
        self.outbox_published = Counter(
            f"{p}_outbox_published_total", "Events relayed from the outbox to Kafka", ["topic"], registry=self.registry
        )
        self.outbox_pending = Gauge(
            f"{p}_outbox_pending_events",
            "Outbox rows not yet published (relay lag; counted up to 100,000), measured at each scrape",
            registry=self.registry,
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
        self.http_duration = Histogram(
            f"{p}_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template (unmatched when no"
            " route answered: an unknown path, a 401 before routing), method and status; an unhandled"
            " exception counts as status 500",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            f"{p}_consumer_lag_events",
            "Records between a consumer group's position and the end of each assigned partition, as last"
            " seen by the consumer (refreshed at most once a second while it polls)",
            ["consumer", "topic", "partition"],
            registry=self.registry,
        )
        self.outbox_oldest_age = Gauge(
            f"{p}_outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox row not yet published (0 when none), measured at each scrape",
            registry=self.registry,
        )
        self.ready = Gauge(
            f"{p}_ready",
            "1 when /health/ready answers 200 (database, broker and every supervised task fine), else 0;"
            " evaluated at each scrape",
            registry=self.registry,
        )
        self.readiness_check = Gauge(
            f"{p}_readiness_check",
            "Each readiness check at the last scrape: 1 passing, 0 failing (database, broker, outbox_relay,"
            " consumer:<group>, a background task's name)",
            ["check"],
            registry=self.registry,
        )
        self._lagging: dict[str, set[tuple[str, int]]] = {}

    def set_consumer_lag(self, consumer: str, lags: Mapping[tuple[str, int], int]) -> None:
        """The lag of every partition ``consumer`` holds now; partitions it no longer holds (a rebalance
        moved them, or it stopped) lose their series, so no stale lag outlives an assignment."""
        for topic, partition in self._lagging.get(consumer, set()) - lags.keys():
            self.consumer_lag.remove(consumer, topic, str(partition))
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(consumer, topic, str(partition)).set(lag)
        self._lagging[consumer] = set(lags)

    def consumer_started(self, topics: Iterable[str]) -> None:
        for topic in topics:
            for outcome in EVENT_OUTCOMES:
                self.consumed.labels(topic, outcome)
            self.dead_letters_kept.labels(topic)

    def set_readiness(self, checks: Mapping[str, bool]) -> None:
        self.ready.set(1 if all(checks.values()) else 0)
        for check, ok in checks.items():
            self.readiness_check.labels(check).set(1 if ok else 0)

    def set_outbox_backlog(self, pending: int, oldest_age_seconds: float) -> None:
        self.outbox_pending.set(pending)
        self.outbox_oldest_age.set(oldest_age_seconds)
