"""The outbox on the real database: per-key commit order under concurrent writers, a relay that survives
database and broker failures, and migrations that two replicas may run at once."""

from __future__ import annotations

import asyncio
import io
import random
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from conftest import StackEndpoints, eventually, unique
from contracts.envelope import Envelope
from contracts.events import ParticipantWithdrawn
from runtime.db import RUNTIME_SQL, create_pool, migrate
from runtime.metrics import RuntimeMetrics
from runtime.outbox import OutboxRelay, add_to_outbox, lock_outbox_keys

pytestmark = pytest.mark.stack


def _withdrawn(program: str, participant: str) -> Envelope:
    return Envelope(
        data=ParticipantWithdrawn(program_id=program, participant_id=participant, withdrawn_at=datetime.now(UTC))
    )


@pytest.fixture
async def outbox_pool(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[asyncpg.Pool]:
    schema = unique("outbox")
    scratch_schemas.append(schema)
    pool = await create_pool(stack.admin_dsn, schema, max_size=30)
    await migrate(pool, schema, {})
    yield pool
    await pool.close()


async def _waiting_on_advisory_lock(pool: asyncpg.Pool, backend_pid: int) -> bool:
    row = await pool.fetchrow("SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = $1", backend_pid)
    return row is not None and row["wait_event_type"] == "Lock" and row["wait_event"] == "advisory"


async def test_a_second_writer_of_a_key_waits_for_the_first_so_ids_follow_commit_order(
    outbox_pool: asyncpg.Pool,
) -> None:
    first_inserted, release_first = asyncio.Event(), asyncio.Event()
    second_pid: list[int] = []

    async def first() -> None:
        async with outbox_pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, _withdrawn("prg-a", "first"))
            first_inserted.set()
            await release_first.wait()

    async def second() -> None:
        async with outbox_pool.acquire() as conn, conn.transaction():
            second_pid.append(conn.get_server_pid())
            await add_to_outbox(conn, _withdrawn("prg-a", "second"))

    one = asyncio.create_task(first())
    await first_inserted.wait()
    two = asyncio.create_task(second())
    try:
        await eventually(lambda: _truthy(second_pid), 10, "the second writer to start")
        # The second writer is parked on the key's lock (not racing ahead to draw a later id, commit first).
        await eventually(lambda: _waiting_on_advisory_lock(outbox_pool, second_pid[0]), 10, "the second to wait")
        assert not two.done()
        # Another key is not held up by the open transaction.
        async with asyncio.timeout(5):
            async with outbox_pool.acquire() as conn, conn.transaction():
                await add_to_outbox(conn, _withdrawn("prg-b", "other"))
    finally:
        release_first.set()
        await asyncio.gather(one, two)
    rows = await outbox_pool.fetch("SELECT payload FROM outbox WHERE key = 'prg-a' ORDER BY id")
    assert [b"first" in r["payload"] for r in rows] == [True, False]


async def _truthy(values: list[int]) -> bool:
    return bool(values)


async def test_concurrent_writers_never_let_a_later_id_of_a_key_become_visible_before_an_earlier_one(
    outbox_pool: asyncpg.Pool,
) -> None:
    """A poller plays the relay: whenever it sees id N of a key, every smaller id of that key that will
    ever commit must already be visible, or the relay would publish N first. Batches of mixed keys in
    random order must not deadlock."""
    keys = [f"prg-{i}" for i in range(4)]
    rng = random.Random(7)
    stop = asyncio.Event()
    snapshots: list[dict[str, list[int]]] = []

    async def writer(w: int) -> None:
        for n in range(8):
            picked = rng.sample(keys, rng.randint(1, 3))
            async with outbox_pool.acquire() as conn, conn.transaction():
                await add_to_outbox(conn, *(_withdrawn(k, f"w{w}-{n}-{k}") for k in picked))
                await asyncio.sleep(rng.random() * 0.02)  # hold the transaction open a little

    async def poller() -> None:
        while not stop.is_set():
            seen: dict[str, list[int]] = {}
            for r in await outbox_pool.fetch("SELECT id, key FROM outbox ORDER BY id"):
                seen.setdefault(r["key"], []).append(r["id"])
            snapshots.append(seen)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(poller())
    async with asyncio.timeout(60):  # a deadlock would hang here
        await asyncio.gather(*(writer(w) for w in range(12)))
    stop.set()
    await watcher
    final: dict[str, list[int]] = {}
    for r in await outbox_pool.fetch("SELECT id, key FROM outbox ORDER BY id"):
        final.setdefault(r["key"], []).append(r["id"])
    assert sum(len(v) for v in final.values()) > 12 * 8
    for seen in snapshots:
        for key, ids in seen.items():
            assert ids == final[key][: len(ids)], f"{key}: saw {ids} while an earlier id was still uncommitted"


async def test_lock_outbox_keys_serialises_writers_that_copy_their_own_rows(outbox_pool: asyncpg.Pool) -> None:
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with outbox_pool.acquire() as conn, conn.transaction():
            await lock_outbox_keys(conn, "mentoring.enrollment.v1", ["prg-x", "prg-y"])
            held.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await held.wait()
    async with outbox_pool.acquire() as conn:
        pid = conn.get_server_pid()
        tx = conn.transaction()
        await tx.start()
        writing = asyncio.create_task(add_to_outbox(conn, _withdrawn("prg-y", "late")))
        try:
            await eventually(lambda: _waiting_on_advisory_lock(outbox_pool, pid), 10, "the writer to wait")
        finally:
            release.set()
            await asyncio.gather(task, writing)
            await tx.commit()


async def test_add_to_outbox_outside_a_transaction_is_refused(outbox_pool: asyncpg.Pool) -> None:
    async with outbox_pool.acquire() as conn:
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await add_to_outbox(conn, _withdrawn("prg", "p"))


class _FlakyProducer:
    """Sends into a list; the first ``failures`` sends fail like a broker that is not answering."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> Awaitable[Any]:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("broker 127.0.0.1:1 unreachable")
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_relay_survives_broker_and_database_failures_and_logs_no_payload(
    stack: StackEndpoints, outbox_pool: asyncpg.Pool, json_log: io.StringIO
) -> None:
    schema = await outbox_pool.fetchval("SELECT current_schema()")
    marker = "SECRET-PAYLOAD-" + unique("m")
    async with outbox_pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, _withdrawn("prg-1", marker))
    producer = _FlakyProducer(failures=2)
    metrics = RuntimeMetrics("probe")
    app_name = unique("relay-under-test")
    relay_pool = await asyncpg.create_pool(
        stack.admin_dsn, min_size=1, max_size=2, server_settings={"search_path": schema, "application_name": app_name}
    )
    relay = OutboxRelay(
        relay_pool,
        producer,
        schema=schema,
        metrics=metrics,
        poll_seconds=0.1,
        min_backoff=0.05,
        max_backoff=0.2,
    )
    task = asyncio.create_task(relay.run())
    try:

        async def published(count: int) -> bool:
            return bool(
                await outbox_pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") == count
            )

        await eventually(lambda: published(1), 20, "the relay to publish after two failed sends")
        assert not task.done()

        # The database drops every connection of this schema (a restart, a failover): the relay reconnects.
        await outbox_pool.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            app_name,
        )
        async with outbox_pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, _withdrawn("prg-1", "after-restart"))
        await eventually(lambda: published(2), 30, "the relay to publish after its connection was killed")
        assert not task.done()
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
        await relay_pool.close()
    errors = metrics.registry.get_sample_value("probe_outbox_relay_errors_total", {"error": "ConnectionError"})
    assert errors == 2
    database_errors = [
        sample.value
        for metric in metrics.registry.collect()
        for sample in metric.samples
        if sample.name == "probe_outbox_relay_errors_total" and sample.labels["error"] != "ConnectionError"
    ]
    assert sum(database_errors) >= 1, "the killed connection was noticed and survived"
    output = json_log.getvalue()
    assert "outbox relay failed" in output
    assert marker not in output
    assert len(producer.sent) >= 2


async def test_replicas_migrating_a_fresh_schema_at_once_do_not_collide(
    stack: StackEndpoints, scratch_schemas: list[str]
) -> None:
    schema = unique("migrate")
    scratch_schemas.append(schema)
    pools = [await create_pool(stack.admin_dsn, schema, max_size=1) for _ in range(6)]
    try:
        results = await asyncio.gather(*(migrate(p, schema, {}) for p in pools))
    finally:
        await asyncio.gather(*(p.close() for p in pools))
    runtime_migrations = len(list(RUNTIME_SQL.glob("*.sql")))
    assert sorted(len(r) for r in results) == [0, 0, 0, 0, 0, runtime_migrations], "one replica applies, once"


async def test_the_relay_deletes_published_rows_after_the_retention_period_and_never_unpublished_ones(
    outbox_pool: asyncpg.Pool,
) -> None:
    schema = await outbox_pool.fetchval("SELECT current_schema()")
    async with outbox_pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, _withdrawn("prg-1", "old"), _withdrawn("prg-1", "recent"))
    # "old" was published 8 days ago, "recent" an hour ago; a third row is not published yet.
    await outbox_pool.execute(
        "UPDATE outbox SET published_at = now() - CASE WHEN id = (SELECT min(id) FROM outbox)"
        " THEN interval '8 days' ELSE interval '1 hour' END"
    )
    async with outbox_pool.acquire() as conn, conn.transaction():
        await add_to_outbox(conn, _withdrawn("prg-1", "waiting"))
    producer = _FlakyProducer(failures=0)
    relay = OutboxRelay(
        outbox_pool, producer, schema=schema, poll_seconds=0.05, min_backoff=0.05, retention_hours=24 * 7
    )
    task = asyncio.create_task(relay.run())
    try:

        async def only_recent_rows_left() -> bool:
            return bool(await outbox_pool.fetchval("SELECT count(*) FROM outbox") == 2)

        await eventually(only_recent_rows_left, 20, "the relay to purge the row published 8 days ago")
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)
    assert len(producer.sent) == 1, "the waiting row was published, the purged one was never re-sent"
    left = await outbox_pool.fetchval("SELECT count(*) FROM outbox WHERE published_at > now() - interval '2 hours'")
    assert left == 2
