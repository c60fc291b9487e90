"""Metrics projection throughput and KPI freshness on the local broker.

    python -m bench.metrics_bench [--mentees 5000] [--weeks 12] [--repeat 1] [--kpi-people 0]

1. A synthetic program's events (enrolments, groups, twelve weeks of sessions, slips and answers) are
   produced to bench topics of their own (same partitioning as the platform's, deleted afterwards).
2. Raw rate: one aiokafka consumer reads them all (assigned partitions, no group, no processing).
3. Projection rate: the metrics projection as the service (and the rebuild command) runs it (the
   runtime's batched ``EventConsumer`` with the service's handlers: one transaction and one offset commit
   per poll, the tracking record, ``apply_batch``) applies them into a fresh schema as a fresh consumer
   group: events/s from Kafka into the read models, timed from its first batch (after the group join,
   printed apart, as the raw consume is timed from its first fetch) to the last event committed in the
   read models. Then, without Kafka, the database side alone in batches of 5,000. Each prints the CPU
   time per event of this process and of the schema's PostgreSQL backends: on a shared machine, what
   bounds the rate. ``--repeat N`` runs 2-3 N times on the same events.
4. Freshness: a running metrics service; a group.matched is published on the platform's matching topic
   and the time until ``GET /programs/{id}/kpis`` shows the placement is measured, several times.
5. KPI latency at scale: a program of ``--kpi-people`` (50,000) people, a third of them also enrolled in a
   second program, twelve weeks of sessions and answers, written straight into a schema; then the time of
   each report (program and organisation KPIs, fairness audit, scorecard) as the API computes it.

Prints figures; asserts nothing. Needs the local stack (``make up``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import time
import uuid
from asyncio import FIRST_COMPLETED
from datetime import UTC, date, datetime, timedelta

import asyncpg
import httpx
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.cpu import cpu_seconds
from bench.timed_consumer import TimedConsumer
from contracts.envelope import Envelope, to_kafka
from contracts.events import (
    CancellationKind,
    FeedbackGivenV2,
    GroupMatched,
    GroupMember,
    Measure,
    ParticipantEnrolled,
    ParticipantProfile,
    ProgramOpened,
    QuestionScore,
    SessionCancelled,
    SessionHeld,
    SurveyKind,
)
from contracts.policy import Form, Role, default_policy
from contracts.topics import ENROLLMENT, FEEDBACK, MATCHING, SESSIONS, Topic
from deploy.local.stack import Endpoints, Stack
from runtime.auth import issue_token
from runtime.db import create_pool, migrate
from runtime.heap import settle_heap
from runtime.outbox import make_producer
from runtime.tail import wait_for_consumer_group
from services.metrics import handlers
from services.metrics.adapters.projection import BATCHED_HANDLERS, apply_batch
from services.metrics.app import MetricsSettings, consumer_name, create
from services.metrics.cli import MIGRATIONS
from services.metrics.domain.report import WindowName

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
DAY = timedelta(days=1)


def program_events(tag: str, mentees: int, weeks: int, seed: int = 7) -> list[Envelope]:
    rng = random.Random(seed)
    program = f"prg-{tag}"
    mentors = max(1, mentees // 2)
    events = [
        Envelope(
            data=ProgramOpened(
                program_id=program,
                name="bench",
                form=Form.ONE_TO_ONE,
                cadence_days=14,
                starts_on=date(2026, 1, 5),
                policy=default_policy(Form.ONE_TO_ONE),
                opened_at=T0,
            )
        )
    ]
    departments = ["Eng", "Ops", "Sales", "HR", "Finance"]
    for i in range(mentors + mentees):
        role = Role.MENTOR if i < mentors else Role.MENTEE
        profile = ParticipantProfile(
            participant_id=f"{tag}-p{i}",
            role=role,
            department=rng.choice(departments),
            level=rng.randint(1, 8),
            location="Milan",
            capacity=2 if role == Role.MENTOR else None,
        )
        events.append(Envelope(data=ParticipantEnrolled(program_id=program, profile=profile, enrolled_at=T0)))
    for g in range(mentees):
        group = f"{tag}-g{g}"
        members = [
            GroupMember(participant_id=f"{tag}-p{g % mentors}", role=Role.MENTOR),
            GroupMember(participant_id=f"{tag}-p{mentors + g}", role=Role.MENTEE),
        ]
        events.append(
            Envelope(
                data=GroupMatched(
                    program_id=program,
                    run_id=f"{tag}-r",
                    group_id=group,
                    form=Form.ONE_TO_ONE,
                    members=members,
                    fit=rng.random() * 5,
                    explanation=[],
                    cadence_days=14,
                    matched_at=T0 + DAY,
                )
            )
        )
        for week in range(0, weeks, 2):
            at = T0 + (7 * week + rng.randint(1, 6)) * DAY
            if rng.random() < 0.1:
                events.append(
                    Envelope(
                        data=SessionCancelled(
                            program_id=program,
                            group_id=group,
                            session_id=f"{group}-w{week}",
                            kind=CancellationKind.RESCHEDULED,
                            cancelled_at=at,
                        )
                    )
                )
                continue
            events.append(
                Envelope(
                    data=SessionHeld(
                        program_id=program,
                        group_id=group,
                        session_id=f"{group}-w{week}",
                        held_at=at,
                        duration_minutes=60,
                        attendees=[m.participant_id for m in members],
                    )
                )
            )
            scores = [
                QuestionScore(
                    question_id="q1", measure=Measure.SESSION_RATING, score=rng.randint(2, 5), scale_min=1, scale_max=5
                ),
                QuestionScore(
                    question_id="q2",
                    measure=Measure.WOULD_RECOMMEND,
                    score=rng.randint(4, 10),
                    scale_min=0,
                    scale_max=10,
                ),
            ]
            events.append(
                Envelope(
                    data=FeedbackGivenV2(
                        program_id=program,
                        group_id=group,
                        feedback_id=f"{group}-f{week}",
                        revision=1,
                        survey_id="s",
                        survey_version=1,
                        survey_kind=SurveyKind.SESSION,
                        respondent_role=Role.MENTEE,
                        scores=scores,
                        given_at=at,
                    )
                )
            )
    return events


async def produce(bootstrap: str, records: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for topic, key, value, headers in records:
            pending.append(await producer.send(topic, value, key=key, headers=headers))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def raw_consume(bootstrap: str, topics: list[Topic], count: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.perf_counter()
        seen = 0
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(r) for r in batches.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def throughput(stack: Endpoints, mentees: int, weeks: int, timeout: float, repeat: int = 1) -> None:
    tag = uuid.uuid4().hex[:8]
    bench_topics = {
        t.name: Topic(f"bench.metrics.{tag}.{t.name}", t.partitions, t.key_field, t.description)
        for t in (ENROLLMENT, MATCHING, SESSIONS, FEEDBACK)
    }
    events = program_events(tag, mentees, weeks)
    records = []
    for env in events:
        r = to_kafka(env)
        records.append((bench_topics[r.topic].name, r.key, r.value, r.headers))
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    names = [t.name for t in bench_topics.values()]
    await admin.create_topics([NewTopic(t.name, t.partitions, 1) for t in bench_topics.values()])
    dsn = stack.admin_dsn
    try:
        produce_s = await produce(stack.kafka_bootstrap, records)
        print(f"events: {len(events):,} ({mentees:,} mentees, {weeks} weeks) produced in {produce_s:.1f}s")
        settle_heap()  # as a service does once started (runtime/service.py)
        rates = []
        for run in range(repeat):
            raw_s = await raw_consume(stack.kafka_bootstrap, list(bench_topics.values()), len(events))
            raw_rate = len(events) / raw_s
            print(f"raw aiokafka consume:      {raw_rate:>10,.0f} events/s ({raw_s:.2f}s)")
            schema = f"mb_{tag}_{run}"  # short as the service's "metrics": the group name is in every tracking key
            rate = await projection(stack, schema, tuple(bench_topics.values()), len(events), timeout)
            print(f"  = {rate / raw_rate:.1%} of raw")
            rates.append(rate)
            batched = await database_batched(dsn, f"{schema}_batch", events)
            batched_rate, batched_python, batched_database = batched
            print(
                f"straight to Postgres, batched: {batched_rate:>6,.0f} events/s (tracking record + apply_batch,"
                f" {BATCH:,} events per transaction, no Kafka)"
            )
            print(
                f"  CPU per event: rows built in Python {1e6 * batched_python / len(events):.1f} us,"
                f" PostgreSQL {1e6 * batched_database / len(events):.1f} us"
            )
        print(f"  target >= 30,000 events/s: {'reached' if max(rates) >= 30_000 else 'NOT reached'} (best of {repeat})")
    finally:
        await admin.delete_topics(names)
        await admin.close()


async def projection(stack: Endpoints, schema: str, topics: tuple[Topic, ...], expected: int, timeout: float) -> float:
    """The metrics projection as the service and the rebuild command run it (the runtime's batched
    consumer, the service's handlers, a fresh group from offset zero into a fresh schema): events/s from
    its first batch to the last event committed in the read models, tracking record included; prints it."""
    dsn = stack.admin_dsn
    pool = await create_pool(dsn, schema, max_size=4)
    producer = make_producer(stack.kafka_bootstrap, f"{schema}-bench")
    try:
        await migrate(pool, schema, {"metrics": MIGRATIONS})
        await producer.start()
        consumer = TimedConsumer(
            name=consumer_name(schema), pool=pool, producer=producer, topics=topics, handlers=BATCHED_HANDLERS,
            offset_reset="earliest", expected=expected,
        )  # fmt: skip
        cpu = CpuMeter(dsn, schema)
        await cpu.start()
        started = time.perf_counter()
        task = asyncio.create_task(consumer.run(stack.kafka_bootstrap))
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait([task, asyncio.create_task(consumer.done.wait())], return_when=FIRST_COMPLETED)
            if task.done():
                task.result()
                raise SystemExit("the projection stopped before it applied every event: no figures")
            consumer_cpu, database_cpu = await cpu.stop()
        finally:
            consumer.stop()
            await task
        assert consumer.first_batch_at is not None
        rows = await pool.fetchval("SELECT count(*) FROM processed_events")
        held = await pool.fetchval("SELECT count(*) FROM sessions_held")
    finally:
        await producer.stop()
        await pool.close()
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    if rows != expected:
        raise SystemExit(f"{rows:,} tracking rows after {expected:,} events: no figures")
    elapsed = consumer.applied_at - consumer.first_batch_at
    rate = expected / elapsed
    print(
        f"metrics projection:        {rate:>10,.0f} events/s ({elapsed:.2f}s from its first batch to the last event"
        f" in the read models; {rows:,} tracking rows, {held:,} sessions; group join before it"
        f" {consumer.first_batch_at - started:.2f}s)"
    )
    print(
        f"  CPU per event: consumer process {1e6 * consumer_cpu / expected:.1f} us (group join, fetch, parse,"
        f" rows), its PostgreSQL backends {1e6 * database_cpu / expected:.1f} us; load average"
        f" {os.getloadavg()[0]:.2f}"
    )
    print(
        f"  with a core of its own each, the consumer process would allow {expected / consumer_cpu:,.0f} events/s,"
        f" PostgreSQL {expected / database_cpu:,.0f} (the broker needs the same two cores)"
    )
    return rate


BATCH = 5000


async def database_batched(dsn: str, schema: str, events: list[Envelope]) -> tuple[float, float, float]:
    """What a batched consumer could reach on the database side: per batch of 5,000, one transaction that
    records the event ids (skipping those seen before, as the tracking record does) and applies the fresh
    ones with :func:`apply_batch`, no Kafka: the database's share of the projection. Returns the rate and
    the CPU seconds of this process (building the rows, asyncpg's encoding) and of PostgreSQL."""
    pool = await create_pool(dsn, schema, min_size=1, max_size=1)
    try:
        await migrate(pool, schema, {"metrics": MIGRATIONS})
        cpu = CpuMeter(dsn, schema)
        await cpu.start()
        started = time.perf_counter()
        async with pool.acquire() as conn:
            for start in range(0, len(events), BATCH):
                batch = events[start : start + BATCH]
                async with conn.transaction():
                    fresh = {
                        r["event_id"]
                        for r in await conn.fetch(
                            "INSERT INTO processed_events (consumer, event_id) SELECT 'bench', unnest($1::text[])"
                            " ON CONFLICT DO NOTHING RETURNING event_id",
                            [e.id for e in batch],
                        )
                    }
                    await apply_batch(conn, [e for e in batch if e.id in fresh])
        rate = len(events) / (time.perf_counter() - started)
        python, database = await cpu.stop()
        return rate, python, database
    finally:
        await pool.close()
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


class CpuMeter:
    """CPU seconds of this process and of the PostgreSQL backends of a schema's pool (its connections'
    application_name is the schema) between :meth:`start` and :meth:`stop`: on a shared machine, CPU per
    event says what bounds a rate better than the rate itself."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn, self.schema = dsn, schema
        self.backends: dict[int, float] = {}
        self.process = 0.0

    async def _pids(self) -> list[int]:
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", self.schema)
        finally:
            await conn.close()
        return [r[0] for r in rows]

    async def start(self) -> None:
        self.backends = {pid: cpu_seconds(pid) for pid in await self._pids()}
        self.process = time.process_time()

    async def stop(self) -> tuple[float, float]:
        process = time.process_time() - self.process
        pids = await self._pids()  # a backend opened meanwhile started at 0
        return process, sum(cpu_seconds(pid) - self.backends.get(pid, 0.0) for pid in pids)


async def freshness(stack: Endpoints, runs: int) -> None:
    """group.matched on the platform's topic -> the KPI showing it, through a running service."""
    tag = uuid.uuid4().hex[:8]
    schema = f"metrics_fresh_{tag}"
    settings = MetricsSettings(
        database_url=stack.admin_dsn,
        kafka_bootstrap=stack.kafka_bootstrap,
        db_schema=schema,
        consumer_offset_reset="latest",
        log_level="WARNING",
        evaluate_every_seconds=3600,
    )
    app = create(settings)
    delays = []
    async with contextlib.AsyncExitStack() as s:
        await s.enter_async_context(app.router.lifespan_context(app))
        await wait_for_consumer_group(stack.kafka_bootstrap, consumer_name(schema))
        await asyncio.sleep(1)  # the group resolves its 'latest' position
        http = await s.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m")
        )
        admin = {"Authorization": f"Bearer {issue_token(app.state.jwt, 'bench', ['admin'])}"}
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        s.push_async_callback(producer.stop)
        for i in range(runs):
            events = program_events(f"{tag}-{i}", mentees=5, weeks=0)
            setup, matched = (
                [e for e in events if not isinstance(e.data, GroupMatched)],
                [e for e in events if isinstance(e.data, GroupMatched)],
            )
            for env in setup:
                r = to_kafka(env)
                await producer.send_and_wait(r.topic, r.value, key=r.key, headers=r.headers)
            program = f"prg-{tag}-{i}"
            while True:
                res = await http.get(f"/programs/{program}/kpis", params={"window": "program_to_date"}, headers=admin)
                if res.status_code == 200 and _kpi(res.json(), "active_participants") == 5 + 2:
                    break
                await asyncio.sleep(0.05)
            started = time.perf_counter()
            for env in matched:
                r = to_kafka(env)
                await producer.send(r.topic, r.value, key=r.key, headers=r.headers)
            await producer.flush()
            while True:
                res = await http.get(f"/programs/{program}/kpis", params={"window": "program_to_date"}, headers=admin)
                if _kpi(res.json(), "placed_share") == 1.0:
                    break
                await asyncio.sleep(0.01)
            delays.append(time.perf_counter() - started)
    conn = await asyncpg.connect(stack.admin_dsn)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()
    print(
        f"group.matched -> KPI:       median {statistics.median(delays):.3f}s, max {max(delays):.3f}s over {runs} runs"
        f" (target < 2 s: {'reached' if max(delays) < 2 else 'NOT reached'})"
    )


async def kpi_latency(stack: Endpoints, people: int, weeks: int, keep: str | None, repeat: int = 3) -> None:
    """The reports' time on a large program, the handlers as the API calls them (JSON rendering aside).
    ``keep`` names a schema to load once and reuse on later runs (not dropped)."""
    schema = keep or f"metrics_kpi_{uuid.uuid4().hex[:8]}"
    dsn = stack.admin_dsn
    pool = await create_pool(dsn, schema, max_size=4)
    try:
        await migrate(pool, schema, {"metrics": MIGRATIONS})
        program = await pool.fetchval("SELECT program_id FROM programs WHERE name = 'bench' LIMIT 1")
        if program is None:
            tag = uuid.uuid4().hex[:8]
            mentees = people * 2 // 3
            events = program_events(tag, mentees, weeks)
            events += second_program(tag, [e.data for e in events if isinstance(e.data, ParticipantEnrolled)])
            started = time.perf_counter()
            async with pool.acquire() as conn:
                for start in range(0, len(events), BATCH):
                    async with conn.transaction():
                        await apply_batch(conn, events[start : start + BATCH])
                await conn.execute("ANALYZE")
            print(f"kpi fixture: {len(events):,} events written in {time.perf_counter() - started:.1f}s")
            program = f"prg-{tag}"
        enrolled = await pool.fetchval("SELECT count(*) FROM participants WHERE program_id = $1", program)
        org = await pool.fetchval("SELECT count(*) FROM participants")
        as_of = await pool.fetchval("SELECT max(held_at) FROM sessions_held") + DAY
        print(f"KPI requests: a program of {enrolled:,} people ({org:,} enrolments org-wide), best of {repeat}:")
        scopes = {"program": handlers.Scope(program_id=program), "organisation": handlers.Scope()}
        reports = {"kpis": {"fairness": False, "culture": False}, "fairness": {"culture": False},
                   "scorecard": {"fairness": False}}  # fmt: skip
        for scope_name, scope in scopes.items():
            for report_name, flags in reports.items():
                times = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    await handlers.report(pool, scope, WindowName.MONTH, as_of, **flags)
                    times.append(time.perf_counter() - started)
                print(
                    f"  {scope_name:>12} {report_name:<9} {min(times):7.3f}s (median {statistics.median(times):.3f}s)"
                )
    finally:
        await pool.close()
        if keep is None:
            conn = await asyncpg.connect(dsn)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()


def second_program(tag: str, enrolled: list[object]) -> list[Envelope]:
    """A second program where every third person of the first also enrols (as a mentee), so cross-program
    figures (people in several programs, loads across programs) have work to do."""
    program = f"prg-{tag}-2"
    events = [
        Envelope(
            data=ProgramOpened(
                program_id=program, name="bench second", form=Form.ONE_TO_ONE, cadence_days=14,
                starts_on=date(2026, 1, 5), policy=default_policy(Form.ONE_TO_ONE), opened_at=T0,
            )
        )
    ]  # fmt: skip
    for e in enrolled[::3]:
        assert isinstance(e, ParticipantEnrolled)
        profile = e.profile.model_copy(update={"role": Role.MENTEE, "capacity": None})
        events.append(Envelope(data=ParticipantEnrolled(program_id=program, profile=profile, enrolled_at=T0 + DAY)))
    return events


def _kpi(report: dict, key: str) -> float | None:  # type: ignore[type-arg]
    for s in report["sections"]:
        for k in s["kpis"]:
            if k["key"] == key:
                value: float | None = k["figure"]["value"]
                return value
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mentees", type=int, default=5000)
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--freshness-runs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1, help="projection runs on the same events (a shared machine)")
    parser.add_argument("--timeout", type=float, default=120, help="the longest a projection run may take (s)")
    parser.add_argument("--kpi-people", type=int, default=50_000, help="people of the KPI-latency program (0: skip)")
    parser.add_argument("--kpi-schema", help="load the KPI-latency program into this schema once, keep and reuse it")
    parser.add_argument("--only-kpi", action="store_true", help="measure the KPI latency only")
    args = parser.parse_args()
    stack = Stack().up()

    async def both() -> None:
        if not args.only_kpi:
            await throughput(stack, args.mentees, args.weeks, args.timeout, args.repeat)
            if args.freshness_runs:
                await freshness(stack, args.freshness_runs)
        if args.kpi_people:
            await kpi_latency(stack, args.kpi_people, args.weeks, args.kpi_schema)

    uvloop.run(both())  # a service's consumers run in uvicorn's loop, uvloop when installed


if __name__ == "__main__":
    main()
