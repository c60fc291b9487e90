"""Replaying topics into the read models in batches: what the rebuild command runs.

The live service applies events one at a time with the runtime's ``EventConsumer``; a rebuild reads the
whole history, so it reads in batches and applies each batch in one transaction with
:func:`~services.metrics.adapters.projection.apply_batch` (proved equal to the per-event handlers):

- it consumes as the consumer group the service will use on the new schema, with the same tracking
  record (``processed_events`` under the same consumer name), so a service started on the rebuilt
  schema continues from where the replay stopped and de-duplicates anything replayed twice;
- per batch: record the event ids, apply the ones not seen before, commit; only then are the offsets
  committed to Kafka, so a crash replays a batch instead of losing it;
- a record that cannot be parsed is counted and skipped (the live consumer dead-lettered it already);
- a transient database failure retries the same batch, held in memory, with a back-off.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.envelope import Envelope, InvalidMessage, from_kafka
from contracts.topics import Topic
from services.metrics.adapters.projection import WRITES, apply_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Replayed:
    records: int
    applied: int
    skipped_unreadable: int
    seconds_from_first_batch: float
    """time from the first batch fetched to the end: the replay without the consumer group's join"""


async def _apply(pool: asyncpg.Pool, consumer_name: str, envelopes: list[Envelope]) -> int:
    async with pool.acquire() as conn, conn.transaction():
        fresh = {
            r["event_id"]
            for r in await conn.fetch(
                "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::text[])"
                " ON CONFLICT DO NOTHING RETURNING event_id",
                consumer_name,
                list(dict.fromkeys(e.id for e in envelopes)),
            )
        }
        todo = []
        for env in envelopes:
            if env.id in fresh:
                fresh.discard(env.id)  # a duplicate inside the batch is applied once
                todo.append(env)
        await apply_batch(conn, todo)
        return len(todo)


async def replay(
    pool: asyncpg.Pool,
    bootstrap: str,
    topics: tuple[Topic, ...],
    *,
    group: str,
    targets: dict[TopicPartition, int],
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 3600,
    batch: int = 5000,
) -> Replayed:
    """Consume ``topics`` as ``group`` from its committed offsets (earliest for a new group) until every
    partition in ``targets`` reached its target offset."""
    consumer = AIOKafkaConsumer(
        *[t.name for t in topics],
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    records = applied = unreadable = 0
    first_batch: float | None = None
    total = sum(targets.values())
    deadline = time.monotonic() + timeout
    try:
        while True:
            positions = {tp: await consumer.position(tp) for tp in consumer.assignment() if tp in targets}
            reached = sum(min(positions.get(tp, 0), end) for tp, end in targets.items())
            if progress:
                progress(reached, total)
            if len(positions) == len(targets) and all(positions[tp] >= end for tp, end in targets.items()):
                since = time.monotonic() - first_batch if first_batch is not None else 0.0
                return Replayed(records, applied, unreadable, since)
            if time.monotonic() > deadline:
                raise TimeoutError(f"replay as {group} did not catch up in {timeout}s ({reached}/{total})")
            fetched = await consumer.getmany(timeout_ms=500, max_records=batch)
            envelopes: list[Envelope] = []
            for tp_records in fetched.values():
                for record in tp_records:
                    records += 1
                    try:
                        env = from_kafka(record.headers, record.value)
                    except InvalidMessage:
                        unreadable += 1
                        continue
                    if type(env.data) in WRITES:
                        envelopes.append(env)
            if not fetched:
                continue
            first_batch = first_batch or time.monotonic()
            applied += await _with_retries(functools.partial(_apply, pool, group, envelopes))
            await consumer.commit()
    finally:
        await consumer.stop()


async def _with_retries(work: Callable[[], Awaitable[int]]) -> int:
    """A transient failure (connection lost, deadlock) retries for as long as it lasts."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await work()
        except (asyncpg.PostgresConnectionError, OSError, asyncpg.DeadlockDetectedError) as exc:
            log.warning("replay batch failed, will retry", extra={"error_type": type(exc).__name__})
            await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
