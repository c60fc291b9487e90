"""Readiness: what ``/health/ready`` answers, and why it comes back as soon as an outage ends.

Ready means the database and the broker answer *and* every supervised task (outbox relay, consumers,
background loops: :mod:`runtime.supervision`) works without a current failure. Three rules keep the
answer true during an outage and prompt after it, each learnt from an outside-in probe:

- **Probes that cannot wedge.** The database is probed on a connection of the readiness check's own
  (not the pool's: a pool busy with a backlog, or holding connections that went silent, must not make
  a reachable database look down), kept between probes and dropped after any failure, so the next
  probe connects afresh. The broker is probed with a client made for the probe and closed after it
  (connect and a metadata request, bounded by a request timeout shorter than the wait for it). The
  former broker check, FastStream's admin client under a shorter outer timeout, kept a connection that
  a partition had silenced: the outer timeout cancelled each request before the client's own timeout
  could close the connection, so readiness stayed 503 for minutes after the broker was back while the
  producer and the consumers already worked again.
- **The real clients' health.** A task that cannot do its work (the relay's producer, a consumer's
  batch) reports it through its status, and readiness names it: a failure the probes cannot see
  (a topic the relay cannot write, a broken handler) still shows.
- **The probes decide when an outage has ended.** A task backs off while the infrastructure is away
  (capped, so it does not hammer a database that is down), and would otherwise keep readiness at 503
  until its next attempt, up to its cap after the outage ended (10-30 s). :class:`OutageWatch` remembers
  when the probes last saw everything fine before an outage and when they first saw it fine again; a
  task whose failure began within that outage, and which has not failed since the probes saw the
  infrastructure back, is *recovering*: shown in the answer, not counted against readiness. Should it
  fail again after the infrastructure came back, it counts again. When the database is back, the pool's
  connections from before are replaced as they are next acquired (one a partition silenced would
  otherwise hold its next statement for the whole statement timeout). Only an outage that a readiness check
  saw is known (Kubernetes asks every few seconds; so does the ``/metrics`` scrape): without one, the
  tasks' own next success decides, as before.

And a request that meets the outage answers 503 in the one error shape, not a 500
(:func:`install_unavailable_errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from runtime.errors import ErrorItem
from runtime.supervision import Supervisor, TaskStatus

log = logging.getLogger(__name__)

PROBE_SECONDS = 2.0
"""How long one probe may take before it counts as a failure (and its connection is dropped)."""

BROKER_REQUEST_MS = 1500
"""The broker probe's client gives up on a request before readiness gives up waiting for it, so the
client, not a cancellation from outside, ends the attempt, and nothing of it outlives the probe."""


class _SingleFlight:
    """One probe at a time; a caller arriving while one is in flight shares its answer (readiness and a
    metrics scrape at once must not open two connections, nor use one connection twice at once)."""

    def __init__(self, probe: Callable[[], Awaitable[bool]]) -> None:
        self._probe = probe
        self._inflight: asyncio.Task[bool] | None = None

    async def __call__(self) -> bool:
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._guarded())
        return await asyncio.shield(self._inflight)

    async def cancel(self) -> None:
        """Stop a probe in flight (at shutdown)."""
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
            with contextlib.suppress(BaseException):
                await self._inflight

    async def _guarded(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_SECONDS + 1.0):
                return await self._probe()
        except Exception as exc:  # any failure of a probe is a "no": readiness says which check
            log.debug("readiness probe failed", extra={"error_type": type(exc).__name__})
            return False


class DatabaseProbe:
    """``SELECT 1`` on the readiness check's own connection (see the module docstring)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self._dsn = dsn
        self._schema = schema
        self._conn: asyncpg.Connection | None = None
        self.check = _SingleFlight(self._probe)

    async def _probe(self) -> bool:
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(
                    self._dsn,
                    timeout=PROBE_SECONDS,
                    command_timeout=PROBE_SECONDS,
                    server_settings={"application_name": self._schema},
                )
            return bool(await self._conn.fetchval("SELECT 1", timeout=PROBE_SECONDS) == 1)
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()  # no goodbye over a connection that may be silent
            self._conn = None

    async def close(self) -> None:
        await self.check.cancel()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 1.0)
            self._drop()


class BrokerProbe:
    """Bootstrap a client made for this probe (connect, metadata), then close it (module docstring)."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self.check = _SingleFlight(self._probe)

    async def _probe(self) -> bool:
        client = AIOKafkaClient(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            request_timeout_ms=BROKER_REQUEST_MS,
        )
        try:
            await client.bootstrap()
            return True
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 1.0)


@dataclass
class OutageWatch:
    """When the probes last saw the infrastructure fine before an outage, and first saw it fine after.

    Times are ``time.monotonic()`` at the *start* of a probe round: a round that began before the
    infrastructure came back and ended after cannot claim more than it saw."""

    last_fine: float = field(default_factory=time.monotonic)
    outage_from: float | None = None
    back_at: float | None = None
    down: bool = False
    _latest_round: float = 0.0

    def observe(self, started: float, fine: bool) -> None:
        if started < self._latest_round:
            return  # an older round finishing late says nothing newer than what was already seen
        self._latest_round = started
        if fine:
            if self.down:
                self.down = False
                self.back_at = started
            self.last_fine = started
        elif not self.down:
            self.down = True
            self.outage_from = self.last_fine
            self.back_at = None

    def explains(self, status: TaskStatus) -> bool:
        """The task's failure began within an outage the probes saw end, and it has not failed since."""
        if self.down or self.back_at is None or self.outage_from is None:
            return False
        if status.since is None or status.last_failure_at is None or not status.running:
            return False
        return status.since >= self.outage_from and status.last_failure_at < self.back_at


@dataclass
class Readiness:
    """The answer of ``/health/ready``: the probes, the supervised tasks, and the outage between them."""

    database: Callable[[], Awaitable[bool]]
    broker: Callable[[], Awaitable[bool]]
    supervisor: Supervisor
    on_database_back: Callable[[], Awaitable[None]] | None = None
    """Called once when the database answers again after the probe saw it down: the service's pool
    expires its connections (``asyncpg.Pool.expire_connections``), since an idle one from before a
    partition may be silenced for good and would cost its next user the whole statement timeout."""
    watch: OutageWatch = field(default_factory=OutageWatch)
    _database_down: bool = False

    async def evaluate(self) -> tuple[bool, dict[str, Any]]:
        started = time.monotonic()
        db_ok, broker_ok = await asyncio.gather(self.database(), self.broker())
        self.watch.observe(started, db_ok and broker_ok)
        if not db_ok:
            self._database_down = True
        elif self._database_down:
            self._database_down = False
            if self.on_database_back is not None:
                await self.on_database_back()
        checks: dict[str, bool] = {"database": db_ok, "broker": broker_ok}
        failing: dict[str, str] = {}
        recovering: dict[str, str] = {}
        for name, why in self.supervisor.failing().items():
            if self.watch.explains(self.supervisor.statuses[name]):
                recovering[name] = why
            else:
                failing[name] = why
        checks.update({name: name not in failing for name in self.supervisor.statuses})
        ok = all(checks.values())
        body: dict[str, Any] = {"status": "ok" if ok else "unavailable", "checks": checks}
        if failing:
            body["failing"] = failing
        if recovering:
            body["recovering"] = recovering  # failed during an outage that has ended; its next attempt is due
        return ok, body


# Requests during an outage ---------------------------------------------------------------------------

_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ETIMEDOUT}

INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # connection refused, reset, a host unreachable or not resolved; TimeoutError: no answer in time
    asyncpg.InterfaceError,  # the connection was closed under the request (DataError has its own 422)
    asyncpg.InternalClientError,  # the protocol's state after a connection was closed under a statement
    asyncpg.PostgresConnectionError,  # SQLSTATE 08
    asyncpg.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.OperatorInterventionError,  # 57: shutting down, starting up, statement cancelled
    KafkaError,
)
"""What a request meets when the database or the broker is away: 503, not a 500 (see
:func:`install_unavailable_errors`)."""


def _is_infrastructure(exc: Exception) -> bool:
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return exc.errno in _UNREACHABLE_ERRNOS  # not a file the code could not open: that is a bug, a 500
    return True


def install_unavailable_errors(app: FastAPI) -> None:
    """A request that fails because the database or the broker cannot be reached (refused, reset, no
    answer within the statement timeout, shutting down) answers 503 in the one error shape, with a
    ``Retry-After``: the client's request was fine and may be sent again, and the API says so instead
    of an internal error. The message names no host, port or library: those stay in the log (the type)."""

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        if not _is_infrastructure(exc):
            raise exc  # the catch-all answers it: an internal error
        log.warning("request failed: database or broker unavailable", extra={"error_type": type(exc).__name__})
        item = ErrorItem(
            loc=[], msg="the service cannot reach its database or broker right now; try again shortly",
            type="unavailable",
        )  # fmt: skip
        return JSONResponse({"detail": [item.model_dump()]}, status_code=503, headers={"Retry-After": "5"})

    for kind in INFRASTRUCTURE_ERRORS:
        app.add_exception_handler(kind, unavailable)
