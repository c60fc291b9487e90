"""The services as the benches run them: separate uvicorn processes (as deployed) on free loopback ports, in
throw-away schemas against the local stack, and the CPU each spends per request."""

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
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx

from bench.cpu import backend_pids, cpu_seconds, tree_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Service:
    name: str
    url: str
    schema: str
    process: subprocess.Popen[bytes]


@contextlib.asynccontextmanager
async def running(name: str, admin_dsn: str, bootstrap: str, workers: int = 1, **env: str) -> AsyncIterator[Service]:
    port = free_port()
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    prefix = name.upper()
    settings = {
        f"{prefix}_DATABASE_URL": admin_dsn,
        f"{prefix}_DB_SCHEMA": schema,
        f"{prefix}_KAFKA_BOOTSTRAP": bootstrap,
        f"{prefix}_LOG_LEVEL": "WARNING",
        **{f"{prefix}_{k.upper()}": v for k, v in env.items()},
    }
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"services.{name}.app:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "300", "--workers", str(workers)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **settings},
    )  # fmt: skip
    service = Service(name, f"http://127.0.0.1:{port}", schema, process)
    failed = True  # the service's log is kept (its path printed) only when something went wrong
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{service.url}/health/ready")).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not become ready; see {log.name}")
                await asyncio.sleep(0.2)
        yield service
        failed = False
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
        log.close()
        if failed or process.returncode not in (0, -signal.SIGTERM):
            print(f"  ({name}'s log: {log.name})")
        else:
            os.unlink(log.name)


@dataclasses.dataclass
class CpuMeter:
    """CPU seconds spent by the service process, its database backends and this client meanwhile: on a
    shared machine, CPU per request says what bounds the rate better than the rate itself."""

    admin_dsn: str
    service: Service
    started: dict[str, float] = dataclasses.field(default_factory=dict)
    backends: dict[int, float] = dataclasses.field(default_factory=dict)

    async def start(self) -> None:
        self.backends = {pid: cpu_seconds(pid) for pid in await backend_pids(self.admin_dsn, self.service.schema)}
        self.started = {"service": tree_cpu_seconds(self.service.process.pid), "client": time.process_time()}

    async def per_request_ms(self, count: int) -> str:
        service = tree_cpu_seconds(self.service.process.pid) - self.started["service"]
        client = time.process_time() - self.started["client"]
        pids = await backend_pids(self.admin_dsn, self.service.schema)  # a backend opened meanwhile started at 0
        database = sum(cpu_seconds(pid) - self.backends.get(pid, 0.0) for pid in pids)
        return (
            f"CPU per enrolment: {self.service.name} process {1000 * service / count:.2f} ms, its PostgreSQL"
            f" backends {1000 * database / count:.2f} ms, this client {1000 * client / count:.2f} ms"
        )
