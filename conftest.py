"""Fixtures shared by every test folder: the real local stack (Kafka + PostgreSQL) and helpers.

The stack is started (or reused) once per test session through the same launcher the README's
commands use, so the tests prove the stack a developer runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.topics import ENROLLMENT, Topic
from runtime.kafka import ensure_topics
from runtime.tail import TopicTail
from tests.faultproxy import TcpProxy

__all__ = ["ROOT", "PrivateTopics", "StackEndpoints", "TopicTail", "eventually", "unique"]

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


def _stop_local_services() -> None:
    """The demo's services (``make demo`` leaves them running) consume the same local topics as the tests'
    in-process services and would act on the tests' events too (a second sessions service closing the
    same relationships): the suite runs without them. Only this checkout's services are stopped."""
    from deploy.local import services

    services.down()


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEndpoints]:
    _stack("up")
    _stop_local_services()
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


@pytest.fixture
async def pg_proxy(stack: StackEndpoints) -> AsyncIterator[TcpProxy]:
    """A loopback proxy in front of the stack's PostgreSQL, for a test to cut or black-hole
    (``tests/faultproxy.py``): only the clients the test points at it see the outage."""
    pg = urlsplit(stack.admin_dsn)
    proxy = TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.close()


PrivateTopics = Callable[..., Awaitable[Topic]]


@pytest.fixture
async def private_topics(stack: StackEndpoints) -> AsyncIterator[PrivateTopics]:
    """Topics of the test's own (``test.<name>_<random>`` and its ``.dlt``), deleted when the test ends,
    so that history left by other runs cannot blur what a test counts and the broker does not fill up.

    ``await private_topics("enrollment", partitions=3, dead_letter=True)``; ``dead_letter=False`` leaves
    the ``.dlt`` topic out (to test a dead-letter copy that cannot be published).
    """
    created: list[str] = []

    async def make(name: str = "enrollment", *, partitions: int = 3, dead_letter: bool = True) -> Topic:
        topic = dataclasses.replace(ENROLLMENT, name=unique(f"test.{name}_{int(time.time())}"), partitions=partitions)
        created.extend([topic.name, topic.dead_letter])
        if dead_letter:
            await ensure_topics(stack.kafka_bootstrap, [topic])
        else:
            admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic(topic.name, partitions, 1)])
            finally:
                await admin.close()
        return topic

    yield make
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in created if t in existing] + _abandoned(existing)
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


_PRIVATE_TOPIC = re.compile(r"test\..+_(?P<born>\d{10})_[0-9a-f]{10}(\.dlt)?")
ABANDONED_AFTER_SECONDS = 6 * 3600


def _abandoned(existing: set[str]) -> list[str]:
    """Private topics of runs killed before their teardown (their names carry their birth time): swept
    by the next test that cleans up, once no run can still be using them."""
    now = time.time()
    return [
        t
        for t in existing
        if (m := _PRIVATE_TOPIC.fullmatch(t)) is not None and now - int(m["born"]) > ABANDONED_AFTER_SECONDS
    ]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds: for effects that travel through Kafka and arrive a little later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"
