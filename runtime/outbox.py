"""Transactional outbox: the event is stored with the state change, a relay publishes it later.

Why: writing the database and then publishing is two separate hopes; a crash between them loses or
invents an event. Here the row commits or rolls back with the state, and the relay publishes rows
in id order (so in order per key) at least once; consumers de-duplicate on the event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid

import asyncpg
from aiokafka import AIOKafkaProducer

from contracts.envelope import Envelope, to_kafka
from runtime.metrics import RuntimeMetrics

log = logging.getLogger(__name__)
_CHANNEL = "outbox_ready"


def _row(env: Envelope) -> tuple[uuid.UUID, str, str, str, bytes]:
    record = to_kafka(env)
    headers = json.dumps({k: v.decode() for k, v in record.headers})
    return uuid.UUID(env.id), record.topic, record.key.decode(), headers, record.value


async def add_to_outbox(conn: asyncpg.Connection, *envelopes: Envelope) -> None:
    """Call inside the transaction that changes the state the events describe."""
    if not envelopes:
        return
    rows = [_row(env) for env in envelopes]
    if len(rows) > 50:
        await conn.copy_records_to_table(
            "outbox", records=rows, columns=["event_id", "topic", "key", "headers", "payload"]
        )
    else:
        await conn.executemany(
            "INSERT INTO outbox (event_id, topic, key, headers, payload) VALUES ($1, $2, $3, $4::jsonb, $5)", rows
        )
    await conn.execute("SELECT pg_notify($1, '')", _CHANNEL)


def make_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    """Idempotent, acks=all: a retried send is not duplicated and per-partition order is kept."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
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
    ) -> None:
        self._pool = pool
        self._producer = producer
        self._schema = schema
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._stopping = False

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
            futures.append(
                await self._producer.send(r["topic"], value=r["payload"], key=r["key"].encode(), headers=headers)
            )
        await asyncio.gather(*futures)
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
        )
        if self._metrics:
            for r in rows:
                self._metrics.outbox_published.labels(r["topic"]).inc()
        return len(rows)

    async def run(self) -> None:
        """Loop until stopped: hold the leader lock, publish, sleep until notified or polled."""
        async with self._pool.acquire() as conn:
            await conn.add_listener(_CHANNEL, self._on_notify)
            try:
                while not self._stopping:
                    if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", f"relay:{self._schema}"):
                        break
                    await self._sleep()
                while not self._stopping:
                    sent = await self.publish_pending(conn)
                    if sent < self._batch_size:
                        if self._metrics:  # measured when idle, so the count never slows a backlog down
                            self._metrics.outbox_pending.set(await pending_count(conn))
                        await self._sleep()
            finally:
                with contextlib.suppress(Exception):
                    await conn.remove_listener(_CHANNEL, self._on_notify)
                    await conn.execute("SELECT pg_advisory_unlock_all()")

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _sleep(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
        self._wake.clear()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()


async def pending_count(conn: asyncpg.Connection) -> int:
    value: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return value
