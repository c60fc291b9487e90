"""What the fault-injection tests share: events in an outbox, a supervised consumer of the test's own,
reading a topic to its end, and the check that the outbox, Kafka and the consumer's database agree."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypeAlias

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from conftest import ROOT, PrivateTopics, StackEndpoints, eventually, unique
from contracts.envelope import Envelope, KafkaRecord, to_kafka
from contracts.events import ParticipantWithdrawn
from contracts.topics import Topic
from runtime.consumer import EventConsumer
from runtime.db import create_pool, migrate
from runtime.metrics import RuntimeMetrics
from runtime.outbox import add_to_outbox, make_producer
from runtime.supervision import Supervisor
from runtime.tracking import Handler
from tests.probe import CONSUMER_SQL
from tests.test_runtime_delivery import _end_offsets as end_offsets

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Raw: TypeAlias = "tuple[bytes, bytes, list[tuple[str, bytes]]]"
Foreign: TypeAlias = "tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes | None]]]"
"""A record as a foreign producer may send it: the broker takes a null key, body or header value."""


def withdrawn(program: str, seq: int) -> Envelope:
    return Envelope(
        data=ParticipantWithdrawn(program_id=program, participant_id=f"p{seq:06d}", withdrawn_at=datetime.now(UTC))
    )


async def count_effects(conn: asyncpg.Connection, env: Envelope) -> None:
    """Not idempotent on its own (a plain counter): a second application would show."""
    event = env.data
    assert isinstance(event, ParticipantWithdrawn)
    await conn.execute(
        "INSERT INTO applied (event_id, program_id, participant_id) VALUES ($1, $2, $3)",
        env.id,
        event.program_id,
        event.participant_id,
    )
    await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")


HANDLERS: dict[type, Handler] = {ParticipantWithdrawn: count_effects}


async def consumer_schema(stack: StackEndpoints, scratch_schemas: list[str], name: str) -> asyncpg.Pool:
    schema = unique(name)
    scratch_schemas.append(schema)
    pool = await create_pool(stack.admin_dsn, schema)
    await migrate(pool, schema, {})
    await pool.execute(CONSUMER_SQL)
    return pool


async def outbox_with(
    stack: StackEndpoints, scratch_schemas: list[str], topic: Topic, envelopes: Sequence[Envelope]
) -> asyncpg.Pool:
    """The producer's side: events stored in an outbox (as a service would), aimed at the test's topic."""
    schema = unique("faults_src")
    scratch_schemas.append(schema)
    pool = await create_pool(stack.admin_dsn, schema)
    await migrate(pool, schema, {})
    await add_events(pool, topic, envelopes)
    return pool


async def add_events(pool: asyncpg.Pool, topic: Topic, envelopes: Sequence[Envelope]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, *envelopes)
        await conn.execute("UPDATE outbox SET topic = $1 WHERE published_at IS NULL", topic.name)


async def records_on(bootstrap: str, topic: str) -> list[Record]:
    """Everything on the topic now, from the beginning."""
    ends = await end_offsets(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p, end in ends.items() if end > 0]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[Record] = []

        async def caught_up() -> bool:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                found.extend(records)
            positions = [await consumer.position(tp) for tp in tps]
            return all(pos >= ends[tp.partition] for pos, tp in zip(positions, tps, strict=True))

        await eventually(caught_up, 60, f"reading {topic} to its end")
        return found
    finally:
        await consumer.stop()


def ce_ids(records: Sequence[Record]) -> set[str]:
    return {v.decode() for r in records for k, v in r.headers if k == "ce_id"}


async def assert_counts_agree(src: asyncpg.Pool, dst: asyncpg.Pool, bootstrap: str, topic: Topic, total: int) -> None:
    """Outbox events == distinct ids on Kafka == effects == tracking records; nothing dead-lettered."""
    outbox_ids = {str(r["event_id"]) for r in await src.fetch("SELECT event_id FROM outbox")}
    assert len(outbox_ids) == total
    on_kafka = ce_ids(await records_on(bootstrap, topic.name))
    assert on_kafka == outbox_ids, "every stored event reached Kafka, and nothing else did"
    applied = [r["event_id"] for r in await dst.fetch("SELECT event_id FROM applied")]
    assert len(applied) == len(set(applied)) == total, "each event applied exactly once"
    assert set(applied) == outbox_ids
    assert await dst.fetchval("SELECT n FROM counter") == total
    assert await dst.fetchval("SELECT count(*) FROM processed_events") == total
    assert await dst.fetchval("SELECT count(*) FROM dead_letters") == 0
    assert sum((await end_offsets(bootstrap, topic.dead_letter)).values()) == 0, "nothing dead-lettered"


def applied_at_least(pool: asyncpg.Pool, expected: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM applied") >= expected)

    return check


@contextlib.asynccontextmanager
async def consuming(
    stack: StackEndpoints, pool: asyncpg.Pool, topic: Topic, metrics: RuntimeMetrics, *, batch_size: int = 500
) -> AsyncIterator[tuple[EventConsumer, Supervisor]]:
    """A consumer in this process, supervised as a service runs it."""
    producer = make_producer(stack.kafka_bootstrap, "faults")
    await producer.start()
    consumer = EventConsumer(
        name=unique("faults"),
        pool=pool,
        producer=producer,
        topics=(topic,),
        handlers=HANDLERS,
        metrics=metrics,
        batch_size=batch_size,
    )
    supervisor = Supervisor(errors=metrics.background_errors)
    supervisor.start(f"consumer:{consumer.name}", partial(consumer.run, stack.kafka_bootstrap), graceful=True)
    try:
        yield consumer, supervisor
    finally:
        consumer.stop()
        await supervisor.stop()
        await producer.stop()


def sample(metrics: RuntimeMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def send_raw(bootstrap: str, topic: str, records: Sequence[Foreign], *, partition: int | None = None) -> None:
    """Produce as a foreign producer would (no contracts), with room for a message near the broker's limit."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024, acks="all")
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers, partition=partition)
    finally:
        await producer.stop()


def with_id(headers: list[tuple[str, bytes]], event_id: str) -> list[tuple[str, bytes]]:
    return [(k, event_id.encode() if k == "ce_id" else v) for k, v in headers]


@dataclass(frozen=True)
class FaultCase:
    """What each fault test of issue 9's probe starts from: a topic of its own (two partitions, and its
    ``.dlt``), a consumer's schema (``pool`` on it) and a valid event for the topic."""

    stack: StackEndpoints
    topic: Topic
    pool: asyncpg.Pool
    schema: str
    good: KafkaRecord

    @property
    def good_raw(self) -> Raw:
        return (self.good.key, self.good.value, self.good.headers)

    async def send(self, records: Sequence[Foreign], *, partition: int | None = None) -> None:
        await send_raw(self.stack.kafka_bootstrap, self.topic.name, records, partition=partition)


@pytest.fixture
async def fault_case(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics
) -> AsyncIterator[FaultCase]:
    topic = await private_topics("probe9", partitions=2)
    pool = await consumer_schema(stack, scratch_schemas, "probe9")
    schema = str(await pool.fetchval("SELECT current_schema()"))
    try:
        yield FaultCase(stack, topic, pool, schema, to_kafka(withdrawn(unique("prg"), 1)))
    finally:
        await pool.close()


def deadletters_cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "runtime.deadletters", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
