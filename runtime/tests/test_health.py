"""Readiness's parts: the outage watch (pure), the probes against the real database and broker
behind a loopback proxy that refuses or black-holes (``tests/faultproxy.py``), and the 503 a request
meeting an outage answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from conftest import StackEndpoints, eventually
from runtime.db import create_pool
from runtime.errors import install_http_errors
from runtime.health import BrokerProbe, DatabaseProbe, OutageWatch, Readiness, install_unavailable_errors
from runtime.supervision import Supervisor, TaskStatus
from tests.faultproxy import TcpProxy, via

# The outage watch -------------------------------------------------------------------------------------


def _failing(since: float, last: float) -> TaskStatus:
    status = TaskStatus("consumer:x", running=True, reason="retrying a batch: ConnectionRefusedError")
    status.since, status.last_failure_at = since, last
    return status


def test_a_task_that_failed_within_an_outage_that_ended_is_recovering() -> None:
    watch = OutageWatch(last_fine=10.0)
    watch.observe(20.0, fine=False)  # the outage, seen
    assert not watch.explains(_failing(since=12.0, last=19.0)), "the outage is not over"
    watch.observe(30.0, fine=True)  # seen over
    assert watch.explains(_failing(since=12.0, last=25.0))


def test_a_task_that_failed_again_after_the_outage_ended_counts_again() -> None:
    watch = OutageWatch(last_fine=10.0)
    watch.observe(20.0, fine=False)
    watch.observe(30.0, fine=True)
    assert not watch.explains(_failing(since=12.0, last=31.0))


def test_a_task_failing_before_the_outage_began_is_not_excused_by_it() -> None:
    watch = OutageWatch(last_fine=10.0)
    watch.observe(20.0, fine=False)
    watch.observe(30.0, fine=True)
    assert not watch.explains(_failing(since=5.0, last=25.0)), "it already failed while all was fine"


def test_without_an_outage_seen_a_failing_task_counts() -> None:
    watch = OutageWatch(last_fine=10.0)
    watch.observe(20.0, fine=True)
    assert not watch.explains(_failing(since=12.0, last=15.0))


def test_a_late_round_does_not_undo_a_newer_one() -> None:
    watch = OutageWatch(last_fine=10.0)
    watch.observe(20.0, fine=False)
    watch.observe(30.0, fine=True)
    watch.observe(25.0, fine=False)  # began before the round that saw the infrastructure back
    assert not watch.down
    assert watch.explains(_failing(since=12.0, last=26.0))


def test_a_stopped_task_is_never_recovering() -> None:
    watch = OutageWatch(last_fine=10.0)
    watch.observe(20.0, fine=False)
    watch.observe(30.0, fine=True)
    status = _failing(since=12.0, last=25.0)
    status.running = False
    assert not watch.explains(status)


# The probes on the real stack -----------------------------------------------------------------------


@pytest.fixture
async def kafka_proxy(stack: StackEndpoints) -> AsyncIterator[TcpProxy]:
    host, port = stack.kafka_bootstrap.rsplit(":", 1)
    proxy = TcpProxy(host, int(port))
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.mark.stack
@pytest.mark.parametrize("fault", ["cut", "blackhole"])
async def test_the_database_probe_answers_no_within_bounds_and_yes_once_the_database_is_back(
    stack: StackEndpoints, pg_proxy: TcpProxy, fault: str
) -> None:
    probe = DatabaseProbe(via(stack.admin_dsn, pg_proxy.port), "readiness_probe_test")
    try:
        assert await probe.check()
        await (pg_proxy.cut() if fault == "cut" else pg_proxy.blackhole())
        async with asyncio.timeout(10):  # bounded: a silent connection is not waited on
            assert not await probe.check()
            assert not await probe.check()
        await pg_proxy.restore()
        await eventually(probe.check, 15, "the probe to see the database again")
    finally:
        await probe.close()


@pytest.mark.stack
@pytest.mark.parametrize("fault", ["cut", "blackhole"])
async def test_the_broker_probe_answers_no_within_bounds_and_never_wedges_after_a_partition(
    kafka_proxy: TcpProxy, fault: str
) -> None:
    """FastStream's admin-client ping stayed false for minutes after a partition healed (its connection
    was never closed); a probe's own client is closed after each probe, so nothing silent is reused."""
    probe = BrokerProbe(f"127.0.0.1:{kafka_proxy.port}", "readiness-probe-test")
    assert await probe.check()
    await (kafka_proxy.cut() if fault == "cut" else kafka_proxy.blackhole())
    async with asyncio.timeout(10):
        assert not await probe.check()
        assert not await probe.check()
    await kafka_proxy.restore()
    await eventually(probe.check, 15, "the probe to see the broker again")


@pytest.mark.stack
async def test_probes_asked_at_once_share_one_attempt(stack: StackEndpoints, pg_proxy: TcpProxy) -> None:
    probe = DatabaseProbe(via(stack.admin_dsn, pg_proxy.port), "readiness_probe_test")
    try:
        answers = await asyncio.gather(*(probe.check() for _ in range(5)))
        assert answers == [True] * 5
        assert pg_proxy.connections == 1, "one connection, shared, not one per caller"
    finally:
        await probe.close()


async def _broker_fine() -> bool:
    return True


@pytest.mark.stack
async def test_once_readiness_sees_the_database_back_the_pools_silenced_connections_are_replaced(
    stack: StackEndpoints, pg_proxy: TcpProxy
) -> None:
    """After a partition, an idle pool connection stays silent for good: without being replaced, its next
    statement would wait the whole statement timeout (60 s) before failing."""
    dsn = via(stack.admin_dsn, pg_proxy.port)
    pool = await create_pool(dsn, "public", min_size=2, max_size=2)
    probe = DatabaseProbe(dsn, "readiness_pool_test")
    readiness = Readiness(probe.check, _broker_fine, Supervisor(), on_database_back=pool.expire_connections)
    try:
        assert (await readiness.evaluate())[0]
        await pg_proxy.blackhole()
        ok, body = await readiness.evaluate()
        assert not ok and body["checks"]["database"] is False
        await pg_proxy.restore()

        async def ready() -> bool:
            return (await readiness.evaluate())[0]

        await eventually(ready, 15, "readiness to see the database back")
        async with asyncio.timeout(20):  # far below the statement timeout a silenced connection would cost
            assert [await pool.fetchval("SELECT 1") for _ in range(4)] == [1] * 4
    finally:
        await probe.close()
        pool.terminate()


@pytest.mark.stack
async def test_a_connection_whose_statement_timed_out_is_closed_so_its_rollback_does_not_wait_again(
    stack: StackEndpoints, pg_proxy: TcpProxy
) -> None:
    """In a partition the ``ROLLBACK`` after a timed-out statement waited a second statement timeout
    on the same silent connection; the pool closes such a connection instead (runtime/db.py)."""
    pool = await create_pool(via(stack.admin_dsn, pg_proxy.port), "public", min_size=1, max_size=1,
                             statement_timeout=1.0)  # fmt: skip
    try:
        async with pool.acquire() as conn:
            with pytest.raises((TimeoutError, asyncpg.InterfaceError)) as raised:
                async with conn.transaction():
                    await conn.execute("SELECT 1")
                    await pg_proxy.blackhole()
                    await conn.execute("SELECT 2")
        # the statement timed out, and the rollback met a closed connection instead of a second timeout
        assert isinstance(raised.value, asyncpg.InterfaceError), repr(raised.value)
        assert isinstance(raised.value.__context__, TimeoutError)
        await pg_proxy.restore()
        assert await pool.fetchval("SELECT 3") == 3, "the pool opened a fresh connection"
    finally:
        pool.terminate()


# Requests during an outage ---------------------------------------------------------------------------


def _failing_app(exc: Exception) -> FastAPI:
    app = FastAPI()
    install_http_errors(app)
    install_unavailable_errors(app)

    @app.get("/thing")
    async def thing() -> None:
        raise exc

    return app


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connect call failed ('10.0.0.7', 5432)"),
        TimeoutError(),
        OSError(113, "Connect call failed ('10.0.0.7', 5432)"),  # host unreachable
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InternalClientError("protocol is in an unknown state"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        KafkaConnectionError("Unable to bootstrap from [('10.0.0.7', 9092)]"),
    ],
    ids=type,
)
async def test_a_request_meeting_an_outage_answers_503_in_the_one_shape_naming_nothing_of_it(exc: Exception) -> None:
    transport = httpx.ASGITransport(app=_failing_app(exc), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        r = await client.get("/thing")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    (item,) = r.json()["detail"]
    assert item["loc"] == [] and item["type"] == "unavailable"
    assert not any(leak in item["msg"] for leak in ("10.0.0.7", "5432", "Connect", "closed", "starting"))


@pytest.mark.parametrize("exc", [FileNotFoundError(2, "no such file"), asyncpg.DataError("bad")], ids=type)
async def test_other_errors_keep_their_own_answer(exc: Exception) -> None:
    app = _failing_app(exc)

    @app.exception_handler(asyncpg.DataError)
    async def unstorable(_: object, __: Exception) -> JSONResponse:  # as runtime.service maps it
        return JSONResponse({"detail": []}, status_code=422)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        r = await client.get("/thing")
    assert r.status_code == (422 if isinstance(exc, asyncpg.DataError) else 500)
