"""The event pipeline, end to end, in one run (prints figures; nothing is asserted):

1. the raw aiokafka consume rate of participant.enrolled records (the ceiling);
2. matching's pool projection rate: those records from Kafka into the pool, through the runtime's
   batched idempotent consumer (parse, tracking record, one upsert per batch, offset commit);
3. upload -> complete pool: from the HTTP 200 of a bulk enrolment of 10,000 and of 50,000 people until
   the last of them is in matching's pool (outbox relay, Kafka, matching's consumer);
4. single enrolments per second with 50 concurrent clients, and their p50/p99 latency, on an org of
   20,000 people.

    python -m bench.pipeline_bench [--projection-events 50000] [--sizes 10000,50000] [--singles 3000]
                                   [--enrollment-workers 1] [--projection-only] [--repeat 3]

The pool projection runs ``--repeat`` times over the same records (each into a fresh schema, by a fresh
consumer group), and a last line gives their median and range: on a shared machine one run says little
(the same code over the same records ran at 22,000 and at 38,000 events/s minutes apart).

Enrollment and matching run as separate uvicorn processes (as deployed), on free loopback ports, in
throw-away schemas, against the local stack; the bench's topics and schemas are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import httpx
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.cpu import backend_pids, cpu_seconds, tree_cpu_seconds
from bench.service_processes import CpuMeter, Service, running
from bench.synthetic_org import Person, enrolments, org_chart
from bench.timed_consumer import TimedConsumer
from contracts.base import utcnow
from contracts.envelope import Envelope, to_kafka
from contracts.events import ParticipantEnrolled, ParticipantProfile
from contracts.topics import ENROLLMENT
from deploy.local.stack import Stack
from runtime.auth import issue_token, jwt_config_from_env
from runtime.db import create_pool, migrate
from runtime.heap import settle_heap
from runtime.kafka import ensure_topics
from runtime.outbox import make_producer
from runtime.tail import wait_for_consumer_group
from services.matching.adapters.pool import HANDLERS

ROOT = Path(__file__).resolve().parent.parent
MATCHING_MIGRATIONS = ROOT / "services" / "matching" / "migrations"


def _enrolled(program_id: str, i: int) -> Envelope:
    profile = ParticipantProfile.model_validate(
        {
            "participant_id": f"E{i:07d}",
            "role": "mentee" if i % 5 else "mentor",
            "department": "Engineering",
            "level": 2 + i % 5,
            "manager_id": f"E{i // 7:07d}",
            "manager_chain": [f"E{i // 7:07d}", f"E{i // 49:07d}", "E0000000"],
            "location": "Milan",
            "utc_offset_minutes": 60,
            "languages": ["it", "en"],
            "skills_offered": ["python", "sql"],
            "skills_sought": ["leadership"],
            "goals": ["promotion"],
            "capacity": None if i % 5 else 3,
        }
    )
    return Envelope(data=ParticipantEnrolled(program_id=program_id, profile=profile, enrolled_at=utcnow()))


# 1 + 2: raw consume and pool projection ------------------------------------------------------------


async def _fill(bootstrap: str, topic: str, envelopes: Sequence[Envelope]) -> None:
    producer = make_producer(bootstrap, "bench-pipeline")
    await producer.start()
    try:
        pending = []
        for env in envelopes:
            record = to_kafka(env)
            pending.append(await producer.send(topic, record.value, key=record.key, headers=record.headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def raw_consume_rate(bootstrap: str, topic: str, partitions: int, total: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen, started = 0, time.perf_counter()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(r) for r in batches.values())
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def projection_rate(admin_dsn: str, bootstrap: str, topic: str, total: int) -> tuple[float, float, float, float]:
    """Events/s from Kafka into matching's pool (tracking record included), the batch size used, and the
    CPU time per event of the consumer process and of its PostgreSQL backends (what the rate would be
    bounded by on a core of its own each)."""
    schema = f"bench_projection_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(admin_dsn, schema, max_size=4)
    try:
        await migrate(pool, schema, {"matching": MATCHING_MIGRATIONS})
        producer = make_producer(bootstrap, "bench-projection")
        await producer.start()
        consumer = TimedConsumer(
            # as short as a service's "matching-pools": the name is in every tracking record's key
            name=f"pools-{uuid.uuid4().hex[:8]}",
            pool=pool,
            producer=producer,
            topics=(dataclasses.replace(ENROLLMENT, name=topic),),
            handlers=HANDLERS,
            expected=total,
        )
        settle_heap()  # as a service does once started (runtime/service.py)
        backends = {pid: cpu_seconds(pid) for pid in await backend_pids(admin_dsn, schema)}
        task = asyncio.create_task(consumer.run(bootstrap))
        try:
            await asyncio.wait([task, asyncio.create_task(consumer.done.wait())], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
                raise SystemExit("the consumer stopped before it applied every event: no figures")
            assert consumer.first_batch_at is not None
            elapsed = consumer.applied_at - consumer.first_batch_at
            cpu = time.process_time() - consumer.cpu_at_first_batch  # the same window as the rate
            pids = await backend_pids(admin_dsn, schema)  # a backend opened meanwhile started at 0
            database = sum(cpu_seconds(pid) - backends.get(pid, 0.0) for pid in pids)
            in_pool = await pool.fetchval("SELECT count(*) FROM pool")
            if in_pool != total:
                raise SystemExit(f"{in_pool:,} people in the pool after {total:,} events: no figures")
        finally:
            consumer.stop()
            await task
            await producer.stop()
        return total / elapsed, consumer.batch_size, cpu / total, database / total
    finally:
        await pool.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await pool.close()


# 3 + 4: the services as processes (bench.service_processes) ------------------------------------------


async def _pool_size(conn: asyncpg.Connection, schema: str, program_id: str) -> int:
    return int(await conn.fetchval(f'SELECT count(*) FROM "{schema}".pool WHERE program_id = $1', program_id))


async def upload_to_pool(
    client: httpx.AsyncClient, enrollment: Service, matching: Service, admin_dsn: str, people: list[Person], size: int
) -> tuple[float, float]:
    """(seconds until the HTTP 200, seconds from the 200 until the whole upload is in matching's pool)."""
    r = await client.post(
        f"{enrollment.url}/programs", json={"name": f"bench {size}", "form": "one_to_one", "starts_on": "2026-01-01"}
    )
    r.raise_for_status()
    program_id = r.json()["program_id"]
    rows = enrolments(people, size, seed=size)
    started = time.perf_counter()
    r = await client.post(f"{enrollment.url}/programs/{program_id}/enrolments/bulk", json=rows, timeout=600)
    r.raise_for_status()
    accepted = time.perf_counter()
    conn = await asyncpg.connect(admin_dsn)
    try:
        deadline = accepted + 600
        while await _pool_size(conn, matching.schema, program_id) < size:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{size:,} enrolments did not reach matching's pool in 600 s")
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return accepted - started, time.perf_counter() - accepted


class KeepAliveClient:
    """A bare HTTP/1.1 keep-alive connection for the single-enrolment load: httpx spends several ms of
    CPU per request, as much as the service it measures, on the same two cores. Sends a JSON POST and
    reads the status and the Content-Length body; nothing else of HTTP is needed here."""

    def __init__(self, url: str, token: str) -> None:
        parsed = httpx.URL(url)
        self.host, self.port = parsed.host, parsed.port or 80
        self.auth = f"Authorization: Bearer {token}\r\n".encode()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: object) -> tuple[int, bytes]:
        return await self.request("POST", path, json.dumps(body).encode())

    async def request(self, method: str, path: str, payload: bytes | None = None) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n".encode() + self.auth
        if payload is None:
            writer.write(head + b"\r\n")
        else:
            body_headers = f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            writer.write(head + body_headers.encode() + payload)
        status_line, *header_lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in header_lines if line)
        content = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection") == "close":
            writer.close()
            self.streams = None
        return int(status_line.split()[1]), content

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def request_floor(client: httpx.AsyncClient, service: Service, count: int = 2000) -> str:
    """The service's CPU per request of its cheapest routes, for comparison with an enrolment: the
    liveness probe (the HTTP stack alone) and one authenticated read of a program (token check, one query)."""
    r = await client.post(
        f"{service.url}/programs", json={"name": "bench floor", "form": "one_to_one", "starts_on": "2026-01-01"}
    )
    r.raise_for_status()
    token = client.headers["Authorization"].removeprefix("Bearer ")
    costs = []
    for path in ("/health/live", f"/programs/{r.json()['program_id']}"):
        left = [count]

        async def worker(path: str = path, left: list[int] = left) -> None:
            connection = KeepAliveClient(service.url, token)
            try:
                while left[0] > 0:
                    left[0] -= 1
                    status, _ = await connection.request("GET", path)
                    if status != 200:
                        raise SystemExit(f"GET {path} answered {status}: no figures")
            finally:
                connection.close()

        started = tree_cpu_seconds(service.process.pid)
        await asyncio.gather(*(worker() for _ in range(20)))
        costs.append(1000 * (tree_cpu_seconds(service.process.pid) - started) / count)
    return f"liveness probe {costs[0]:.2f} ms, one authenticated read of a program {costs[1]:.2f} ms"


async def single_enrolments(
    client: httpx.AsyncClient, enrollment: Service, people: list[Person], count: int, concurrency: int, meter: CpuMeter
) -> tuple[float, list[float]]:
    r = await client.post(
        f"{enrollment.url}/programs", json={"name": "bench singles", "form": "one_to_one", "starts_on": "2026-01-01"}
    )
    r.raise_for_status()
    program_id = r.json()["program_id"]
    rows = enrolments(people, count, seed=99)
    queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)
    latencies: list[float] = []
    failures: list[int] = []
    token = client.headers["Authorization"].removeprefix("Bearer ")

    async def worker() -> None:
        connection = KeepAliveClient(enrollment.url, token)
        try:
            while not queue.empty():
                row = queue.get_nowait()
                t0 = time.perf_counter()
                status, _ = await connection.post(f"/programs/{program_id}/enrolments", row)
                latencies.append(time.perf_counter() - t0)
                if status != 201:
                    failures.append(status)
        finally:
            connection.close()

    await meter.start()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} single enrolments failed (statuses {sorted(set(failures))}): no figures")
    return count / elapsed, latencies


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] if len(values) > 1 else values[0]


async def services_part(admin_dsn: str, bootstrap: str, sizes: list[int], singles: int, workers: int = 1) -> None:
    """Single enrolments first (org of 20,000), then the uploads (the org grown to fit the largest)."""
    token = issue_token(jwt_config_from_env("enrollment"), "bench", ["admin"])
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        running("matching", admin_dsn, bootstrap, consumer_offset_reset="latest") as matching,
        running("enrollment", admin_dsn, bootstrap, workers, consumer_offset_reset="latest") as enrollment,
        httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120, limits=limits) as client,
    ):
        await wait_for_consumer_group(bootstrap, f"{matching.schema}-pools", timeout=60)
        org = org_chart(20_000, seed=2026)
        (await client.post(f"{enrollment.url}/org-chart", json=[p.row() for p in org], timeout=600)).raise_for_status()
        if singles:
            meter = CpuMeter(admin_dsn, enrollment)
            rate, latencies = await single_enrolments(client, enrollment, org, singles, concurrency=50, meter=meter)
            print(
                f"single enrolments, org of 20,000, 50 concurrent clients, enrollment in {workers} process(es):"
                f" {rate:,.0f}/s"
                f" (p50 {_quantile(latencies, 0.5) * 1000:.0f} ms, p99 {_quantile(latencies, 0.99) * 1000:.0f} ms,"
                f" {singles:,} enrolments)   target >= 300/s\n  ({await meter.per_request_ms(singles)})"
            )
            print(f"  (enrollment CPU per request of its cheapest routes: {await request_floor(client, enrollment)})")
        if not sizes:
            return
        big = org_chart(int(max(sizes) * 1.25) + 10, seed=2026)  # the same first 20,000 people, and more
        (await client.post(f"{enrollment.url}/org-chart", json=[p.row() for p in big], timeout=600)).raise_for_status()
        for size in sizes:
            stored, to_pool = await upload_to_pool(client, enrollment, matching, admin_dsn, big, size)
            print(
                f"upload of {size:>6,} enrolments: HTTP 200 after {stored:5.2f} s, complete in matching's pool"
                f" {to_pool:5.2f} s after the 200 ({size / to_pool:,.0f} events/s)   target <= 10 s for 50,000"
            )


async def kafka_part(admin_dsn: str, bootstrap: str, events: int, repeat: int = 1) -> None:
    topic = dataclasses.replace(ENROLLMENT, name=f"bench.pipeline.{uuid.uuid4().hex[:8]}", partitions=3)
    await ensure_topics(bootstrap, [topic])
    try:
        program = f"prg-bench-{uuid.uuid4().hex[:6]}"
        await _fill(bootstrap, topic.name, [_enrolled(program, i) for i in range(events)])
        raw = raw_consume_rate(bootstrap, topic.name, topic.partitions, events)
        print(f"raw aiokafka consume ({events:,} participant.enrolled records): {await raw:,.0f} records/s")
        rates = []
        for _ in range(repeat):  # each into a fresh schema, by a fresh consumer group
            load = os.getloadavg()[0]
            rate, batch, cpu, database = await projection_rate(admin_dsn, bootstrap, topic.name, events)
            rates.append(rate)
            print(
                f"matching pool projection ({events:,} events, batches of up to {batch:,.0f}, tracking record and"
                f" offset commit per batch): {rate:,.0f} events/s   target >= 30,000/s"
                f"\n  (CPU per event from the first batch on: consumer process {cpu * 1e6:.0f} us, busy"
                f" {rate * cpu:.0%} of the catch-up; its PostgreSQL backends {database * 1e6:.0f} us:"
                f" {1 / max(cpu, database):,.0f} events/s if each had a core of its own; load average {load:.2f})"
            )
        if len(rates) > 1:
            print(
                f"matching pool projection over {len(rates)} runs: median {statistics.median(rates):,.0f} events/s,"
                f" {min(rates):,.0f}-{max(rates):,.0f}; {sum(r >= 30_000 for r in rates)} of {len(rates)} at or above"
                " 30,000"
            )
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic.name, topic.dead_letter])
        finally:
            await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projection-events", type=int, default=50_000, help="0 skips the Kafka part")
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--singles", type=int, default=3000, help="0 skips the single enrolments")
    parser.add_argument("--enrollment-workers", type=int, default=1, help="uvicorn worker processes of enrollment")
    parser.add_argument(
        "--projection-only", action="store_true", help="raw consume and pool projection only (--sizes '' --singles 0)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="pool projection runs over the same records")
    parser.add_argument(
        "--loop", choices=["uvloop", "asyncio"], default="uvloop", help="event loop of the in-process consumer part"
    )
    args = parser.parse_args()
    endpoints = Stack().up()
    print(f"machine: {os.cpu_count()} cores (shared with whatever else runs now: figures vary run to run)")
    if args.projection_events:
        # uvloop by default: a service's consumers run in uvicorn's loop, which is uvloop when installed
        run = uvloop.run if args.loop == "uvloop" else asyncio.run
        run(kafka_part(endpoints.admin_dsn, endpoints.kafka_bootstrap, args.projection_events, args.repeat))
    if args.projection_only:
        return
    sizes = [int(s) for s in args.sizes.split(",") if s]
    asyncio.run(
        services_part(endpoints.admin_dsn, endpoints.kafka_bootstrap, sizes, args.singles, args.enrollment_workers)
    )


if __name__ == "__main__":
    main()
