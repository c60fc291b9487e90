"""Transactional outbox: the event is stored with the state change, a relay publishes it later.

Why: writing the database and then publishing is two separate hopes; a crash between them loses or
invents an event. Here the row commits or rolls back with the state, and the relay publishes rows
in id order at least once; consumers de-duplicate on the event id.

Id order is per-key order only if ids of one key commit in id order. A BIGSERIAL is drawn at insert,
not at commit: two transactions writing the same key could commit the later id first, and the relay
would publish it before the earlier one. So every writer takes a transaction-scoped advisory lock per
(topic, key) *before* inserting (:func:`lock_outbox_keys`): a second writer of the key waits until the
first commits or rolls back, and only then draws its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterable

import asyncpg
from aiokafka import AIOKafkaProducer
from opentelemetry.trace import Tracer

from contracts.envelope import Envelope, to_kafka
from runtime.logging import describe_exception
from runtime.metrics import RuntimeMetrics
from runtime.supervision import TaskStatus
from runtime.tracing import end_when_acked, start_publish, traced_outbox_write

log = logging.getLogger(__name__)
_CHANNEL = "outbox_ready"
LINGER_SECONDS = 0.005


def _row(env: Envelope) -> tuple[uuid.UUID, str, str, str, bytes]:
    record = to_kafka(env)
    headers = json.dumps({k: v.decode() for k, v in record.headers})
    return uuid.UUID(env.id), record.topic, record.key.decode(), headers, record.value


# Keys are spread over a bounded number of locks per topic, so a batch of many keys never needs more
# than this many locks (Postgres' lock table is finite); two keys sharing a stripe only wait for each other.
_STRIPES = 1024


def _lock_id(topic: str, key: str) -> int:
    """A stable signed 64-bit advisory-lock id of (topic, stripe of key); the same in every process."""
    stripe = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % _STRIPES
    digest = hashlib.blake2b(f"outbox\0{topic}\0{stripe}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _lock_ids(conn: asyncpg.Connection, ids: Iterable[int]) -> None:
    # Sorted, so that two writers of overlapping key sets take the locks in one global order: no deadlock.
    # unnest() yields the array in order, so the locks are taken in that order, in one round trip.
    ordered = sorted(set(ids))
    if ordered:
        await conn.execute("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", ordered)


# The locks come first (the materialised CTE is read before any row reaches the INSERT, so every id is
# drawn under them) and the rows keep their order.
_LOCK_INSERT = (
    "WITH locked AS MATERIALIZED (SELECT count(pg_advisory_xact_lock(k)) AS n FROM unnest($1::bigint[]) AS k),"
    " added AS (INSERT INTO outbox (event_id, topic, key, headers, payload)"
    " SELECT r.e, r.t, r.k, r.h::jsonb, r.p FROM locked,"
    " unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::bytea[]) WITH ORDINALITY AS r(e, t, k, h, p, i)"
    " ORDER BY r.i RETURNING 1)"
    " SELECT count(*) FROM added"
)


async def lock_outbox_keys(conn: asyncpg.Connection, topic: str, keys: Iterable[str]) -> None:
    """Take the per-key order locks; call in the transaction, before writing outbox rows some other way
    (e.g. an own COPY). :func:`add_to_outbox` does this itself. Held until the transaction ends."""
    await _lock_ids(conn, (_lock_id(topic, k) for k in set(keys)))


@traced_outbox_write  # an "outbox write" span whose traceparent the rows keep (runtime/tracing.py)
async def add_to_outbox(conn: asyncpg.Connection, *envelopes: Envelope) -> None:
    """Call inside the transaction that changes the state the events describe.

    Waits for any other open transaction that wrote an event of the same (topic, key): ids of a key
    are drawn in commit order, so the relay publishes them in order. Pass all of a transaction's events
    in one call, as late in the transaction as possible: the locks are then taken once, in a global order
    (no deadlock between writers), and held only for the rest of the transaction.
    """
    if not envelopes:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("add_to_outbox must run inside the transaction of the state change")
    rows = [_row(env) for env in envelopes]
    lock_ids = sorted({_lock_id(topic, key) for topic, key in {(r[1], r[2]) for r in rows}})
    if len(rows) > 50:
        await _lock_ids(conn, lock_ids)
        await conn.copy_records_to_table(
            "outbox", records=rows, columns=["event_id", "topic", "key", "headers", "payload"]
        )
        await conn.execute("SELECT pg_notify($1, '')", _CHANNEL)
    else:
        # Lock and insert in one round trip: the key locks are then held only for this statement and
        # the commit, which is what many concurrent writers of one key queue for. No NOTIFY: it takes
        # a database-wide lock at commit, inside that queue; the relay polls every poll_seconds.
        await conn.execute(_LOCK_INSERT, lock_ids, *(list(column) for column in zip(*rows, strict=True)))


def make_producer(bootstrap: str, client_id: str, *, request_timeout_ms: int = 30_000) -> AIOKafkaProducer:
    """Idempotent, acks=all: a retried send is not duplicated and per-partition order is kept."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=request_timeout_ms,
    )


class OutboxRelay:
    """Publishes unpublished outbox rows in id order; one active relay per schema (advisory lock)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer,
        *,
        schema: str,
        metrics: RuntimeMetrics | None = None,
        batch_size: int = 1000,
        poll_seconds: float = 0.5,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        retention_hours: float | None = None,
        purge_every_seconds: float = 60.0,
        ack_timeout_seconds: float = 30.0,
        tracer: Tracer | None = None,
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._schema = schema
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._retention_hours = retention_hours
        self._purge_every = purge_every_seconds
        self._ack_timeout = ack_timeout_seconds
        self._tracer = tracer  # None: tracing off, no span work per row
        self._next_purge = 0.0
        self._wake = asyncio.Event()
        self._stopping = False
        self._status = TaskStatus("outbox_relay")

    async def publish_pending(self, conn: asyncpg.Connection) -> int:
        """One batch: send every row, wait for every ack, then mark them published.

        A crash after sending and before marking re-sends the batch: at least once, never lost.
        """
        rows = await conn.fetch(
            "SELECT id, topic, key, headers, payload FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1",
            self._batch_size,
        )
        if not rows:
            return 0
        futures = []
        for r in rows:
            headers = [(k, v.encode()) for k, v in json.loads(r["headers"]).items()]
            span = start_publish(self._tracer, r["topic"], headers) if self._tracer else None
            futures.append(
                await self._producer.send(r["topic"], value=r["payload"], key=r["key"].encode(), headers=headers)
            )
            if span is not None:
                end_when_acked(span, futures[-1])
        # The idempotent producer retries a send for as long as the broker is away: bounded here, so the
        # relay reports the outage (readiness) and starts over; a late ack of the old send only adds a
        # duplicate after the original, which consumers skip.
        await asyncio.wait_for(asyncio.gather(*futures), self._ack_timeout)
        await self.before_mark(len(rows))
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
        )
        if self._metrics:
            for r in rows:
                self._metrics.outbox_published.labels(r["topic"]).inc()
        return len(rows)

    async def run(self, status: TaskStatus | None = None) -> None:
        """Loop until stopped. Any error (database gone, broker unreachable, a send that failed) is
        logged by type only, never with row content, shown in ``status`` (readiness) until a publishing
        pass succeeds, and the loop starts over on a fresh connection after a back-off: unmarked rows
        are sent again (at least once), nothing is skipped."""
        self._status = status or self._status
        backoff = self._min_backoff
        while not self._stopping:
            try:
                await self._lead_and_publish()
                backoff = self._min_backoff
            except Exception as exc:
                if self._metrics:
                    self._metrics.outbox_relay_errors.labels(type(exc).__name__).inc()
                self._status.failing(describe_exception(exc)[:300])
                log.error(
                    "outbox relay failed; starting over after a back-off",
                    exc_info=exc,
                    extra={"retry_in_seconds": round(backoff, 2)},
                )
                await self._sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)

    async def _lead_and_publish(self) -> None:
        """Hold the leader lock, publish, sleep until notified or polled; returns when stopped."""
        async with self._pool.acquire() as conn:
            clean = False
            await conn.add_listener(_CHANNEL, self._on_notify)
            try:
                while not self._stopping:
                    if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"relay:{self._schema}"):
                        break
                    await self._sleep()
                while not self._stopping:
                    sent = await self.publish_pending(conn)
                    self._status.ok()
                    if sent < self._batch_size:
                        if self._metrics:  # measured when idle, so the count never slows a backlog down
                            self._metrics.outbox_pending.set(await pending_count(conn))
                        await self._purge_when_due(conn)
                        await self._sleep()
                        # let a burst of single writes (one notify each) gather into one batch
                        await asyncio.sleep(LINGER_SECONDS)
                clean = True
            finally:
                try:
                    await conn.remove_listener(_CHANNEL, self._on_notify)
                    await conn.execute("SELECT pg_advisory_unlock_all()")
                except Exception:
                    clean = False
                if not clean:
                    # The session may still hold the leader lock: never hand it back to the pool. (A lost
                    # connection has already left the pool, and terminate() then has nothing to do.)
                    with contextlib.suppress(Exception):
                        conn.terminate()

    async def _purge_when_due(self, conn: asyncpg.Connection) -> None:
        """Published rows are only history: delete them after the retention period, when idle, at most
        once per ``purge_every_seconds``, so the table stays small without slowing a backlog."""
        if not self._retention_hours or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + self._purge_every
        await purge_published(conn, self._retention_hours)

    async def before_mark(self, sent: int) -> None:
        """Called when a batch is on Kafka and not yet marked: a seam for fault-injection tests."""

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll_seconds if seconds is None else seconds)
        self._wake.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


async def pending_count(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return value


PURGE_BATCH = 10_000


async def purge_published(conn: asyncpg.Connection, older_than_hours: float) -> int:
    """Delete rows published more than ``older_than_hours`` ago; unpublished rows are never touched.

    In batches, yielding between them, so a first purge of a long-grown table neither holds the relay
    (and the events behind it) for long nor writes one huge transaction."""
    total = 0
    while True:
        status: str = await conn.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
            " WHERE published_at < now() - make_interval(secs => $1) LIMIT $2)",
            older_than_hours * 3600.0,
            PURGE_BATCH,
        )
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < PURGE_BATCH:
            return total
        await asyncio.sleep(0)


BACKLOG_COUNT_LIMIT = 100_000
"""The backlog is counted up to this many rows, so a scrape during a large backlog stays cheap."""

_BACKLOG = (
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL LIMIT $1) AS p),"
    " coalesce((SELECT extract(epoch FROM clock_timestamp() - created_at) FROM outbox"
    " WHERE published_at IS NULL ORDER BY id LIMIT 1), 0)::float8"
)


async def outbox_backlog(conn: asyncpg.Connection) -> tuple[int, float]:
    """Rows waiting to be published (up to :data:`BACKLOG_COUNT_LIMIT`) and the age in seconds of the
    oldest of them (0 when none): both read from the partial index of unpublished rows."""
    row = await conn.fetchrow(_BACKLOG, BACKLOG_COUNT_LIMIT)
    assert row is not None
    return int(row[0]), float(row[1])


async def measure_backlog(pool: asyncpg.Pool, metrics: RuntimeMetrics, timeout_seconds: float = 1.0) -> None:
    """Refresh the backlog gauges, at each scrape: they then hold even while the relay is stuck (the
    oldest row's age keeps growing, which is what the alert watches). Bounded by ``timeout_seconds``:
    a database that does not answer leaves the last figures, and the scrape still answers."""
    try:
        async with asyncio.timeout(timeout_seconds), pool.acquire() as conn:
            pending, oldest_age = await outbox_backlog(conn)
    except Exception as exc:
        log.debug("outbox backlog not measured", extra={"error_type": type(exc).__name__})
        return
    metrics.set_outbox_backlog(pending, oldest_age)
