"""Operations metrics as Prometheus scrapes them: request durations by route template (an unhandled
exception counted as the 500 it becomes), the outbox backlog and its oldest row's age while the relay
is stuck, and a consumer group's lag per partition on the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families

from conftest import PrivateTopics, StackEndpoints, eventually, unique
from contracts.envelope import Envelope, to_kafka
from contracts.events import ParticipantWithdrawn
from runtime import service as service_module
from runtime.auth import issue_token
from runtime.consumer import EventConsumer
from runtime.db import create_pool, migrate
from runtime.metrics import RuntimeMetrics
from runtime.outbox import add_to_outbox
from runtime.service import ServiceSpec, create_app
from runtime.settings import ServiceSettings

router = APIRouter()


@router.get("/things/{thing_id}")
async def get_thing(thing_id: str) -> dict[str, str]:
    return {"thing_id": thing_id}


@router.post("/things/{thing_id}/explode")
async def explode(thing_id: str) -> dict[str, str]:
    raise RuntimeError(f"a bug while handling {thing_id}")


def _app(**settings: object) -> FastAPI:
    return create_app(ServiceSpec(name="probe", settings=ServiceSettings(**settings), routers=[router]))  # type: ignore[arg-type]


def _client(app: FastAPI, token: str | None = None) -> httpx.AsyncClient:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://svc", headers=headers)


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of ``name`` in a scrape, keyed by its sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


async def test_requests_are_timed_by_route_template_and_an_unhandled_exception_counts_as_a_500() -> None:
    app = _app(database_url="postgresql://nobody@127.0.0.1:1/none")  # never connected: no lifespan runs
    token = issue_token(app.state.jwt, "admin-1", ["admin"])
    async with _client(app, token) as client:
        assert (await client.get("/things/t-1")).status_code == 200
        assert (await client.get("/things/t-2")).status_code == 200
        assert (await client.post("/things/t-3/explode")).status_code == 500
        assert (await client.get("/no/such/path/p-9")).status_code == 404
        assert (await client.request("BREW", "/things/t-4")).status_code == 405
    async with _client(app) as anonymous:
        assert (await anonymous.get("/things/t-5")).status_code == 401
        text = (await anonymous.get("/metrics")).text

    counts = _samples(text, "probe_http_request_duration_seconds_count")
    assert counts[_key(method="GET", route="/things/{thing_id}", status="200")] == 2
    assert counts[_key(method="POST", route="/things/{thing_id}/explode", status="500")] == 1
    assert counts[_key(method="GET", route="unmatched", status="404")] == 1
    assert counts[_key(method="other", route="/things/{thing_id}", status="405")] == 1
    assert counts[_key(method="GET", route="unmatched", status="401")] == 1  # refused before routing
    assert not any("t-" in value or "p-9" in value for labels in counts for _, value in labels)
    totals = _samples(text, "probe_http_requests_total")
    assert totals[_key(method="POST", route="/things/{thing_id}/explode", status="500")] == 1
    buckets = _samples(text, "probe_http_request_duration_seconds_bucket")
    assert buckets[_key(method="GET", route="/things/{thing_id}", status="200", le="+Inf")] == 2


@pytest.fixture
async def stuck_relay_app(
    stack: StackEndpoints, scratch_schemas: list[str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastAPI]:
    """A running service whose outbox relay has been stopped: rows written now stay unpublished."""
    monkeypatch.setattr(service_module, "configure_logging", lambda *_: None)
    schema = unique("svc")
    scratch_schemas.append(schema)
    app = _app(database_url=stack.admin_dsn, db_schema=schema, kafka_bootstrap=stack.kafka_bootstrap)
    async with app.router.lifespan_context(app):
        relay: asyncio.Task[None] = app.state.relay_task
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
        yield app


def _withdrawn(seq: int) -> Envelope:
    data = ParticipantWithdrawn(program_id="prg-m", participant_id=f"p-{seq}", withdrawn_at=datetime.now(UTC))
    return Envelope(data=data)


@pytest.mark.stack
async def test_the_outbox_backlog_its_oldest_rows_age_and_readiness_are_measured_at_each_scrape(
    stuck_relay_app: FastAPI,
) -> None:
    pool: asyncpg.Pool = stuck_relay_app.state.ctx.pool
    async with _client(stuck_relay_app) as client:
        text = (await client.get("/metrics")).text
        assert _samples(text, "probe_outbox_pending_events") == {(): 0.0}
        assert _samples(text, "probe_outbox_oldest_pending_age_seconds") == {(): 0.0}
        assert _samples(text, "probe_ready") == {(): 0.0}  # what /health/ready says: the relay has ended
        checks = _samples(text, "probe_readiness_check")
        assert checks == {_key(check="database"): 1.0, _key(check="broker"): 1.0, _key(check="outbox_relay"): 0.0}

        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, *[_withdrawn(i) for i in range(3)])
        await pool.execute(
            "UPDATE outbox SET created_at = now() - interval '10 minutes' WHERE id = (SELECT min(id) FROM outbox)"
        )
        text = (await client.get("/metrics")).text
        assert _samples(text, "probe_outbox_pending_events") == {(): 3.0}
        [age] = _samples(text, "probe_outbox_oldest_pending_age_seconds").values()
        assert 600 <= age < 900

        await pool.execute("UPDATE outbox SET published_at = now()")
        text = (await client.get("/metrics")).text
        assert _samples(text, "probe_outbox_pending_events") == {(): 0.0}
        assert _samples(text, "probe_outbox_oldest_pending_age_seconds") == {(): 0.0}


@pytest.mark.stack
async def test_a_consumer_that_cannot_apply_shows_its_lag_per_partition_until_it_catches_up(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics
) -> None:
    topic = await private_topics("lag", partitions=2)
    schema = unique("lag")
    scratch_schemas.append(schema)
    pool = await create_pool(stack.admin_dsn, schema)
    await migrate(pool, schema, {})
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    database_away = True

    async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
        if database_away:
            raise ConnectionRefusedError("the database is away")  # infrastructure: retried, never dead-lettered

    metrics = RuntimeMetrics("lagprobe")
    consumer = EventConsumer(
        name=unique("lag-group"), pool=pool, producer=producer, topics=(topic,),
        handlers={ParticipantWithdrawn: handler}, metrics=metrics, min_backoff_seconds=0.05, max_backoff_seconds=0.2,
    )  # fmt: skip
    for seq in range(7):
        record = to_kafka(_withdrawn(seq))
        await producer.send_and_wait(
            topic.name, record.value, key=record.key, headers=record.headers, partition=seq % 2
        )
    task = asyncio.create_task(consumer.run(stack.kafka_bootstrap))

    def lag(partition: int) -> float | None:
        labels = {"consumer": consumer.name, "topic": topic.name, "partition": str(partition)}
        return metrics.registry.get_sample_value("lagprobe_consumer_lag_events", labels)

    async def lagging() -> bool:
        return lag(0) == 4 and lag(1) == 3

    async def caught_up() -> bool:
        return lag(0) == 0 and lag(1) == 0

    try:
        await eventually(lagging, 30, "the lag of the events the consumer cannot apply")
        database_away = False
        await eventually(caught_up, 30, "no lag once the events are applied")
        applied = {"topic": topic.name, "outcome": "applied"}
        assert metrics.registry.get_sample_value("lagprobe_events_consumed_total", applied) == 7
        dead = {"topic": topic.name, "outcome": "dead_lettered"}
        assert metrics.registry.get_sample_value("lagprobe_events_consumed_total", dead) == 0
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 30)
        await producer.stop()
        await pool.close()
    assert lag(0) is None and lag(1) is None  # a stopped consumer holds no partition: no stale series
