"""The five services served over real HTTP on free local ports, as an outside client meets them.

Each service is the same FastAPI app ``uvicorn services.<name>.app:app`` serves, with a schema of its own on
the local PostgreSQL and the local Kafka; the uvicorn servers share one event loop in a background thread,
so a blocking client (schemathesis, ``httpx.Client``) can call them from the test's thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

import asyncpg
import uvicorn
from fastapi import FastAPI

from conftest import StackEndpoints, unique
from runtime.auth import JwtConfig, issue_token
from runtime.tail import wait_for_consumer_group
from services.enrollment.app import EnrollmentSettings
from services.enrollment.app import create as create_enrollment
from services.feedback.app import FeedbackSettings
from services.feedback.app import create as create_feedback
from services.matching.app import MatchingSettings
from services.matching.app import create as create_matching
from services.metrics.app import MetricsSettings
from services.metrics.app import create as create_metrics
from services.sessions.app import SessionsSettings
from services.sessions.app import create as create_sessions

T = TypeVar("T")

CONSUMER_GROUPS = {
    "enrollment": "loads",
    "matching": "pools",
    "sessions": "relationships",
    "feedback": "projection",
    "metrics": "projection",
}
"""The suffix of each service's consumer group (``<schema>-<suffix>``): consumers join before data is made."""


def _apps(stack: StackEndpoints, schemas: dict[str, str]) -> dict[str, FastAPI]:
    common: dict[str, Any] = {
        "database_url": stack.admin_dsn,
        "kafka_bootstrap": stack.kafka_bootstrap,
        "consumer_offset_reset": "latest",
        "log_level": "WARNING",
    }
    return {
        "enrollment": create_enrollment(EnrollmentSettings(db_schema=schemas["enrollment"], **common)),
        "matching": create_matching(MatchingSettings(db_schema=schemas["matching"], **common)),
        "sessions": create_sessions(SessionsSettings(db_schema=schemas["sessions"], **common)),
        "feedback": create_feedback(FeedbackSettings(db_schema=schemas["feedback"], **common)),
        "metrics": create_metrics(MetricsSettings(db_schema=schemas["metrics"], **common)),
    }


class LiveServices:
    """``with LiveServices(stack) as live:`` every service answers at ``live.urls[name]`` until the block ends;
    their schemas are dropped afterwards."""

    def __init__(self, stack: StackEndpoints, label: str = "live") -> None:
        self.stack = stack
        self.schemas = {name: unique(f"{name}_{label}") for name in CONSUMER_GROUPS}
        self.apps = _apps(stack, self.schemas)
        self.loop = asyncio.new_event_loop()
        self.urls: dict[str, str] = {}
        self._servers: list[uvicorn.Server] = []
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name="live-services", daemon=True)
        self._failure: BaseException | None = None

    @property
    def jwt(self) -> JwtConfig:
        config: JwtConfig = self.apps["enrollment"].state.jwt
        return config

    def bearer(self, subject: str, role: str, permissions: list[str] | None = None) -> str:
        return f"Bearer {issue_token(self.jwt, subject, [role], permissions=permissions)}"

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        """Runs a coroutine on the services' loop (their pools live there) and returns its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> LiveServices:
        for name, app in self.apps.items():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            self._sockets.append(sock)
            self.urls[name] = f"http://127.0.0.1:{sock.getsockname()[1]}"
            config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=30)
            self._servers.append(uvicorn.Server(config))
        self._thread.start()
        deadline = time.monotonic() + 120
        while not all(s.started for s in self._servers):
            if self._failure is not None or not self._thread.is_alive():
                raise RuntimeError("a live service did not start") from self._failure
            if time.monotonic() > deadline:
                raise TimeoutError("the live services did not start within 120 s")
            time.sleep(0.05)
        for name, suffix in CONSUMER_GROUPS.items():
            self.run(wait_for_consumer_group(self.stack.kafka_bootstrap, f"{self.schemas[name]}-{suffix}"))
        return self

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        serving = [s.serve(sockets=[sock]) for s, sock in zip(self._servers, self._sockets, strict=True)]
        try:
            self.loop.run_until_complete(asyncio.gather(*serving))
        except BaseException as exc:
            self._failure = exc

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for server in self._servers:
            server.should_exit = True
        self._thread.join(120)
        drop = asyncio.new_event_loop()
        try:
            drop.run_until_complete(self._drop_schemas())
        finally:
            drop.close()
            self.loop.close()

    async def _drop_schemas(self) -> None:
        conn = await asyncpg.connect(self.stack.admin_dsn)
        try:
            for schema in self.schemas.values():
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
