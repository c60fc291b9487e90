"""What the issue-9 probe shares: services as uvicorn processes on private topics, a TCP proxy that can
refuse (a stopped server) or black-hole (a network partition) a service's connections, and the counts
that must agree (producer's database, distinct ids on Kafka, effects in the consumers' databases)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.faultproxy import via as via  # re-exported: the probes' name for it

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """Loopback TCP proxy. ``refuse()``: every connection reset and new ones refused (a stopped server).
    ``blackhole()``: nothing forwarded any more, new connections accepted and never answered, the client
    side of every connection left open without a byte or a FIN (a partition, or a peer that vanished).
    ``restore()``: new connections forwarded again (black-holed ones stay dead, as in real life)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self.mode = "up"
        self._server: asyncio.Server | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, list[asyncio.Task[None]]]] = []
        self._held: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def refuse(self) -> None:
        self.mode = "refuse"
        if self._server is not None:
            self._server.close()
            self._server = None
        for client, upstream, pipes in self._pairs:
            for p in pipes:
                p.cancel()
            client.transport.abort()
            upstream.transport.abort()
        self._pairs.clear()

    async def blackhole(self) -> None:
        self.mode = "blackhole"
        for client, upstream, pipes in self._pairs:
            for p in pipes:
                p.cancel()
            upstream.transport.abort()
            self._held.append(client)  # never written to, never closed
        self._pairs.clear()

    async def restore(self) -> None:
        self.mode = "up"
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.refuse()
        for w in self._held:
            w.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "blackhole":
            self._held.append(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pipes = [asyncio.create_task(self._pipe(reader, up_writer)), asyncio.create_task(self._pipe(up_reader, writer))]
        self._pairs.append((writer, up_writer, pipes))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        if self.mode == "up":
            with contextlib.suppress(Exception):
                writer.close()


@dataclasses.dataclass
class Service:
    name: str
    url: str
    schema: str
    port: int
    env: dict[str, str]
    log: str
    process: subprocess.Popen[bytes]

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def start_again(self) -> None:
        log = open(self.log, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(_command(self.name, self.port), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        env=self.env)  # fmt: skip


def _command(name: str, port: int) -> list[str]:
    return [sys.executable, "-m", "bench.probes.serve", f"services.{name}.app:app", "--port", str(port)]


async def wait_ready(service: Service, timeout: float = 120) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{service.url}/health/ready")).status_code == 200:
                    return
            if service.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{service.name} did not become ready; see {service.log}")
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running(
    name: str,
    admin_dsn: str,
    bootstrap: str,
    prefix: str,
    *,
    dsn: str | None = None,
    kafka_via: str | None = None,
    **env: str,
) -> AsyncIterator[Service]:
    port = free_port()
    schema = f"probe9_{name}_{uuid.uuid4().hex[:8]}"
    upper = name.upper()
    settings = {
        f"{upper}_DATABASE_URL": dsn or admin_dsn,
        f"{upper}_DB_SCHEMA": schema,
        f"{upper}_KAFKA_BOOTSTRAP": bootstrap,
        f"{upper}_LOG_LEVEL": "WARNING",
        **{f"{upper}_{k.upper()}": v for k, v in env.items()},
        "PROBE_TOPIC_PREFIX": prefix,
    }
    if kafka_via:
        settings["PROBE_KAFKA_VIA"] = kafka_via
    log = tempfile.NamedTemporaryFile(prefix=f"probe9-{name}-", suffix=".log", delete=False)  # noqa: SIM115
    full_env = {**os.environ, **settings}
    process = subprocess.Popen(_command(name, port), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    service = Service(name, f"http://127.0.0.1:{port}", schema, port, full_env, log.name, process)
    try:
        await wait_ready(service)
        yield service
    finally:
        if service.process.poll() is None:
            service.process.terminate()
            try:
                service.process.wait(30)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
        if mine:
            await admin.delete_topics(mine)
        return mine
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps) if tps else {}
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str) -> list[object]:
    ends = await end_offsets(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024)  # fmt: skip
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p, e in ends.items() if e > 0]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[object] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300, max_records=10_000)).values():
                found.extend(records)
            if all([await consumer.position(tp) >= ends[tp.partition] for tp in tps]):
                return found
        raise SystemExit(f"could not read {topic} to its end")
    finally:
        await consumer.stop()


def ce_ids(records: list[object], key: bytes | None = None) -> list[str]:
    out = []
    for r in records:
        if key is not None and r.key != key:  # type: ignore[attr-defined]
            continue
        out += [v.decode() for k, v in r.headers if k == "ce_id"]  # type: ignore[attr-defined]
    return out


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started
