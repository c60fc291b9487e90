"""Raw produce/consume rate of one aiokafka producer and one consumer on the local broker.

    python -m bench.kafka_throughput [--messages 100000] [--size 1024]

Prints figures; asserts nothing. Starts (or reuses) the local stack.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.local.stack import Stack


async def run(bootstrap: str, messages: int, size: int, partitions: int, timeout: float = 300.0) -> None:
    topic = f"bench.throughput.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, partitions, 1)])
    payload = os.urandom(size // 2).hex().encode()[:size]

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    pending = []
    for i in range(messages):
        pending.append(await producer.send(topic, payload, key=str(i % 64).encode()))
        if len(pending) >= 5000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    produce_s = time.perf_counter() - started
    await producer.stop()

    # assign(), not subscribe(): no group join or rebalance inside the timed section, no offsets to commit.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
    )  # fmt: skip
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < messages and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
        seen += sum(len(r) for r in batches.values())
    consume_s = time.perf_counter() - started
    await consumer.stop()
    await admin.delete_topics([topic])
    await admin.close()
    if seen < messages:
        raise SystemExit(f"consumed only {seen} of {messages} messages in {timeout:.0f} s: is the broker healthy?")

    mib = messages * size / 2**20
    print(f"messages: {messages} x {size} B on {partitions} partitions (acks=all, idempotent producer)")
    print(f"produce: {messages / produce_s:,.0f} msg/s  ({mib / produce_s:.1f} MiB/s, {produce_s:.2f} s)")
    print(f"consume: {messages / consume_s:,.0f} msg/s  ({mib / consume_s:.1f} MiB/s, {consume_s:.2f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=300.0, help="give up consuming after this many seconds")
    args = parser.parse_args()
    stack = Stack()
    endpoints = stack.up()
    for name, line in stack.status().items():
        print(f"{name}: {line}")
    asyncio.run(run(endpoints.kafka_bootstrap, args.messages, args.size, args.partitions, args.timeout))


if __name__ == "__main__":
    main()
