"""Delivery guarantees on the real broker and database, with the relay and the consumer in other
processes killed at awkward moments: nothing lost, nothing doubled, order kept per key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from conftest import ROOT, PrivateTopics, StackEndpoints, eventually, unique
from contracts.envelope import Envelope, to_kafka
from contracts.events import ParticipantWithdrawn, ProgramOpened
from contracts.examples import EXAMPLES
from contracts.topics import Topic
from runtime.db import create_pool, migrate
from runtime.outbox import add_to_outbox, make_producer

pytestmark = pytest.mark.stack


_SPAWNED: list[subprocess.Popen[str]] = []
LOGS: dict[int, Path] = {}
"""Where each spawned probe (by pid) writes its JSON log lines."""


@pytest.fixture(autouse=True)
def _no_probe_outlives_its_test(private_topics: PrivateTopics, scratch_schemas: list[str]) -> Iterator[None]:
    """A failing test must not leave a relay or consumer running against dropped schemas and topics
    (asking for those fixtures makes this one end first: the probes die before what they use goes)."""
    yield
    while _SPAWNED:
        proc = _SPAWNED.pop()
        if proc.poll() is None:
            _kill(proc)


def _spawn(stack: StackEndpoints, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Output goes to a file: an unread pipe would fill up and freeze the child."""
    log = tempfile.NamedTemporaryFile(prefix="probe-", suffix=".log", delete=False)  # noqa: SIM115
    print(f"probe {args[0]} logs to {log.name}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.probe", *args, "--dsn", stack.admin_dsn, "--bootstrap", stack.kafka_bootstrap],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    _SPAWNED.append(proc)
    LOGS[proc.pid] = Path(log.name)
    return proc


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def _committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        return {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic}
    finally:
        await admin.close()


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _withdrawn(program: str, seq: int) -> Envelope:
    return Envelope(
        data=ParticipantWithdrawn(program_id=program, participant_id=f"p{seq:06d}", withdrawn_at=datetime.now(UTC))
    )


async def test_outbox_events_are_applied_exactly_once_across_kills_and_redelivery(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics
) -> None:
    src, dst = unique("probe_src"), unique("probe_dst")
    scratch_schemas += [src, dst]
    prefix = unique("prg")
    programs = [f"{prefix}-{i}" for i in range(4)]
    total = 3000
    topic = await private_topics()

    # State change and its events in ONE transaction; a rolled-back transaction leaves no event.
    pool = await create_pool(stack.admin_dsn, src)
    await migrate(pool, src, {})
    await pool.execute("CREATE TABLE withdrawals (participant_id TEXT PRIMARY KEY)")
    envelopes = [_withdrawn(programs[seq % len(programs)], seq) for seq in range(total)]
    async with pool.acquire() as conn, conn.transaction():
        await conn.executemany(
            "INSERT INTO withdrawals VALUES ($1)",
            [(e.data.participant_id,) for e in envelopes],  # type: ignore[attr-defined]
        )
        await add_to_outbox(conn, *envelopes)
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, _withdrawn(programs[0], 999_999))
            raise RuntimeError("the state change failed")
    assert await pool.fetchval("SELECT count(*) FROM outbox") == total
    await pool.execute("UPDATE outbox SET topic = $1", topic.name)

    dst_pool = await create_pool(stack.admin_dsn, dst)
    group = unique("probe")
    consume = ("consume", "--schema", dst, "--group", group, "--prefix", prefix, "--topic", topic.name)
    faults = Path(tempfile.mkdtemp(prefix="probe-"))
    consumer_paused_file = faults / "consumer-paused"
    consumer = _spawn(
        stack,
        *consume,
        "--batch",
        "40",
        env={"PROBE_CONSUMER_PAUSE_AFTER_BATCHES": "2", "PROBE_CONSUMER_PAUSED_FILE": str(consumer_paused_file)},
    )
    batch, pause_after = 50, 3
    paused_file = faults / "relay-paused"
    relay = _spawn(
        stack,
        *("relay", "--schema", src, "--batch", str(batch)),
        env={"PROBE_RELAY_PAUSE_AFTER_BATCHES": str(pause_after), "PROBE_RELAY_PAUSED_FILE": str(paused_file)},
    )

    async def relay_paused() -> bool:
        return paused_file.exists()

    # The relay sits exactly between "batch 3 acknowledged by Kafka" and "batch 3 marked published".
    await eventually(relay_paused, 60, "the relay to pause after sending a batch")
    _kill(relay)
    published_before_restart = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
    assert published_before_restart == (pause_after - 1) * batch
    ends = await _end_offsets(stack.kafka_bootstrap, topic.name)
    assert sum(ends.values()) == pause_after * batch, "the unmarked batch is on Kafka"

    async def consumer_paused() -> bool:
        return consumer_paused_file.exists()

    # The consumer sits exactly between "a batch's effects and event ids committed" and "its offsets committed".
    await eventually(consumer_paused, 60, "the consumer to pause after applying a batch")
    _kill(consumer)
    applied_before_kill = int(consumer_paused_file.read_text())
    assert 0 < applied_before_kill <= 80
    assert await dst_pool.fetchval("SELECT n FROM counter") == applied_before_kill
    consumer = _spawn(stack, *consume)
    relay = _spawn(stack, "relay", "--schema", src, "--batch", str(batch))

    async def all_published() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0)

    await eventually(all_published, 90, "the restarted relay to publish everything")

    # The same event delivered twice on purpose.
    producer = make_producer(stack.kafka_bootstrap, "test-dup")
    await producer.start()
    try:
        record = to_kafka(envelopes[0])
        for _ in range(2):
            await producer.send_and_wait(topic.name, record.value, key=record.key, headers=record.headers)
    finally:
        await producer.stop()

    async def all_applied() -> bool:
        return bool(await dst_pool.fetchval("SELECT count(DISTINCT event_id) FROM applied") == total)

    await eventually(all_applied, 90, "every event to be applied")
    ends = await _end_offsets(stack.kafka_bootstrap, topic.name)

    async def consumer_caught_up() -> bool:
        committed = await _committed_offsets(stack.kafka_bootstrap, group, topic.name)
        return all(committed.get(p, 0) >= end for p, end in ends.items())  # an empty partition has no commit

    # Every record on the topic, duplicates included, has been through the consumer: nothing straggles.
    await eventually(consumer_caught_up, 60, "the consumer group's offsets to reach the end of the topic")
    _stop(consumer)
    _stop(relay)

    # Really delivered twice: the re-sent batch and the two manual copies are on the topic, and the
    # consumer received the batch whose offsets it had not committed once more after its restart.
    assert sum(ends.values()) >= total + batch + 2
    deliveries = await dst_pool.fetchval("SELECT count(*) FROM deliveries")
    assert deliveries >= sum(ends.values()) + 1
    assert await dst_pool.fetchval("SELECT n FROM counter") == total
    assert await dst_pool.fetchval("SELECT count(*) FROM applied") == total
    rows = await dst_pool.fetch("SELECT program_id, participant_id FROM applied ORDER BY seq")
    by_program: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_program[r["program_id"]].append(r["participant_id"])
    for program, seen in by_program.items():
        assert seen == sorted(seen), f"events of {program} were applied out of order"
    await pool.close()
    await dst_pool.close()


async def _dead_letters(bootstrap: str, topic: Topic, expected: int, timeout: float = 30.0) -> list[dict[str, str]]:
    """Headers of the dead letters, read until ``expected`` arrived (or the deadline), then briefly more."""
    consumer = AIOKafkaConsumer(
        topic.dead_letter, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[dict[str, str]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batches.values():
                found.extend({k: v.decode() for k, v in r.headers} for r in records)
            if len(found) >= expected and not batches:
                break
    finally:
        await consumer.stop()
    return found


async def test_malformed_messages_go_to_the_dead_letter_topic_unknown_types_are_skipped_and_the_consumer_carries_on(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics
) -> None:
    dst = unique("probe_dlt")
    scratch_schemas.append(dst)
    prefix = unique("prg")
    group = unique("probe-dlt")
    topic = await private_topics()
    consumer = _spawn(stack, "consume", "--schema", dst, "--group", group, "--prefix", prefix, "--topic", topic.name)
    pool = await create_pool(stack.admin_dsn, dst)

    good = to_kafka(_withdrawn(f"{prefix}-x", 1))
    wrong_type = [(k, b"org.mentoring.nonsense.v1" if k == "ce_type" else v) for k, v in good.headers]
    missing_field = json.loads(good.value)
    del missing_field["participant_id"]
    opened = to_kafka(Envelope(data=EXAMPLES[ProgramOpened.TYPE]))
    producer = make_producer(stack.kafka_bootstrap, "test-dlt")
    await producer.start()
    try:
        key = good.key
        await producer.send_and_wait(topic.name, b"{not json", key=key, headers=good.headers)
        await producer.send_and_wait(topic.name, good.value, key=key, headers=wrong_type)
        await producer.send_and_wait(topic.name, json.dumps(missing_field).encode(), key=key, headers=good.headers)
        await producer.send_and_wait(topic.name, opened.value, key=key, headers=opened.headers)  # not handled
        await producer.send_and_wait(topic.name, good.value, key=key, headers=good.headers)
    finally:
        await producer.stop()

    async def good_applied() -> bool:
        try:
            return bool(await pool.fetchval("SELECT count(*) FROM applied") == 1)
        except asyncpg.UndefinedTableError:
            return False

    await eventually(good_applied, 60, "the good message after the bad ones to be applied")
    _stop(consumer)
    await pool.close()

    letters = await _dead_letters(stack.kafka_bootstrap, topic, expected=2)
    reasons = sorted(h["dlt_reason"] for h in letters)
    assert len(letters) == 2, reasons  # the unknown type is skipped (forward compatibility), not a dead letter
    assert any("not JSON" in r for r in reasons)
    assert any(r.endswith("failed validation: participant_id: missing") for r in reasons)  # loc + type, no input
    for h in letters:
        assert h["dlt_original_topic"] == topic.name
        assert h["dlt_consumer_group"] == group
        assert int(h["dlt_original_offset"]) >= 0
        assert h["dlt_attempts"] == "1"
