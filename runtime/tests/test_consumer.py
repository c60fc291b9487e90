"""One batch through the consumer, on the real database (the dead-letter producer is a fake that keeps
what it was given): poison alone, duplicates skipped, batch handlers, infrastructure failures raised."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from conftest import PrivateTopics, StackEndpoints, eventually, unique
from contracts.envelope import Envelope, to_kafka
from contracts.events import ParticipantWithdrawn
from contracts.topics import ENROLLMENT
from runtime.consumer import EventConsumer
from runtime.db import create_pool, migrate
from runtime.metrics import RuntimeMetrics
from runtime.outbox import make_producer
from runtime.read_ahead import ReadAhead
from runtime.tracking import Handler, ParsedBatch, RejectEvent, batched, is_transient

pytestmark = pytest.mark.stack


class _Producer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.sent.append({"topic": topic, "value": value, "headers": dict(headers)})


def _records(envelopes: Sequence[Envelope], first_offset: int = 0) -> list[ConsumerRecord[bytes, bytes]]:
    out = []
    for offset, env in enumerate(envelopes, start=first_offset):
        r = to_kafka(env)
        out.append(
            ConsumerRecord(ENROLLMENT.name, 0, offset, 0, 0, r.key, r.value, None, len(r.key), len(r.value), r.headers)
        )
    return out


def _withdrawn(participant: str, program: str = "prg-1") -> Envelope:
    return Envelope(
        data=ParticipantWithdrawn(program_id=program, participant_id=participant, withdrawn_at=datetime.now(UTC))
    )


async def _assert_all_committed(stack: StackEndpoints, group: str, topic: str, partitions: int) -> None:
    checker = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await checker.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await checker.end_offsets(tps)
        assert {tp: await checker.committed(tp) for tp in tps} == ends, "every offset committed"
    finally:
        await checker.stop()


async def _publish(stack: StackEndpoints, topic: str, envelopes: Sequence[Envelope]) -> None:
    """The envelopes on the real broker, in order, before the consumer under test starts."""
    producer = make_producer(stack.kafka_bootstrap, "test-consumer")
    await producer.start()
    try:
        for env in envelopes:
            r = to_kafka(env)
            await producer.send(topic, r.value, key=r.key, headers=r.headers)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture
async def pool(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[asyncpg.Pool]:
    schema = unique("consumer")
    scratch_schemas.append(schema)
    p = await create_pool(stack.admin_dsn, schema)
    await migrate(p, schema, {})
    await p.execute("CREATE TABLE seen (seq BIGSERIAL PRIMARY KEY, participant_id TEXT NOT NULL)")
    yield p
    await p.close()


def _consumer(pool: asyncpg.Pool, handler: Handler | Any, producer: _Producer, **kw: Any) -> EventConsumer:
    return EventConsumer(
        name=unique("c"),
        pool=pool,
        producer=producer,
        topics=(ENROLLMENT,),
        handlers={ParticipantWithdrawn: handler},
        metrics=RuntimeMetrics("t"),
        min_backoff_seconds=0.01,
        **kw,
    )


async def _seen(pool: asyncpg.Pool) -> list[str]:
    return [r["participant_id"] for r in await pool.fetch("SELECT participant_id FROM seen ORDER BY seq")]


async def test_a_poison_event_is_dead_lettered_alone_and_the_rest_of_its_batch_applied_in_order(
    pool: asyncpg.Pool,
) -> None:
    async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
        assert isinstance(env.data, ParticipantWithdrawn)
        if env.data.participant_id == "p3":
            raise RejectEvent("p3 belongs to no known program")
        await conn.execute("INSERT INTO seen (participant_id) VALUES ($1)", env.data.participant_id)

    producer = _Producer()
    consumer = _consumer(pool, handler, producer)
    batch = [_withdrawn(f"p{i}") for i in range(6)]
    records = _records([*batch, batch[1]])  # the same event twice in one batch
    await consumer.process_batch(records)
    assert await _seen(pool) == ["p0", "p1", "p2", "p4", "p5"]
    [letter] = producer.sent
    assert letter["topic"] == f"{ENROLLMENT.name}.dlt"
    assert letter["headers"]["dlt_original_offset"] == b"3"
    assert letter["headers"]["dlt_reason"] == b"rejected: RejectEvent: p3 belongs to no known program"

    await consumer.process_batch(_records(batch[4:], first_offset=7))  # redelivered across batches
    assert await _seen(pool) == ["p0", "p1", "p2", "p4", "p5"]
    m = consumer.metrics
    assert m is not None
    topic = ENROLLMENT.name
    assert m.registry.get_sample_value("t_events_consumed_total", {"topic": topic, "outcome": "applied"}) == 5
    assert m.registry.get_sample_value("t_events_consumed_total", {"topic": topic, "outcome": "duplicate"}) == 3
    assert m.registry.get_sample_value("t_events_consumed_total", {"topic": topic, "outcome": "dead_lettered"}) == 1


async def test_two_members_applying_the_same_batch_at_once_apply_each_event_once(pool: asyncpg.Pool) -> None:
    """A rebalance may leave two members of a group applying the same records: the first one's plain
    insert of the ids holds the key, the second's waits for it, is refused once it commits, and that
    batch is applied again as all duplicates."""
    entered = asyncio.Event()

    async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
        assert isinstance(env.data, ParticipantWithdrawn)
        entered.set()
        await asyncio.sleep(0.05)  # the other member's insert of the same ids meets this transaction
        await conn.execute("INSERT INTO seen (participant_id) VALUES ($1)", env.data.participant_id)

    first = _consumer(pool, handler, _Producer())
    second = dataclasses.replace(first, metrics=RuntimeMetrics("t"))
    records = _records([_withdrawn(f"p{i}") for i in range(3)])

    async def late() -> None:
        await entered.wait()
        await second.process_batch(records)

    await asyncio.gather(first.process_batch(records), late())
    assert await _seen(pool) == ["p0", "p1", "p2"]
    assert second.metrics is not None
    samples = {
        o: second.metrics.registry.get_sample_value("t_events_consumed_total", {"topic": ENROLLMENT.name, "outcome": o})
        for o in ("applied", "duplicate")
    }
    assert samples == {"applied": None, "duplicate": 3}


async def test_a_failing_batch_handler_is_narrowed_to_its_poison_event(pool: asyncpg.Pool) -> None:
    calls: list[int] = []

    async def many(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        calls.append(len(envelopes))
        ids = [e.data.participant_id for e in envelopes]  # type: ignore[attr-defined]
        if "bad" in ids:
            raise ValueError("a value this handler cannot store")
        await conn.executemany("INSERT INTO seen (participant_id) VALUES ($1)", [(i,) for i in ids])

    producer = _Producer()
    consumer = _consumer(pool, batched(many), producer, max_attempts=2)
    await consumer.process_batch(_records([_withdrawn(p) for p in ("a", "b", "bad", "c")]))
    assert await _seen(pool) == ["a", "b", "c"]
    assert calls[0] == 4, "one call for the whole run first"
    assert 1 in calls, "then one event at a time, to find the poison"
    [letter] = producer.sent
    assert letter["headers"]["dlt_reason"] == b"failed 2 times: ValueError"
    assert letter["headers"]["dlt_attempts"] == b"2"


async def test_an_infrastructure_failure_is_raised_for_a_retry_and_never_dead_lettered(pool: asyncpg.Pool) -> None:
    async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
        raise ConnectionResetError("connection to the database lost")

    producer = _Producer()
    consumer = _consumer(pool, handler, producer, max_attempts=1)
    with pytest.raises(ConnectionResetError) as raised:
        await consumer.process_batch(_records([_withdrawn("p1")]))
    assert is_transient(raised.value)
    assert producer.sent == []
    assert await pool.fetchval("SELECT count(*) FROM processed_events") == 0, "rolled back: applied on retry"


class _Overlapping(EventConsumer):
    """Counts the batches parsed while another batch is being applied (the overlap the test is about)."""

    applying = 0
    parsed_while_applying = 0

    async def parse_batch(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> ParsedBatch:
        parsed = await super().parse_batch(records)
        self.parsed_while_applying += self.applying > 0
        return parsed

    async def apply_batch(self, parsed: ParsedBatch) -> None:
        self.applying += 1
        try:
            await super().apply_batch(parsed)
        finally:
            self.applying -= 1


async def test_a_failure_of_the_batch_in_flight_rewinds_the_batch_parsed_meanwhile_too(
    stack: StackEndpoints, pool: asyncpg.Pool, private_topics: PrivateTopics
) -> None:
    """The poll loop parses the next batch while the one before it is in its transaction. When that
    transaction fails for an infrastructure reason, both are read again: on the real broker, every event
    of every partition is applied once, in order per key, and every offset is committed in the end."""
    topic = await private_topics("overlap", partitions=3)
    programs = [f"prg-{i}" for i in range(9)]  # keys spread over the three partitions
    total = 900
    await _publish(stack, topic.name, [_withdrawn(f"p{n:04d}", programs[n % 9]) for n in range(total)])
    failures = [0]

    async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
        event = env.data
        assert isinstance(event, ParticipantWithdrawn)
        if event.participant_id == "p0250" and failures[0] < 2:  # twice: the batch in flight fails, twice
            failures[0] += 1
            raise ConnectionResetError("connection to the database lost")
        await conn.execute(
            "INSERT INTO seen (participant_id) VALUES ($1)", f"{event.program_id}/{event.participant_id}"
        )

    metrics = RuntimeMetrics("t")
    consumer = _Overlapping(
        name=unique("overlap"), pool=pool, producer=_Producer(), topics=(topic,),
        handlers={ParticipantWithdrawn: handler}, metrics=metrics, batch_size=100, min_backoff_seconds=0.01,
    )  # fmt: skip
    task = asyncio.create_task(consumer.run(stack.kafka_bootstrap))
    try:

        async def all_applied() -> bool:
            if task.done():
                task.result()
            return int(await pool.fetchval("SELECT count(*) FROM seen")) >= total

        await eventually(all_applied, 60, "every event to be applied")
        seen = await _seen(pool)
        assert len(seen) == len(set(seen)) == total, "each event applied once"
        for program in programs:
            mine = [s for s in seen if s.startswith(f"{program}/")]
            assert mine == sorted(mine), f"{program}'s events applied in order"
        assert failures[0] == 2
        assert consumer.parsed_while_applying > 0, "batches were parsed while another was in its transaction"
        assert (
            metrics.registry.get_sample_value("t_events_consumed_total", {"topic": topic.name, "outcome": "retried"})
            or 0
        ) >= 2
    finally:
        consumer.stop()
        await task
    await _assert_all_committed(stack, consumer.name, topic.name, partitions=3)


async def test_a_member_joining_mid_catch_up_loses_nothing_and_applies_nothing_twice(
    stack: StackEndpoints, pool: asyncpg.Pool, private_topics: PrivateTopics
) -> None:
    """A second member joins while the first has batches parsed ahead: the rebalance resets every
    partition to its committed offset, the batches parsed before it are dropped and read again, and in
    the end every event is applied once, in order per key, with every offset committed."""
    topic = await private_topics("rebalance", partitions=3)
    programs = [f"prg-{i}" for i in range(9)]
    total = 1200
    await _publish(stack, topic.name, [_withdrawn(f"p{n:04d}", programs[n % 9]) for n in range(total)])

    async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
        event = env.data
        assert isinstance(event, ParticipantWithdrawn)
        await asyncio.sleep(0.005)  # slow: batches wait, parsed, until the group rebalances (heartbeats: 3 s)
        await conn.execute(
            "INSERT INTO seen (participant_id) VALUES ($1)", f"{event.program_id}/{event.participant_id}"
        )

    group = unique("rebalance")
    members = [
        _Overlapping(name=group, pool=pool, producer=_Producer(), topics=(topic,), batch_size=50,
                     handlers={ParticipantWithdrawn: handler}, metrics=RuntimeMetrics("t"))
        for _ in range(2)
    ]  # fmt: skip
    first = asyncio.create_task(members[0].run(stack.kafka_bootstrap))
    tasks = [first]
    try:

        async def progress(minimum: int) -> bool:
            for task in tasks:
                if task.done():
                    task.result()
            return int(await pool.fetchval("SELECT count(*) FROM seen")) >= minimum

        await eventually(lambda: progress(100), 60, "the first member to be under way")
        tasks.append(asyncio.create_task(members[1].run(stack.kafka_bootstrap)))
        await eventually(lambda: progress(total), 120, "every event to be applied")
        seen = await _seen(pool)
        assert len(seen) == len(set(seen)) == total, "each event applied once"
        for program in programs:
            mine = [s for s in seen if s.startswith(f"{program}/")]
            assert mine == sorted(mine), f"{program}'s events applied in order"
    finally:
        for member in members:
            member.stop()
        await asyncio.gather(*tasks)
    await _assert_all_committed(stack, group, topic.name, partitions=3)


def _with_id(record: ConsumerRecord[bytes, bytes], event_id: str) -> ConsumerRecord[bytes, bytes]:
    headers = [(k, event_id.encode() if k == "ce_id" else v) for k, v in record.headers]
    return dataclasses.replace(record, headers=headers)


@pytest.mark.parametrize("bad_id", ["evt\x00nul", "e" * 5000], ids=["nul", "5k"])
async def test_an_id_the_database_could_not_record_is_dead_lettered_alone(pool: asyncpg.Pool, bad_id: str) -> None:
    """A NUL or an id longer than an index row stopped the whole consumer (found in review): now the
    envelope refuses it, and it is dead-lettered like any unusable message."""
    applied: list[str] = []

    async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
        assert isinstance(env.data, ParticipantWithdrawn)
        applied.append(env.data.participant_id)

    producer = _Producer()
    records = _records([_withdrawn("p0"), _withdrawn("p1"), _withdrawn("p2")])
    await _consumer(pool, handler, producer).process_batch([records[0], _with_id(records[1], bad_id), records[2]])
    assert applied == ["p0", "p2"]
    [letter] = producer.sent
    assert letter["headers"]["dlt_reason"].startswith(b"ce_id must be at most 256 characters")


class _RebalancedWhilePolling(EventConsumer):
    """On its first poll the group rebalances (a real rejoin of the real group) before the poll returns,
    as when another member joins while this one waits in ``getmany``: the records that poll returns come
    from the new assignment (found in review: they were taken for stale and dropped, their offsets
    committed by the next batch, so 50 events were lost)."""

    rejoined = False

    async def _next_batch(
        self, consumer: AIOKafkaConsumer, ahead: ReadAhead, *, wait: bool
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if self.rejoined:
            return await super()._next_batch(consumer, ahead, wait=wait)
        self.rejoined = True
        before = ahead.rebalances
        consumer._coordinator.request_rejoin()

        async def rejoined() -> bool:
            return ahead.rebalances > before and bool(consumer.assignment())

        await eventually(rejoined, 30, "the rejoin")
        while True:  # the same poll goes on after the rebalance
            batch = await super()._next_batch(consumer, ahead, wait=True)
            if batch:
                return batch


async def test_records_polled_across_a_rebalance_are_applied(
    stack: StackEndpoints, pool: asyncpg.Pool, private_topics: PrivateTopics
) -> None:
    topic = await private_topics("polled", partitions=1)
    total = 200
    await _publish(stack, topic.name, [_withdrawn(f"p{n:04d}") for n in range(total)])

    async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
        assert isinstance(env.data, ParticipantWithdrawn)
        await conn.execute("INSERT INTO seen (participant_id) VALUES ($1)", env.data.participant_id)

    consumer = _RebalancedWhilePolling(
        name=unique("polled"), pool=pool, producer=_Producer(), topics=(topic,),
        handlers={ParticipantWithdrawn: handler}, batch_size=50, min_backoff_seconds=0.01,
    )  # fmt: skip
    checker = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, group_id=consumer.name, enable_auto_commit=False
    )
    await checker.start()
    task = asyncio.create_task(consumer.run(stack.kafka_bootstrap))
    try:

        async def all_committed() -> bool:
            if task.done():
                task.result()
            return bool(await checker.committed(TopicPartition(topic.name, 0)) == total)

        await eventually(all_committed, 60, "every offset to be committed")
        assert await _seen(pool) == [f"p{n:04d}" for n in range(total)], "every event applied, once, in order"
    finally:
        consumer.stop()
        await task
        await checker.stop()
