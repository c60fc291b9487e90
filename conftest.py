"""Fixtures shared by every test folder: the real local stack (Kafka + PostgreSQL) and helpers.

The stack is started (or reused) once per test session through the same launcher the README's
commands use, so the tests prove the stack a developer runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiokafka.structs import ConsumerRecord

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class StackEndpoints:
    kafka_bootstrap: str
    admin_dsn: str
    service_dsn: dict[str, str]


def _stack(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "deploy.local.stack", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"stack {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    _stack("up")
    env: dict[str, str] = {}
    for line in _stack("env").splitlines():
        line = line.removeprefix("export ").strip()
        if "=" in line:
            key, value = line.split("=", 1)
            env[key] = value.strip("'\"")
    services = ("enrollment", "matching", "sessions", "feedback", "metrics")
    yield StackEndpoints(
        kafka_bootstrap=env["KAFKA_BOOTSTRAP"],
        admin_dsn=env["PG_DSN_ADMIN"],
        service_dsn={s: env[f"{s.upper()}_DATABASE_URL"] for s in services},
    )
    if os.environ.get("STACK_DOWN_AFTER_TESTS") == "1":
        _stack("down")


@pytest.fixture
async def scratch_schemas(stack: StackEndpoints) -> AsyncIterator[list[str]]:
    """Unique schemas for one test, dropped afterwards: tests never see each other's rows."""
    created: list[str] = []
    yield created
    conn = await asyncpg.connect(stack.admin_dsn)
    try:
        for schema in created:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class TopicTail:
    """Reads what lands on a topic from the moment it is opened: for asserting on published events."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from aiokafka import AIOKafkaConsumer

        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._topic = topic

    async def __aenter__(self) -> TopicTail:
        from aiokafka import TopicPartition

        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._topic) or set()
        if not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self._topic) or set()
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
        import asyncio
        import time

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
