"""The five services served over real HTTP on free local ports, as an outside client meets them.

Each service is the same FastAPI app ``uvicorn services.<name>.app:app`` serves, with a schema of its own on
the local PostgreSQL and the local Kafka, under uvicorn in a thread (and event loop) of its own, so a blocking
client (schemathesis, ``httpx.Client``) can call them from the test's thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

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


class _Served:
    """One service under uvicorn in a thread of its own with its own event loop, so that one busy service
    (a solve, a projection catching up) never holds up the others' requests."""

    def __init__(self, app: FastAPI) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=60)
        self.server = uvicorn.Server(config)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self.socket]))
        except BaseException as exc:
            self.failure = exc

    def start(self) -> None:
        self.thread.start()

    def started(self) -> bool:
        if self.failure is not None or (self.thread.ident is not None and not self.thread.is_alive()):
            raise RuntimeError(f"a live service at {self.url} did not start") from self.failure
        return bool(self.server.started)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(120)


class LiveServices:
    """``with LiveServices(stack) as live:`` every service answers at ``live.urls[name]`` until the block ends;
    their schemas are dropped afterwards."""

    def __init__(self, stack: StackEndpoints, label: str = "live") -> None:
        self.stack = stack
        self.schemas = {name: unique(f"{name}_{label}") for name in CONSUMER_GROUPS}
        self.apps = _apps(stack, self.schemas)
        self._served = {name: _Served(app) for name, app in self.apps.items()}
        self.urls = {name: served.url for name, served in self._served.items()}

    @property
    def jwt(self) -> JwtConfig:
        config: JwtConfig = self.apps["enrollment"].state.jwt
        return config

    def bearer(self, subject: str, role: str, permissions: list[str] | None = None) -> str:
        return f"Bearer {issue_token(self.jwt, subject, [role], permissions=permissions)}"

    def __enter__(self) -> LiveServices:
        for served in self._served.values():
            served.start()
        deadline = time.monotonic() + 120
        while not all(served.started() for served in self._served.values()):
            if time.monotonic() > deadline:
                raise TimeoutError("the live services did not start within 120 s")
            time.sleep(0.05)
        for name, suffix in CONSUMER_GROUPS.items():
            asyncio.run(wait_for_consumer_group(self.stack.kafka_bootstrap, f"{self.schemas[name]}-{suffix}"))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for served in self._served.values():
            served.stop()
        asyncio.run(self._drop_schemas())

    async def _drop_schemas(self) -> None:
        conn = await asyncpg.connect(self.stack.admin_dsn)
        try:
            for schema in self.schemas.values():
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
