"""Reads what lands on a topic from the moment it is opened.

Tests assert on published events with it, benchmarks time "upload to events on Kafka", and the demo
shows what integration teams receive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord


class TopicTail:
    """Reads what lands on a topic from the moment it is opened: for asserting on published events."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._topic = topic

    async def __aenter__(self) -> TopicTail:
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self._topic) or set()
        if not partitions:
            await self._consumer.stop()
            raise LookupError(f"topic {self._topic} has no partitions on the broker: was it created?")
        tps = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:
            await self._consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def collect(
        self, predicate: Callable[[ConsumerRecord[bytes, bytes]], bool], count: int, timeout: float = 60.0
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Records matching ``predicate`` until ``count`` arrived, then a short wait for any extra (doubles)."""
        found: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + timeout
        grace_until: float | None = None
        while time.monotonic() < deadline:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                found.extend(r for r in records if predicate(r))
            if len(found) >= count:
                grace_until = grace_until or time.monotonic() + 1.5
                if time.monotonic() >= grace_until:
                    break
            await asyncio.sleep(0)
        return found


async def wait_for_consumer_group(bootstrap: str, group: str, timeout: float = 30.0) -> None:
    """Until the group is Stable with assigned members: events published after this are not missed
    by a group that starts at the latest offset."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = await admin.describe_consumer_groups([group])
            for response in described:
                for g in response.groups:
                    state, members = g[2], g[5]
                    if state == "Stable" and members:
                        return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"consumer group {group} did not become stable in {timeout}s")
    finally:
        await admin.close()
