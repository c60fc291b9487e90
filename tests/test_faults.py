"""Fault injection on the real broker and database: what an SRE tries before going to production.

Each test breaks one thing (a dead-letter copy too large to publish, a dead-letter topic missing, the
database cut away, a background loop failing, an event type from a newer release, a consumer killed
inside its batch, the broker cut away from a relay) and then checks that the counts agree: events in
the producer's outbox, distinct event ids on Kafka, effects in the consumer's database. Nothing lost,
nothing applied twice, nothing dead-lettered that was not poison.

Outages are simulated on a loopback TCP proxy (``tests/faultproxy.py``) that only the test's own
clients use: the shared PostgreSQL and Kafka keep serving everyone else.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from conftest import PrivateTopics, StackEndpoints, eventually, unique
from contracts.envelope import to_kafka
from runtime import deadletters
from runtime import service as service_module
from runtime.consumer import EventConsumer
from runtime.db import create_pool
from runtime.kafka import ensure_topics
from runtime.metrics import RuntimeMetrics
from runtime.outbox import OutboxRelay, make_producer
from runtime.service import ServiceSpec, create_app
from runtime.settings import ServiceSettings
from runtime.supervision import Supervisor
from services.matching import app as matching_app
from services.matching.adapters import runs as runs_repo
from tests.faultkit import (
    HANDLERS,
    add_events,
    applied_at_least,
    assert_counts_agree,
    consumer_schema,
    consuming,
    deadletters_cli,
    outbox_with,
    records_on,
    sample,
    send_raw,
    with_id,
    withdrawn,
)
from tests.faultproxy import TcpProxy, via
from tests.probe import CONSUMER_SQL
from tests.test_runtime_delivery import (
    LOGS,
    _end_offsets,
    _kill,
    _no_probe_outlives_its_test,  # noqa: F401  (autouse: no probe outlives a test here either)
    _spawn,
    _stop,
)

pytestmark = pytest.mark.stack

# 1. A dead-letter copy that cannot be published ---------------------------------------------------


async def test_a_dead_letter_too_large_for_its_topic_is_cut_kept_whole_and_the_partition_moves_on(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics
) -> None:
    topic = await private_topics("oversized", partitions=1)
    pool = await consumer_schema(stack, scratch_schemas, "faults_big")
    metrics = RuntimeMetrics("faults")
    good = to_kafka(withdrawn(unique("prg"), 1))
    body = b"x" * 1_048_200  # the broker takes it; with the dlt_* headers the copy would not fit 1 MiB
    poison = (good.key, body, with_id(good.headers, unique("big")))
    await send_raw(stack.kafka_bootstrap, topic.name, [poison, (good.key, good.value, good.headers)])

    async with consuming(stack, pool, topic, metrics) as (_, supervisor):
        await eventually(applied_at_least(pool, 1), 60, "the valid event behind the oversized one to be applied")

        async def kept() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM dead_letters") == 1)

        await eventually(kept, 30, "the oversized dead letter to be kept in the table")
        assert supervisor.failing() == {}

    [copy] = await records_on(stack.kafka_bootstrap, topic.dead_letter)
    headers = {k: v.decode() for k, v in copy.headers}
    assert headers["dlt_body_cut_bytes"] == "1048200"
    assert headers["dlt_body_stored"] == "dead_letters"
    assert headers["dlt_reason"].startswith("body is not JSON")
    assert copy.value == body[: deadletters.KEPT_BYTES]
    row = await pool.fetchrow("SELECT *, current_schema() AS schema FROM dead_letters")
    assert row["value"] == body, "the whole message is kept"
    assert row["on_topic"] and row["publish_error"] is None
    assert (row["topic"], row["partition"], row["offset"]) == (topic.name, 0, 0)
    assert sample(metrics, "faults_events_consumed_total", topic=topic.name, outcome="dead_lettered") == 1
    assert sample(metrics, "faults_events_consumed_total", topic=topic.name, outcome="applied") == 1
    assert await pool.fetchval("SELECT n FROM counter") == 1
    listed = deadletters_cli("list", "--service", "matching", "--dsn", stack.admin_dsn, "--schema", _schema_of(row),
                  "--bootstrap", stack.kafka_bootstrap)  # fmt: skip
    assert "1048200 bytes" in listed and "on .dlt, body cut" in listed
    await pool.close()


def _schema_of(row: asyncpg.Record) -> str:
    return str(row["schema"])


async def test_a_dead_letter_whose_topic_is_missing_is_kept_and_replayed_once_the_topic_exists(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deadletters, "PUBLISH_TIMEOUT_SECONDS", 3.0)
    topic = await private_topics("nodlt", partitions=1, dead_letter=False)
    pool = await consumer_schema(stack, scratch_schemas, "faults_nodlt")
    metrics = RuntimeMetrics("faults")
    good = to_kafka(withdrawn(unique("prg"), 1))
    await send_raw(
        stack.kafka_bootstrap,
        topic.name,
        [(good.key, b"{not json", with_id(good.headers, unique("bad"))), (good.key, good.value, good.headers)],
    )
    async with consuming(stack, pool, topic, metrics):
        await eventually(applied_at_least(pool, 1), 60, "the valid event behind the poison one to be applied")
    row = await pool.fetchrow("SELECT *, current_schema() AS schema FROM dead_letters")
    assert row is not None and not row["on_topic"]
    assert row["publish_error"], "why the copy could not be published is recorded"
    assert row["value"] == b"{not json"
    assert sample(metrics, "faults_dead_letters_kept_total", topic=topic.name) == 1

    await ensure_topics(stack.kafka_bootstrap, [topic])  # the operator creates the missing topic
    args = ("--service", "matching", "--dsn", stack.admin_dsn, "--schema", _schema_of(row))
    out = deadletters_cli("replay", *args, "--bootstrap", stack.kafka_bootstrap, "--to", "dlt")
    assert "replayed 1 dead letter(s)" in out
    [copy] = await records_on(stack.kafka_bootstrap, topic.dead_letter)
    assert copy.value == b"{not json"
    assert {k: v.decode() for k, v in copy.headers}["dlt_reason"].startswith("body is not JSON")
    assert await pool.fetchval("SELECT replayed_to FROM dead_letters") == topic.dead_letter
    assert "not on .dlt" not in deadletters_cli(
        "list", *args, "--bootstrap", stack.kafka_bootstrap
    )  # replayed rows hidden
    await pool.close()


# 2. A database outage -------------------------------------------------------------------------------


async def test_a_database_outage_is_waited_out_with_readiness_503_and_nothing_is_dead_lettered(
    stack: StackEndpoints,
    scratch_schemas: list[str],
    private_topics: PrivateTopics,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(service_module, "configure_logging", lambda *_: None)
    topic = await private_topics("outage", partitions=3)
    total = 3000
    src = await outbox_with(stack, scratch_schemas, topic, [withdrawn(unique("prg"), i) for i in range(total)])
    dst_schema = unique("faults_outage")
    scratch_schemas.append(dst_schema)
    pg = urlsplit(stack.admin_dsn)
    proxy = TcpProxy(pg.hostname or "127.0.0.1", pg.port or 5432)
    await proxy.start()
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "0001_applied.sql").write_text(CONSUMER_SQL)
    group = unique("faults-outage")
    settings = ServiceSettings(
        database_url=via(stack.admin_dsn, proxy.port),
        db_schema=dst_schema,
        kafka_bootstrap=stack.kafka_bootstrap,
        outbox_poll_seconds=0.1,
    )

    def consumers(ctx: service_module.ServiceContext) -> list[EventConsumer]:
        return [EventConsumer(name=group, pool=ctx.pool, producer=ctx.producer, topics=(topic,), handlers=HANDLERS,
                              metrics=ctx.metrics, batch_size=200)]  # fmt: skip

    app = create_app(ServiceSpec(name="faults", settings=settings, migrations=tmp_path / "migrations",
                                 consumers=consumers))  # fmt: skip
    dst = await create_pool(stack.admin_dsn, dst_schema)  # the test's own view, not through the proxy
    producer = make_producer(stack.kafka_bootstrap, "faults-src")
    relay = OutboxRelay(src, producer, schema=unique("faults_src"))
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://faults", timeout=30) as client,
        ):
            metrics: RuntimeMetrics = app.state.ctx.metrics
            await producer.start()
            supervisor = Supervisor()
            supervisor.start("relay", relay.run, graceful=True)
            await eventually(applied_at_least(dst, 200), 60, "the consumer to apply the first events")
            await proxy.cut()  # PostgreSQL is gone for the service, mid-burst

            async def unready() -> bool:
                body = (await client.get("/health/ready")).json()
                return f"consumer:{group}" in body.get("failing", {}) and body["checks"]["database"] is False

            await eventually(unready, 60, "readiness to answer 503 naming the consumer")

            async def retried_a_few_times() -> bool:
                return sample(metrics, "faults_events_consumed_total", topic=topic.name, outcome="retried") >= 400

            await eventually(retried_a_few_times, 60, "the consumer to retry its batch during the outage")
            assert (await client.get("/health/ready")).status_code == 503
            await proxy.restore()
            await eventually(applied_at_least(dst, total), 120, "every event to be applied once the database is back")

            async def ready() -> bool:
                return (await client.get("/health/ready")).status_code == 200

            await eventually(ready, 30, "readiness to answer 200 again")
            relay.stop()
            await supervisor.stop()
        await assert_counts_agree(src, dst, stack.kafka_bootstrap, topic, total)
    finally:
        await producer.stop()
        await proxy.close()
        await dst.close()
        await src.close()


# 3. A background loop that fails --------------------------------------------------------------------


async def test_a_failing_background_loop_is_restarted_counted_and_shown_until_it_recovers(
    stack: StackEndpoints, scratch_schemas: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "configure_logging", lambda *_: None)
    monkeypatch.setattr(matching_app, "RECOVER_EVERY_SECONDS", 0.2)
    broken = True
    real = runs_repo.fail_orphaned_runs

    async def flaky(conn: asyncpg.Connection, silent_for_seconds: float) -> list[str]:
        if broken:
            raise ConnectionResetError("database connection lost")
        return await real(conn, silent_for_seconds)

    monkeypatch.setattr(runs_repo, "fail_orphaned_runs", flaky)
    schema = unique("faults_matching")
    scratch_schemas.append(schema)
    app = matching_app.create(
        matching_app.MatchingSettings(
            database_url=stack.admin_dsn,
            kafka_bootstrap=stack.kafka_bootstrap,
            db_schema=schema,
            consumer_offset_reset="latest",
            log_level="WARNING",
        )
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://matching", timeout=30) as client,
    ):

        async def failing_shown() -> bool:
            r = await client.get("/health/ready")
            return r.status_code == 503 and "ConnectionResetError" in r.json().get("failing", {}).get(
                "orphaned_runs", ""
            )

        await eventually(failing_shown, 30, "readiness to name the failing recovery loop")

        async def restarted() -> bool:
            text = (await client.get("/metrics")).text
            line = next((x for x in text.splitlines() if x.startswith("matching_background_task_errors_total{")), "")
            return 'task="orphaned_runs"' in line and float(line.rsplit(" ", 1)[1]) >= 2

        await eventually(restarted, 30, "the loop to be restarted and its errors counted")
        broken = False
        run_id = unique("run")
        await app.state.ctx.pool.execute(
            "INSERT INTO runs (run_id, program_id, dry_run, seed, policy, status, requested_by, heartbeat_at)"
            " VALUES ($1, 'prg', false, 1, '{}'::jsonb, 'running', 'test', $2)",
            run_id,
            datetime.now(UTC) - timedelta(minutes=10),
        )

        async def orphan_failed() -> bool:
            return bool(
                await app.state.ctx.pool.fetchval("SELECT status FROM runs WHERE run_id=$1", run_id) == "failed"
            )

        await eventually(orphan_failed, 30, "the recovered loop to fail the orphaned run")

        async def ready() -> bool:
            return (await client.get("/health/ready")).status_code == 200

        await eventually(ready, 30, "readiness to answer 200 once the loop works again")


# 4. An event type from a newer release ----------------------------------------------------------------


async def test_an_unknown_event_type_is_skipped_and_counted_never_dead_lettered(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics
) -> None:
    topic = await private_topics("unknown", partitions=1)
    pool = await consumer_schema(stack, scratch_schemas, "faults_unknown")
    metrics = RuntimeMetrics("faults")
    good = to_kafka(withdrawn(unique("prg"), 1))
    future = [(k, b"org.mentoring.participant.celebrated.v1" if k == "ce_type" else v) for k, v in good.headers]
    future = with_id(future, unique("future"))
    body = json.dumps({"program_id": "prg", "participant_id": "p1", "reason": "added in a later release"}).encode()
    await send_raw(stack.kafka_bootstrap, topic.name, [(good.key, body, future), (good.key, good.value, good.headers)])
    async with consuming(stack, pool, topic, metrics) as (_, supervisor):
        await eventually(applied_at_least(pool, 1), 60, "the known event after the unknown one to be applied")
        assert supervisor.failing() == {}
    assert sample(metrics, "faults_events_consumed_total", topic=topic.name, outcome="skipped") == 1
    assert sample(metrics, "faults_events_consumed_total", topic=topic.name, outcome="dead_lettered") == 0
    assert sum((await _end_offsets(stack.kafka_bootstrap, topic.dead_letter)).values()) == 0
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    await pool.close()


# 5. kill -9 of a consumer inside its batch -----------------------------------------------------------


async def test_a_consumer_killed_inside_its_batch_applies_every_event_once_after_restart(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics
) -> None:
    topic = await private_topics("killed", partitions=3)
    total = 3000
    prefix = unique("prg")
    src = await outbox_with(stack, scratch_schemas, topic, [withdrawn(f"{prefix}-{i % 4}", i) for i in range(total)])
    producer = make_producer(stack.kafka_bootstrap, "faults-src")
    await producer.start()
    relay = OutboxRelay(src, producer, schema=unique("faults_src"))
    supervisor = Supervisor()
    supervisor.start("relay", relay.run, graceful=True)
    dst_schema = unique("faults_killed")
    scratch_schemas.append(dst_schema)
    group = unique("faults-killed")
    paused = Path(tempfile.mkdtemp(prefix="faults-")) / "paused"
    consume = ("consume", "--schema", dst_schema, "--group", group, "--prefix", prefix, "--topic", topic.name,
               "--batch", "100")  # fmt: skip
    consumer = _spawn(
        stack, *consume, env={"PROBE_CONSUMER_FREEZE_AT_EVENT": "250", "PROBE_CONSUMER_PAUSED_FILE": str(paused)}
    )
    try:

        async def frozen() -> bool:
            return paused.exists()

        await eventually(frozen, 60, "the consumer to freeze inside a batch, its transaction open")
        _kill(consumer)
        dst = await create_pool(stack.admin_dsn, dst_schema)
        before = await dst.fetchval("SELECT n FROM counter")
        assert before < 250, "the killed batch's effects were rolled back with its transaction"
        assert await dst.fetchval("SELECT count(*) FROM applied") == before
        assert await dst.fetchval("SELECT count(*) FROM processed_events") == before
        consumer = _spawn(stack, *consume)
        await eventually(applied_at_least(dst, total), 120, "every event to be applied after the restart")
        _stop(consumer)
        relay.stop()
        await supervisor.stop()
        await assert_counts_agree(src, dst, stack.kafka_bootstrap, topic, total)
        await dst.close()
    finally:
        await producer.stop()
        await src.close()


# 6. The broker cut away from a relay ------------------------------------------------------------------


async def test_a_relay_that_loses_the_broker_mid_relay_publishes_everything_once_it_is_back(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics
) -> None:
    topic = await private_topics("relaycut", partitions=3)
    prefix = unique("prg")
    chunk = 1000
    events = [withdrawn(f"{prefix}-{i % 4}", i) for i in range(3 * chunk)]
    src = await outbox_with(stack, scratch_schemas, topic, events[:chunk])
    src_schema = str(await src.fetchval("SELECT current_schema()"))
    kafka = stack.kafka_bootstrap.rsplit(":", 1)
    proxy = TcpProxy(kafka[0], int(kafka[1]))
    await proxy.start()
    relay = _spawn(
        stack,
        *("relay", "--schema", src_schema, "--batch", "200"),
        env={
            "PROBE_KAFKA_VIA": f"127.0.0.1:{proxy.port}",
            "PROBE_KAFKA_TIMEOUT_MS": "3000",
            "PROBE_RELAY_ACK_TIMEOUT_SECONDS": "3",
        },
    )
    dst = await consumer_schema(stack, scratch_schemas, "faults_relaycut")
    metrics = RuntimeMetrics("faults")
    try:
        async with consuming(stack, dst, topic, metrics):

            async def published(n: int) -> bool:
                return bool(await src.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL") >= n)

            await eventually(partial(published, chunk), 60, "the relay to publish the first events")
            await proxy.cut()  # the broker is gone for the relay
            await add_events(src, topic, events[chunk : 2 * chunk])

            async def relay_failed() -> bool:
                # Its sends are not acknowledged in time: it reports the failure and starts over
                log = LOGS[relay.pid].read_text()
                pending = await src.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                return "outbox relay failed" in log and pending == chunk

            await eventually(relay_failed, 60, "the relay to fail against the missing broker with events pending")
            await add_events(src, topic, events[2 * chunk :])
            await proxy.restore()
            await eventually(
                partial(published, 3 * chunk), 90, "the relay to publish everything once the broker is back"
            )
            await eventually(applied_at_least(dst, 3 * chunk), 90, "every event to be applied")
        _stop(relay)
        await assert_counts_agree(src, dst, stack.kafka_bootstrap, topic, 3 * chunk)
    finally:
        await proxy.close()
        await dst.close()
        await src.close()
