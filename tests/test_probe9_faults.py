"""Faults found by the outside-in probe of issue 9 (``bench/probes/issue9.py``), each the shortest
reproduction on the real broker and database, written as the behaviour the issue asks for:

- a dead letter with a header whose value is null used to crash the consumer on every restart
  (``runtime.deadletters.copy_size``);
- a dead letter that must be kept in the table but has a NUL in a header key did the same (PostgreSQL's
  text takes no NUL), and put one more copy on ``.dlt`` at each restart;
- a database connection that goes silent (a partition: no reset, no answer) hung the consumer for good
  while ``/health/ready`` answered 200 (now every statement has a timeout: ``runtime.db``).

- a record whose header key is not UTF-8 stopped a consumer for good (every partition it reads): aiokafka's
  client raises while decoding the fetch that holds it (``runtime.undecodable`` now reads past it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from bench.probes.harness import Proxy, via
from conftest import ROOT, eventually, unique
from contracts.envelope import to_kafka
from runtime.db import create_pool
from runtime.metrics import RuntimeMetrics
from tests.faultkit import FaultCase, Raw, applied_at_least, consuming, records_on, with_id, withdrawn
from tests.test_runtime_delivery import _end_offsets

pytestmark = pytest.mark.stack

_BAD_KEY_BATCH = """
import asyncio, json, sys
from aiokafka import AIOKafkaProducer

class Raw(str):  # aiokafka's pure-Python record builder calls key.encode(): give it raw bytes
    def encode(self, *args, **kwargs):
        return b"ce_\\xff\\xfe"

async def main():
    bootstrap, topic, partition = sys.argv[1], sys.argv[2], int(sys.argv[3])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    batch = producer.create_batch()
    for i, (key, value, headers) in enumerate(json.load(sys.stdin)):
        headers = [(k, v.encode()) for k, v in headers] + ([(Raw("x"), b"v")] if i == 0 else [])
        assert batch.append(key=key.encode(), value=value.encode(), timestamp=None, headers=headers) is not None
    await (await producer.send_batch(batch, topic, partition=partition))
    await producer.stop()

asyncio.run(main())
"""


def _send_batch_with_a_bad_header_key(bootstrap: str, topic: str, partition: int, records: list[Raw]) -> None:
    """One producer batch on ``partition``: its first record with a header key that is not UTF-8, then the
    others (which aiokafka cannot decode either: it decodes a batch record after record)."""
    spec = [(k.decode(), v.decode(), [(hk, hv.decode()) for hk, hv in h]) for k, v, h in records]
    subprocess.run(
        [sys.executable, "-c", _BAD_KEY_BATCH, bootstrap, topic, str(partition)], input=json.dumps(spec),
        text=True, env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"}, cwd=ROOT, check=True,
    )  # fmt: skip


async def test_records_whose_header_key_is_not_utf8_are_dead_lettered_alone_and_every_partition_moves_on(
    fault_case: FaultCase,
) -> None:
    """Each bad header key in a producer batch with valid events after it (which aiokafka cannot decode
    either), while the other partition has events in the same fetches: the first before the consumer
    starts (it resumes from the start of the log), the second once it has applied events (it resumes
    after the last one it was handed)."""
    case, bootstrap, topic = fault_case, fault_case.stack.kafka_bootstrap, fault_case.topic.name
    prefix = unique("prg")
    raw = [(r.key, r.value, r.headers) for r in (to_kafka(withdrawn(prefix, i)) for i in range(13))]
    await case.send(raw[:3], partition=0)
    _send_batch_with_a_bad_header_key(bootstrap, topic, 0, raw[3:7])  # 3 is bad
    await case.send(raw[8:10], partition=1)
    async with consuming(case.stack, case.pool, case.topic, RuntimeMetrics("probe9")) as (_, supervisor):
        try:
            await eventually(applied_at_least(case.pool, 8), 30, "the events around the first bad header key")
            await case.send(raw[7:8], partition=0)
            _send_batch_with_a_bad_header_key(bootstrap, topic, 1, raw[10:])  # 10 is bad
            await eventually(applied_at_least(case.pool, 11), 30, "the events around the second bad header key")
        finally:
            failing = supervisor.failing()
    assert failing == {}
    applied = [r["participant_id"] for r in await case.pool.fetch("SELECT participant_id FROM applied ORDER BY seq")]
    expected = [f"p{i:06d}" for i in range(13) if i not in (3, 10)]
    assert sorted(applied) == expected, "each event but the bad ones applied exactly once"
    assert [p for p in applied if p < "p000008"] == expected[:7], "partition 0 in order"
    assert [p for p in applied if p >= "p000008"] == expected[7:], "partition 1 in order"
    letters = sorted(
        await records_on(bootstrap, case.topic.dead_letter), key=lambda r: dict(r.headers)["dlt_original_partition"]
    )
    assert [(r.key, r.value) for r in letters] == [raw[3][:2], raw[10][:2]], "key and body kept"
    for letter, partition, offset in zip(letters, (b"0", b"1"), (b"3", b"2"), strict=True):
        headers = dict(letter.headers)
        assert headers["ce_\\xff\\xfe"] == b"v", "the bad key shown with \\x escapes"
        assert (headers["dlt_original_partition"], headers["dlt_original_offset"]) == (partition, offset)
        assert b"header key not UTF-8" in headers["dlt_reason"]


async def test_a_dead_letter_with_a_null_header_value_is_dead_lettered_and_the_partition_moves_on(
    fault_case: FaultCase,
) -> None:
    case, good = fault_case, fault_case.good
    poison_headers = [(k, None if k == "ce_type" else v) for k, v in with_id(good.headers, unique("nulltype"))]
    await case.send([(good.key, good.value, poison_headers), case.good_raw])
    # batches of one: the valid event is in a batch of its own, after the dead letter's
    async with consuming(case.stack, case.pool, case.topic, RuntimeMetrics("probe9"), batch_size=1) as (_, supervisor):
        try:
            await eventually(applied_at_least(case.pool, 1), 20, "the valid event behind the record with a null header")
        finally:
            failing = supervisor.failing()
    assert failing == {}
    assert sum((await _end_offsets(case.stack.kafka_bootstrap, case.topic.dead_letter)).values()) == 1


async def test_an_oversized_dead_letter_with_a_nul_in_a_header_key_is_kept_once_and_the_partition_moves_on(
    fault_case: FaultCase,
) -> None:
    case, good = fault_case, fault_case.good
    poison = (good.key, b"x" * 1_048_000, [*with_id(good.headers, unique("big")), ("x\x00y", b"1")])
    await case.send([poison, case.good_raw])
    async with consuming(case.stack, case.pool, case.topic, RuntimeMetrics("probe9"), batch_size=1) as (_, supervisor):
        try:
            await eventually(applied_at_least(case.pool, 1), 20, "the valid event behind the oversized one")
        finally:
            failing = supervisor.failing()
    assert failing == {}
    assert len(await records_on(case.stack.kafka_bootstrap, case.topic.dead_letter)) == 1, "one copy on .dlt"
    assert await case.pool.fetchval("SELECT count(*) FROM dead_letters") == 1


async def test_a_consumer_whose_database_connection_goes_silent_recovers_after_the_partition(
    fault_case: FaultCase,
) -> None:
    case = fault_case
    pg = urlsplit(case.stack.admin_dsn)
    proxy = Proxy(pg.hostname or "127.0.0.1", pg.port or 5432)
    await proxy.start()
    proxied = await create_pool(via(case.stack.admin_dsn, proxy.port), case.schema, max_size=2, statement_timeout=5)
    prefix = unique("prg")
    records = [to_kafka(withdrawn(prefix, i)) for i in range(300)]
    raw = [(r.key, r.value, r.headers) for r in records]
    try:
        async with consuming(case.stack, proxied, case.topic, RuntimeMetrics("probe9"), batch_size=50):
            try:
                await case.send(raw[:100])
                await eventually(applied_at_least(case.pool, 100), 60, "the first 100 events")
                await proxy.blackhole()  # the database goes silent for the consumer: no reset, no answer
                await case.send(raw[100:])
                await asyncio.sleep(5)
                await proxy.restore()  # new connections work again; the silent ones stay silent
                await eventually(applied_at_least(case.pool, 300), 60, "every event once the partition is over")
            finally:
                await proxy.close()  # resets the silent connections, so that the consumer can stop
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proxied.close(), 10)
