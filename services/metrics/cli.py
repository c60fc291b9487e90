"""``python -m services.metrics.cli rebuild --schema <fresh>``: replay every topic from offset zero into a
fresh schema, then point the service at it (``METRICS_DB_SCHEMA=<fresh>``).

The fresh schema's consumer group is new, so it starts at the earliest offsets; the command notes the
end of every partition when it starts and returns once it has applied and committed past all of them.
It runs the very projection the service runs (the runtime's batched consumer with the same handlers and
the same tracking record, :func:`project_until_caught_up`), so a service started on the new schema goes
on from there as the same consumer group, and a record that cannot be applied is dead-lettered as the
live consumer does. The running service keeps serving from its old schema meanwhile. Alert state is
rebuilt too: it is projected from the alerts topic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from contracts.topics import Topic
from runtime.consumer import EventConsumer
from runtime.db import create_pool, migrate
from runtime.heap import settle_heap
from runtime.kafka import ensure_topics
from runtime.outbox import make_producer
from services.metrics.adapters.projection import BATCHED_HANDLERS
from services.metrics.app import PROJECTED_TOPICS, MetricsSettings, consumer_name

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
TABLES = ("programs", "participants", "groups", "sessions_held", "feedback", "alerts")


class NotFresh(Exception):
    pass


@dataclass(frozen=True)
class Rebuilt:
    schema: str
    events: int
    seconds: float
    rows: dict[str, int]


async def end_offsets(bootstrap: str, topics: tuple[Topic, ...] = PROJECTED_TOPICS) -> dict[TopicPartition, int]:
    """The end of every non-empty partition of ``topics`` now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(t.name, p) for t in topics for p in sorted(consumer.partitions_for_topic(t.name) or ())]
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    return {tp: end for tp, end in ends.items() if end > starts[tp]}


async def committed(bootstrap: str, group: str, admin: AIOKafkaAdminClient | None = None) -> dict[TopicPartition, int]:
    """The group's committed offsets, through ``admin`` when given (a caller polling keeps one open)."""
    if admin is not None:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items()}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await committed(bootstrap, group, admin)
    finally:
        await admin.close()


async def forget_offsets(bootstrap: str, group: str, topics: tuple[Topic, ...] = PROJECTED_TOPICS) -> None:
    """A schema name used before (then dropped) would find its consumer group's offsets at the end of the
    topics and replay nothing: the group of a fresh schema starts from zero, so its offsets are moved back
    to the beginning of every partition (the group has no members while the rebuild has not started)."""
    done = await committed(bootstrap, group)
    if not done:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = list(done)
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in starts.items()})
        log.warning("consumer group %s had offsets from an earlier schema of that name: moved to the start", group)
    finally:
        await consumer.stop()


async def project_until_caught_up(
    pool: asyncpg.Pool,
    settings: MetricsSettings,
    *,
    topics: tuple[Topic, ...] = PROJECTED_TOPICS,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 3600,
) -> int:
    """Runs the projection (a new consumer group named after the schema, from the earliest offsets) until
    it has committed past the end every partition had when it started; returns that many events."""
    group = consumer_name(settings.db_schema)
    targets = await end_offsets(settings.kafka_bootstrap, topics)
    total = sum(targets.values())
    producer = make_producer(settings.kafka_bootstrap, f"{group}-replay")
    await producer.start()
    consumer = EventConsumer(
        name=group,
        pool=pool,
        producer=producer,
        topics=topics,
        handlers=BATCHED_HANDLERS,
        max_attempts=settings.consumer_max_attempts,
        offset_reset="earliest",
    )
    running = asyncio.create_task(consumer.run(settings.kafka_bootstrap), name=f"{group}-replay")
    # one admin client for the whole catch-up: a new one every poll cost the replay's process 4 % of its CPU
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        await admin.start()
        deadline = time.monotonic() + timeout
        while True:
            done = await committed(settings.kafka_bootstrap, group, admin)
            if progress:
                progress(sum(min(done.get(tp, 0), end) for tp, end in targets.items()), total)
            if all(done.get(tp, 0) >= end for tp, end in targets.items()):
                return total
            if time.monotonic() > deadline:
                raise TimeoutError(f"the projection into {settings.db_schema} did not catch up in {timeout}s")
            await asyncio.sleep(0.1)
            if running.done():  # the consumer stopped on an error: say it, do not wait for the timeout
                running.result()
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
        consumer.stop()
        with contextlib.suppress(Exception):
            await running
        await producer.stop()


async def rebuild(
    settings: MetricsSettings, progress: Callable[[int, int], None] | None = None, timeout: float = 3600
) -> Rebuilt:
    """Project every topic from offset zero into ``settings.db_schema``, which must hold no read models yet."""
    started = time.monotonic()
    schema = settings.db_schema
    pool = await create_pool(settings.database_url.get_secret_value(), schema)
    try:
        async with pool.acquire() as conn:
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f'"{schema}".programs')
            if exists and await conn.fetchval(f'SELECT count(*) FROM "{schema}".programs'):
                raise NotFresh(f"schema {schema} already holds read models: rebuild into a fresh one")
        await migrate(pool, schema, {"metrics": MIGRATIONS})
        await ensure_topics(settings.kafka_bootstrap)
        await forget_offsets(settings.kafka_bootstrap, consumer_name(schema))
        total = await project_until_caught_up(pool, settings, progress=progress, timeout=timeout)
        async with pool.acquire() as conn:
            rows = {t: int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".{t}')) for t in TABLES}
        return Rebuilt(schema, total, time.monotonic() - started, rows)
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Metrics read models: rebuild from offset zero.")
    sub = parser.add_subparsers(dest="command", required=True)
    rb = sub.add_parser("rebuild", help="replay every topic from offset zero into a fresh schema")
    rb.add_argument("--schema", required=True, help="a schema with no read models yet, e.g. metrics_v2")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = MetricsSettings(db_schema=args.schema)

    def show(done: int, total: int) -> None:
        print(f"\r{done}/{total} events", end="", file=sys.stderr, flush=True)

    settle_heap()  # the collector set for batches, as in the service (runtime/heap.py)
    try:
        result = uvloop.run(rebuild(settings, show))  # the loop the service's projection runs on
    except NotFresh as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 2
    except asyncpg.InsufficientPrivilegeError:
        print(
            f"\nthe database role may not create schema {args.schema}: create it for the metrics role first"
            f" (CREATE SCHEMA {args.schema} AUTHORIZATION metrics) and run again",
            file=sys.stderr,
        )
        return 2
    print(
        f"\nrebuilt {result.schema}: {result.events} events in {result.seconds:.1f}s; rows: "
        + ", ".join(f"{k} {v}" for k, v in result.rows.items())
    )
    print(f"point the service at it: METRICS_DB_SCHEMA={result.schema}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
