"""Outside-in probe of issue 9 (delivery guarantees under faults): services run as separate uvicorn
processes (bench/probes/serve.py) on private topics (``p9<hex>.mentoring.*``, deleted afterwards), in
throw-away schemas, against the shared local Kafka and PostgreSQL; faults are injected with the
probe's own clients and proxy (bench/probes/harness.py). Prints what it measured; asserts nothing.

    STACK_DIR=/work/main/.stack python -m bench.probes.issue9 poison
    STACK_DIR=/work/main/.stack python -m bench.probes.issue9 dbout --seconds 5 [--blackhole]
    STACK_DIR=/work/main/.stack python -m bench.probes.issue9 brokerout --seconds 20
    STACK_DIR=/work/main/.stack python -m bench.probes.issue9 kill9 --service matching|enrollment
    STACK_DIR=/work/main/.stack python -m bench.probes.issue9 api
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
from aiokafka import TopicPartition

from bench.probes import harness
from bench.probes.harness import (
    ROOT,
    Service,
    ce_ids,
    delete_topics,
    end_offsets,
    eventually,
    read_topic,
    running,
    via,
)
from bench.synthetic_org import enrolments, org_chart
from deploy.local.stack import Stack
from runtime.auth import issue_token, jwt_config_from_env
from runtime.undecodable import fetch_records
from tests.faultkit import send_raw

ENROLLMENT_TOPIC = "mentoring.enrollment.v1"


class Proxy(harness.Proxy):
    async def restore(self, *, reset_silent: bool = False) -> None:
        """``reset_silent``: the black-holed connections are reset too (what a healed network does to a
        connection its server forgot: the client's next packet meets a reset)."""
        if reset_silent:
            for writer in self._held:
                writer.transport.abort()
            self._held.clear()
        await super().restore()


ENROLLED_SQL = "SELECT count(*) FROM {s}.enrolments WHERE program_id = $1"
POOL_SQL = "SELECT count(*) FROM {s}.pool WHERE program_id = $1"
PUBLISHED_SQL = "SELECT count(*) FROM {s}.outbox WHERE key = $1 AND published_at IS NOT NULL"
PARTICIPANTS_SQL = "SELECT count(*) FROM {s}.participants WHERE program_id = $1"


def token() -> str:
    return issue_token(jwt_config_from_env("enrollment"), "probe9", ["admin"])


async def new_program(client: httpx.AsyncClient, enrollment: Service, name: str) -> str:
    r = await client.post(f"{enrollment.url}/programs", json={"name": name, "form": "one_to_one",
                                                              "starts_on": "2026-01-01"})  # fmt: skip
    r.raise_for_status()
    return str(r.json()["program_id"])


async def count(conn: asyncpg.Connection, schema: str, sql: str, *args: Any) -> int:
    return int(await conn.fetchval(sql.replace("{s}", f'"{schema}"'), *args))


async def counts(conn: asyncpg.Connection, bootstrap: str, prefix: str, program: str, enrollment: Service,
                 consumers: list[Service]) -> dict[str, Any]:  # fmt: skip
    """Producer's database, distinct ids on Kafka, effects in every consumer's database, dead letters."""
    topic = f"{prefix}.{ENROLLMENT_TOPIC}"
    try:
        records = await read_topic(bootstrap, topic)
    except UnicodeDecodeError:  # aiokafka cannot read past a record whose header key is not UTF-8
        records = await read_leniently(bootstrap, topic)
    on_kafka = ce_ids(records, key=program.encode())
    out: dict[str, Any] = {
        "enrolments in enrollment db": await count(conn, enrollment.schema,
                                                   ENROLLED_SQL, program),
        "outbox rows for the program": await count(conn, enrollment.schema,
                                                   "SELECT count(*) FROM {s}.outbox WHERE key = $1", program),
        "outbox rows unpublished": await count(conn, enrollment.schema,
                                               "SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL"),
        "records on kafka with the key": len(on_kafka),
        "distinct ce_ids on kafka with the key": len(set(on_kafka)),
        "dlt records": sum((await end_offsets(bootstrap, topic + ".dlt")).values()),
    }  # fmt: skip
    for svc in consumers:
        table = "pool" if svc.name == "matching" else "participants"
        out[f"{svc.name}.{table} rows"] = await count(
            conn, svc.schema, f"SELECT count(*) FROM {{s}}.{table} WHERE program_id = $1", program
        )
        out[f"{svc.name}.processed_events"] = await count(conn, svc.schema, "SELECT count(*) FROM {s}.processed_events")
        out[f"{svc.name}.dead_letters rows"] = await count(conn, svc.schema, "SELECT count(*) FROM {s}.dead_letters")
    return out  # fmt: skip


async def read_leniently(bootstrap: str, topic: str) -> list[object]:
    """The whole topic read as the consumers read past a header key aiokafka cannot decode
    (``runtime.undecodable``): such a record's key comes with ``\\x`` escapes."""
    ends = await end_offsets(bootstrap, topic)
    starts = {TopicPartition(topic, p): 0 for p, end in ends.items() if end > 0}
    found: list[object] = []
    while starts:
        fetched = await fetch_records(bootstrap, starts, client_id="probe9")
        found += [r for records, _ in fetched.values() for r in records]
        starts = {tp: nxt for tp, (_, nxt) in fetched.items() if starts[tp] < nxt < ends[tp.partition]}
    return found


def show(title: str, figures: dict[str, Any]) -> None:
    print(f"  {title}:")
    for k, v in figures.items():
        print(f"    {k}: {v}")


async def consumer_metrics(client: httpx.AsyncClient, svc: Service) -> dict[str, float]:
    text = (await client.get(f"{svc.url}/metrics")).text
    wanted = ("_events_consumed_total", "_dead_letters_kept_total", "_background_task_errors_total")
    found = {}
    for line in text.splitlines():
        if line.startswith("#") or not any(w in line for w in wanted):
            continue
        name, value = line.rsplit(" ", 1)
        if float(value):
            found[name.split("_", 1)[1]] = float(value)
    return found


@contextlib.asynccontextmanager
async def stack_of(*names: str, prefix: str, dsn_for: dict[str, str] | None = None,
                   kafka_via: dict[str, str] | None = None, env_for: dict[str, dict[str, str]] | None = None,
                   ) -> Any:  # fmt: skip
    endpoints = Stack().up()
    services: dict[str, Service] = {}
    try:
        async with contextlib.AsyncExitStack() as stack:
            for name in names:
                services[name] = await stack.enter_async_context(
                    running(name, endpoints.admin_dsn, endpoints.kafka_bootstrap, prefix,
                            dsn=(dsn_for or {}).get(name), kafka_via=(kafka_via or {}).get(name),
                            **(env_for or {}).get(name, {}))
                )  # fmt: skip
            yield endpoints, services
    finally:
        deleted = await delete_topics(endpoints.kafka_bootstrap, prefix)
        print(f"  (deleted {len(deleted)} topics of {prefix}; schemas dropped)")


# 1. Poison and forward-compatibility variants ----------------------------------------------------------


def _headers(ce_type: str, event_id: str | None = None) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", (event_id or str(uuid.uuid4())).encode()),
        ("ce_type", ce_type.encode()),
        ("ce_source", b"/probe9"),
        ("ce_time", b"2026-11-30T20:00:00+00:00"),
        ("content-type", b"application/json"),
    ]


def _valid_body(program: str, pid: str) -> bytes:
    return json.dumps({
        "program_id": program, "enrolled_at": "2026-11-30T20:00:00+00:00",
        "profile": {"participant_id": pid, "role": "mentee", "department": "Engineering", "level": 2,
                    "manager_id": None, "manager_chain": [], "location": "Milan", "utc_offset_minutes": 60,
                    "languages": ["en"], "skills_offered": ["sql"], "skills_sought": ["python"], "goals": ["promotion"],
                    "capacity": None},
    }).encode()  # fmt: skip


def basic_variants(program: str) -> list[tuple[str, bytes | None, Any]]:
    enrolled = "org.mentoring.participant.enrolled.v1"
    return [
        ("oversized body 1,048,000 bytes, CE headers", b"x" * 1_048_000, _headers(enrolled)),
        ("valid JSON of the wrong type (a list)", b"[1, 2, 3]", _headers(enrolled)),
        ("valid JSON, a program.opened body under participant.enrolled",
         json.dumps({"program_id": program, "name": "x", "form": "one_to_one", "starts_on": "2026-01-01"}).encode(),
         _headers(enrolled)),
        ("no headers at all, valid body", _valid_body(program, "NOHDR"), []),
        ("null value, CE headers", None, _headers(enrolled)),
        ("null value, no headers", None, []),
        ("unknown ce_type", _valid_body(program, "UNKNOWN"), _headers("org.mentoring.participant.promoted.v1")),
        ("known type with .v2 suffix", _valid_body(program, "V2"), _headers("org.mentoring.participant.enrolled.v2")),
    ]  # fmt: skip


def extra_variants(program: str) -> list[tuple[str, bytes | None, Any]]:
    enrolled = "org.mentoring.participant.enrolled.v1"
    nul = json.loads(_valid_body(program, "NULDEPT"))
    nul["profile"]["department"] = "Engi\x00neering"
    naive = _headers(enrolled)
    naive = [(k, b"2026-11-30T20:00:00" if k == "ce_time" else v) for k, v in naive]
    return [
        ("valid contract, NUL inside a profile string", json.dumps(nul).encode(), _headers(enrolled)),
        ("oversized body + a header key with a NUL", b"x" * 1_048_000, [*_headers(enrolled), ("x\x00y", b"1")]),
        ("small body + a 950,000-byte header value", b"[]", [*_headers(enrolled), ("big", b"h" * 950_000)]),
        ("ce_type header with a null value", _valid_body(program, "NULLTYPE"),
         [(k, None if k == "ce_type" else v) for k, v in _headers(enrolled)]),
        ("valid event, ce_time without a UTC offset", _valid_body(program, "NAIVE"), naive),
    ]  # fmt: skip


def badkey_variants(program: str) -> list[tuple[str, bytes | None, Any]]:
    return [("valid event + a header key that is not UTF-8 (b'ce_\\xff\\xfe')", _valid_body(program, "BADKEY"), "RAW")]


def extra2_variants(program: str) -> list[tuple[str, bytes | None, Any]]:
    return [v for v in extra_variants(program) if "NUL" not in v[0] or "profile" in v[0]]


def big_variants(program: str) -> list[tuple[str, bytes | None, Any]]:
    enrolled = "org.mentoring.participant.enrolled.v1"
    return [("oversized body 1,048,200 bytes, CE headers", b"x" * 1_048_200, _headers(enrolled))]


VARIANTS = {
    "big": big_variants,
    "basic": basic_variants,
    "extra": extra_variants,
    "extra2": extra2_variants,
    "badkey": badkey_variants,
}


def produce_bad_header_key(bootstrap: str, topic: str, key: bytes, value: bytes, program: str) -> None:
    """A header key that is not UTF-8: Kafka's protocol carries bytes and the broker takes them; aiokafka's
    pure-Python record builder is made to write them (a str whose encode gives raw bytes)."""
    code = (
        "import asyncio, sys\n"
        "from aiokafka import AIOKafkaProducer\n"
        "class Raw(str):\n"
        "    def encode(self, *a, **k):\n"
        "        return b'ce_\\xff\\xfe'\n"
        "async def main():\n"
        "    p = AIOKafkaProducer(bootstrap_servers=sys.argv[1], acks='all')\n"
        "    await p.start()\n"
        "    hs = [('ce_specversion', b'1.0'), ('ce_id', sys.argv[4].encode()),"
        " ('ce_type', b'org.mentoring.participant.enrolled.v1'), ('ce_source', b'/probe9'),"
        " ('ce_time', b'2026-11-30T20:00:00+00:00'), (Raw('x'), b'v')]\n"
        "    await p.send_and_wait(sys.argv[2], sys.stdin.buffer.read(), key=sys.argv[3].encode(), headers=hs)\n"
        "    await p.stop()\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", code, bootstrap, topic, key.decode(), str(uuid.uuid4())], input=value,
                   env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"}, check=True, cwd=ROOT)  # fmt: skip


async def poison(args: argparse.Namespace) -> None:
    prefix = f"p9{uuid.uuid4().hex[:6]}"
    async with stack_of("enrollment", "matching", "metrics", prefix=prefix) as (endpoints, svcs):
        bootstrap, topic = endpoints.kafka_bootstrap, f"{prefix}.{ENROLLMENT_TOPIC}"
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token()}"}, timeout=120) as client:
            org = org_chart(400, seed=9)
            (await client.post(f"{svcs['enrollment'].url}/org-chart", json=[p.row() for p in org])).raise_for_status()
            program = await new_program(client, svcs["enrollment"], "probe9 poison")
            key = program.encode()
            variants = VARIANTS[args.set](program)
            await send_raw(
                bootstrap, topic, [(key, value, headers) for _, value, headers in variants if headers != "RAW"]
            )
            raw = [(value, name) for name, value, headers in variants if headers == "RAW"]
            for value, _ in raw:
                produce_bad_header_key(bootstrap, topic, key, value or b"", program)
            print(f"produced {len(variants)} records to {topic} with key {program}:")
            for name, value, _ in variants:
                print(f"  - {name} ({len(value) if value is not None else 'null'} bytes)")
            await asyncio.sleep(2)
            for name in ("matching", "metrics"):
                ready = await client.get(f"{svcs[name].url}/health/ready")
                print(f"  {name} /health/ready 2 s after the poison: {ready.status_code} {ready.text[:400]}")
            rows = enrolments(org, 200, seed=9)
            singles, bulk = rows[:20], rows[20:]
            for row in singles:
                (
                    await client.post(f"{svcs['enrollment'].url}/programs/{program}/enrolments", json=row)
                ).raise_for_status()
            (
                await client.post(f"{svcs['enrollment'].url}/programs/{program}/enrolments/bulk", json=bulk)
            ).raise_for_status()
            print("then 20 single enrolments and a bulk of 180 through enrollment's API (same key)")
            others: list[str] = []
            for i in range(args.other_programs):  # other keys, other partitions as a rule
                other = await new_program(client, svcs["enrollment"], f"probe9 other {i}")
                r = await client.post(
                    f"{svcs['enrollment'].url}/programs/{other}/enrolments/bulk", json=enrolments(org, 50, seed=i)
                )
                r.raise_for_status()
                others.append(other)
            if others:
                print(f"and 50 enrolments in each of {len(others)} other programs (other keys)")
            conn = await asyncpg.connect(endpoints.admin_dsn)
            try:

                async def all_in() -> bool:
                    return all([await count(conn, svcs["matching"].schema,
                                            "SELECT count(*) FROM {s}.pool WHERE program_id = $1", program) >= 200,
                                await count(conn, svcs["metrics"].schema,
                                            PARTICIPANTS_SQL, program) >= 200])  # fmt: skip

                try:
                    took = await eventually(all_in, 90, "200 enrolments in matching's pool and metrics' participants")
                    print(f"  all 200 valid enrolments applied by matching and metrics within {took:.1f} s")
                except TimeoutError as exc:
                    print(f"  NOT REACHED: {exc}")
                await asyncio.sleep(3)  # dead letters are sent after the batch's transaction
                show("counts", await counts(conn, bootstrap, prefix, program, svcs["enrollment"],
                                            [svcs["matching"], svcs["metrics"]]))  # fmt: skip
                for name in ("matching", "metrics"):
                    show(f"{name} metrics", await consumer_metrics(client, svcs[name]))
                    rows_ = await conn.fetch(f'SELECT "offset", length(value) AS bytes, reason, on_topic, publish_error'
                                             f' FROM "{svcs[name].schema}".dead_letters ORDER BY id')  # fmt: skip
                    for r in rows_:
                        print(f"    {name} dead_letters row: {dict(r)}")
                dlt = await read_topic(bootstrap, topic + ".dlt")  # a bad header key is escaped in the copy
                for rec in dlt:
                    h = {k: v.decode(errors="replace")[:160] for k, v in rec.headers if k.startswith("dlt_")}  # type: ignore[attr-defined]
                    size = len(rec.value) if rec.value is not None else None  # type: ignore[attr-defined]
                    print(f"    .dlt offset {rec.offset} value {size} bytes: "  # type: ignore[attr-defined]
                          f"group={h.get('dlt_consumer_group', '')[:24]} offset={h.get('dlt_original_offset')} "
                          f"reason={h.get('dlt_reason')!r} cut={h.get('dlt_body_cut_bytes')}")  # fmt: skip
                for name in ("matching", "metrics"):
                    ready = await client.get(f"{svcs[name].url}/health/ready")
                    print(f"  {name} /health/ready: {ready.status_code} {ready.text[:300]}")
                for other in others:
                    got = await count(conn, svcs["matching"].schema, POOL_SQL, other)
                    print(f"  other program {other}: {got} of 50 in matching's pool")
                for name in ("matching", "metrics"):
                    table = "pool" if name == "matching" else "participants"
                    odd = await conn.fetch(
                        f'SELECT participant_id FROM "{svcs[name].schema}".{table}'
                        " WHERE program_id = $1 AND participant_id !~ '^E[0-9]+$'",
                        program,
                    )
                    print(f"  {name}.{table} rows of the probe's own records: {[r[0] for r in odd]}")
                if args.keep_for_replay:
                    await replay_check(conn, endpoints, svcs["matching"], prefix, program)
            finally:
                await conn.close()


async def replay_check(conn: asyncpg.Connection, endpoints: Any, matching: Service, prefix: str, program: str) -> None:
    """5. The dead-letter command on the letter just produced, as the README says to run it."""
    env = {**os.environ, "PROBE_TOPIC_PREFIX": prefix}
    base = ["--service", "matching", "--dsn", endpoints.admin_dsn, "--schema", matching.schema,
            "--bootstrap", endpoints.kafka_bootstrap]  # fmt: skip
    for cmd in (["list"], ["replay", "--to", "dlt"], ["list", "--all"], ["replay", "--to", "original"]):
        done = subprocess.run([sys.executable, "-m", "runtime.deadletters", *cmd, *base], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip
        tail = done.stderr.strip().splitlines()[-1:] if done.returncode else []
        print(f"  $ python -m runtime.deadletters {' '.join(cmd)} ... -> rc {done.returncode}")
        for line in done.stdout.strip().splitlines():
            print(f"      {line[:300]}")
        for line in tail:
            print(f"      stderr: {line[:300]}")
    # the README's own form: no --dsn/--schema/--bootstrap, the service's env
    env2 = {**env, "MATCHING_DATABASE_URL": endpoints.admin_dsn, "MATCHING_DB_SCHEMA": matching.schema,
            "MATCHING_KAFKA_BOOTSTRAP": endpoints.kafka_bootstrap}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "runtime.deadletters", "list", "--all", "--service", "matching"],
                          cwd=ROOT, env=env2, capture_output=True, text=True, check=False)  # fmt: skip
    print(
        "  $ MATCHING_DATABASE_URL=... python -m runtime.deadletters list --all --service matching"
        f" -> rc {done.returncode}"
    )
    for line in (done.stdout.strip().splitlines() + done.stderr.strip().splitlines()[-1:])[:6]:
        print(f"      {line[:300]}")


# 2. Database outage under matching during a 5,000-person bulk upload -------------------------------------


async def poll_ready(client: httpx.AsyncClient, svc: Service, log: list[tuple[float, int, str, float]],
                     stop: asyncio.Event, t0: float) -> None:  # fmt: skip
    while not stop.is_set():
        started = time.monotonic()
        try:
            r = await client.get(f"{svc.url}/health/ready", timeout=10)
            code, why = r.status_code, json.dumps(r.json().get("failing", {}))[:200]
        except httpx.HTTPError as exc:
            code, why = 0, type(exc).__name__
        log.append((started - t0, code, why, time.monotonic() - started))
        await asyncio.sleep(0.5)


def summarise_ready(log: list[tuple[float, int, str, float]], cut: float, restored: float) -> None:
    def window(a: float, b: float) -> Counter[int]:
        return Counter(code for t, code, _, _ in log if a <= t < b)

    print(f"  /health/ready before the cut: {dict(window(-1e9, cut))}")
    print(
        f"  /health/ready during the outage: {dict(window(cut, restored))}, slowest answer "
        f"{max([d for t, _, _, d in log if cut <= t < restored] or [0]):.1f} s"
    )
    reasons = Counter(why for t, code, why, _ in log if cut <= t < restored and code != 200)
    for why, n in reasons.most_common(4):
        print(f"    {n}x {why}")
    late = Counter(why for t, code, why, _ in log if t >= restored and code != 200)
    for why, n in late.most_common(3):
        print(f"    after the restore {n}x {why}")
    after = [(t, code) for t, code, _, _ in log if t >= restored]
    first_200 = next((t - restored for t, code in after if code == 200), None)
    print(
        f"  /health/ready after the restore: {dict(Counter(c for _, c in after))}; first 200 "
        f"{'never' if first_200 is None else f'{first_200:.1f} s after the restore'}"
    )


class ReadyWatch:
    """``/health/ready`` of one service polled every 0.5 s through a fault, from now on."""

    def __init__(self, client: httpx.AsyncClient, svc: Service) -> None:
        self.client = client
        self.t0 = time.monotonic()
        self.log: list[tuple[float, int, str, float]] = []
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(poll_ready(client, svc, self.log, self._stop, self.t0))

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def stop(self) -> None:
        self._stop.set()
        await self._task


async def await_recovery(
    watch: ReadyWatch, conn: asyncpg.Connection, upload: asyncio.Task[httpx.Response], args: argparse.Namespace, *,
    proxy: Proxy, cut: float, endpoints: Any, prefix: str, program: str, enrollment: Service, matching: Service,
    at_restore: str, metrics_of: list[Service],
) -> None:  # fmt: skip
    """The fault lifted (``proxy`` restored), then what every outage prints: the upload's answer, when all
    its enrolments are in matching's pool, readiness through the outage and after it, the counts and the
    consumers' metrics."""
    await proxy.restore(reset_silent=args.reset_on_restore)
    restored = watch.now()
    r = await upload
    print(f"  bulk upload: HTTP {r.status_code} {r.text[:200] if r.status_code != 200 else ''}")
    print(f"  {at_restore}")
    expected = args.size if r.status_code == 200 else 0

    async def complete() -> bool:
        return bool(await count(conn, matching.schema, POOL_SQL, program) >= expected)

    try:
        took = await eventually(complete, args.wait, f"{expected:,} in matching's pool")
        print(f"  all {expected:,} in matching's pool {took:.1f} s after the restore")
    except TimeoutError as exc:
        print(f"  NOT REACHED: {exc}")

    async def ready_again() -> bool:
        return bool(watch.log) and watch.log[-1][1] == 200 and watch.log[-1][0] > restored

    with contextlib.suppress(TimeoutError):
        await eventually(ready_again, args.ready_wait, "ready")
    await watch.stop()
    summarise_ready(watch.log, cut, restored)
    show("counts", await counts(conn, endpoints.kafka_bootstrap, prefix, program, enrollment, [matching]))
    for svc in metrics_of:
        show(f"{svc.name} metrics", await consumer_metrics(watch.client, svc))


@contextlib.asynccontextmanager
async def proxy_to(host: str, port: int) -> AsyncIterator[Proxy]:
    """A TCP proxy to ``host:port`` that the probe cuts and restores."""
    proxy = Proxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


async def program_to_upload(
    client: httpx.AsyncClient, enrollment: Service, name: str, *, size: int, seed: int
) -> tuple[str, list[dict[str, Any]]]:
    """An org chart of ``size`` + 500 people and a program: its id and ``size`` enrolments to upload."""
    org = org_chart(size + 500, seed=seed)
    (await client.post(f"{enrollment.url}/org-chart", json=[p.row() for p in org])).raise_for_status()
    return await new_program(client, enrollment, name), enrolments(org, size, seed=seed)


def start_upload(
    client: httpx.AsyncClient, enrollment: Service, program: str, rows: list[dict[str, Any]]
) -> asyncio.Task[httpx.Response]:
    """The bulk upload, under way while the probe injects its fault."""
    return asyncio.create_task(client.post(f"{enrollment.url}/programs/{program}/enrolments/bulk", json=rows))


async def dbout(args: argparse.Namespace) -> None:
    prefix = f"p9{uuid.uuid4().hex[:6]}"
    endpoints = Stack().up()
    pg = httpx.URL(endpoints.admin_dsn)
    target = args.service
    size = args.size
    async with (
        proxy_to(pg.host, pg.port or 5432) as proxy,
        stack_of(*dict.fromkeys(["enrollment", "matching"]), prefix=prefix,
                 dsn_for={target: via(endpoints.admin_dsn, proxy.port)}) as (endpoints, svcs),
    ):  # fmt: skip
        matching, enrollment = svcs["matching"], svcs["enrollment"]
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token()}"}, timeout=600) as client:
            program, rows = await program_to_upload(client, enrollment, "probe9 outage", size=size, seed=10)
            conn = await asyncpg.connect(endpoints.admin_dsn)
            watch = ReadyWatch(client, svcs[target])
            upload = start_upload(client, enrollment, program, rows)
            if target == "matching":
                while await count(conn, matching.schema, POOL_SQL, program) < 1:
                    await asyncio.sleep(0.005)
            else:
                await asyncio.sleep(args.cut_after)
            if args.terminate:
                cut = watch.now()
                at_cut = await count(conn, matching.schema, POOL_SQL, program)
                killed = 0
                until = time.monotonic() + args.seconds
                while time.monotonic() < until:
                    killed += len(await conn.fetch(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                        svcs[target].schema))  # fmt: skip
                    await asyncio.sleep(0.2)
                print(f"pg_terminate_backend on {target}'s connections every 0.2 s for {args.seconds} s"
                      f" ({killed} backends ended), {at_cut:,} of {size:,} in matching's pool"
                      " at the start")  # fmt: skip
            else:
                await (proxy.blackhole() if args.blackhole else proxy.refuse())
                cut = watch.now()
                at_cut = await count(conn, matching.schema, POOL_SQL, program)
                print(f"{'black-holed' if args.blackhole else 'refused'} {target}'s PostgreSQL for {args.seconds}"
                      f" s, {at_cut:,} of {size:,} in matching's pool at the cut")  # fmt: skip
                await asyncio.sleep(args.seconds)
            at_restore = await count(conn, matching.schema, POOL_SQL, program)
            await await_recovery(
                watch, conn, upload, args, proxy=proxy, cut=cut, endpoints=endpoints, prefix=prefix,
                program=program, enrollment=enrollment, matching=matching,
                at_restore=f"in matching's pool when the database came back: {at_restore:,}",
                metrics_of=[matching, enrollment] if target == "enrollment" else [matching],
            )  # fmt: skip
            await conn.close()


# 3. Broker outage under enrollment while its outbox relay publishes ---------------------------------------


async def brokerout(args: argparse.Namespace) -> None:
    prefix = f"p9{uuid.uuid4().hex[:6]}"
    endpoints = Stack().up()
    host, port = endpoints.kafka_bootstrap.rsplit(":", 1)
    size = args.size
    async with (
        proxy_to(host, int(port)) as proxy,
        stack_of("matching", "enrollment", prefix=prefix, kafka_via={"enrollment": f"127.0.0.1:{proxy.port}"},
                 env_for={"enrollment": {"outbox_batch_size": str(args.relay_batch)}}) as (endpoints, svcs),
    ):  # fmt: skip
        matching, enrollment = svcs["matching"], svcs["enrollment"]
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token()}"}, timeout=600) as client:
            program, rows = await program_to_upload(client, enrollment, "probe9 broker outage", size=size, seed=11)
            conn = await asyncpg.connect(endpoints.admin_dsn)
            watch = ReadyWatch(client, enrollment)
            upload = start_upload(client, enrollment, program, rows)
            while await count(conn, enrollment.schema, PUBLISHED_SQL, program) < size // 5:
                await asyncio.sleep(0.002)
            await (proxy.blackhole() if args.blackhole else proxy.refuse())
            cut = watch.now()
            at_cut = await count(conn, enrollment.schema, PUBLISHED_SQL, program)
            print(
                f"{'black-holed' if args.blackhole else 'refused'} enrollment's broker connections for "
                f"{args.seconds} s; {at_cut:,} of {size + 1:,} outbox rows marked published at the cut"
            )
            await asyncio.sleep(args.seconds)
            at_restore = await count(conn, enrollment.schema, PUBLISHED_SQL, program)
            pool_at_restore = await count(conn, matching.schema, POOL_SQL, program)
            await await_recovery(
                watch, conn, upload, args, proxy=proxy, cut=cut, endpoints=endpoints, prefix=prefix,
                program=program, enrollment=enrollment, matching=matching,
                at_restore=f"at the restore: {at_restore:,} outbox rows marked published,"
                f" {pool_at_restore:,} in matching's pool",
                metrics_of=[matching, enrollment],
            )  # fmt: skip
            await conn.close()


# 4. kill -9 of a service mid-burst, then a restart -----------------------------------------------------


async def kill9(args: argparse.Namespace) -> None:
    prefix = f"p9{uuid.uuid4().hex[:6]}"
    size, victim = args.size, args.service
    async with stack_of("matching", "enrollment", prefix=prefix,
                        env_for={"enrollment": {"outbox_batch_size": str(args.relay_batch)}},
                        ) as (endpoints, svcs):  # fmt: skip
        matching, enrollment = svcs["matching"], svcs["enrollment"]
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token()}"}, timeout=600) as client:
            program, rows = await program_to_upload(client, enrollment, "probe9 kill -9", size=size, seed=12)
            conn = await asyncpg.connect(endpoints.admin_dsn)
            upload = start_upload(client, enrollment, program, rows)
            if args.during_upload:
                await asyncio.sleep(args.during_upload)
            elif victim == "matching":
                while await count(conn, matching.schema, POOL_SQL, program) < 1:
                    await asyncio.sleep(0.002)
            else:
                while await count(conn, enrollment.schema, PUBLISHED_SQL, program) < size // 5:
                    await asyncio.sleep(0.002)
            svcs[victim].kill9()
            at_kill = (await count(conn, matching.schema, POOL_SQL, program),
                       await count(conn, enrollment.schema, PUBLISHED_SQL, program))  # fmt: skip
            print(
                f"kill -9 {victim} (relay batches of {args.relay_batch}): {at_kill[0]:,} in matching's pool, "
                f"{at_kill[1]:,} outbox rows marked published at the kill"
            )
            try:
                r = await upload
                print(f"  bulk upload: HTTP {r.status_code}")
            except httpx.HTTPError as exc:
                print(f"  bulk upload: no answer ({type(exc).__name__})")
            await asyncio.sleep(2)
            svcs[victim].start_again()
            from bench.probes.harness import wait_ready

            await wait_ready(svcs[victim])

            stored = await count(conn, enrollment.schema, ENROLLED_SQL, program)

            async def complete() -> bool:
                return bool(await count(conn, matching.schema, POOL_SQL, program) >= stored)

            try:
                took = await eventually(complete, 180, f"{stored:,} (the enrolments stored) in matching's pool")
                print(f"  all {stored:,} stored enrolments in matching's pool {took:.1f} s after the restart was ready")
            except TimeoutError as exc:
                print(f"  NOT REACHED: {exc}")
            await asyncio.sleep(2)
            show("counts", await counts(conn, endpoints.kafka_bootstrap, prefix, program, enrollment, [matching]))
            show("matching metrics (since its last start)", await consumer_metrics(client, matching))
            await conn.close()


# 6. The single-enrolment API under 50 concurrent clients, bad inputs mixed in ---------------------------


def bad_inputs(good: dict[str, Any], program: str) -> list[tuple[str, str, str, bytes, dict[str, str]]]:
    """(name, method, path, body, extra headers) of requests a careless or hostile client sends."""
    path = f"/programs/{program}/enrolments"
    j = {"Content-Type": "application/json"}

    def body(**changes: Any) -> bytes:
        row = {**good, **changes}
        return json.dumps({k: v for k, v in row.items() if v is not ...}).encode()

    deep = b"[" * 100_000 + b"]" * 100_000
    return [
        ("participant_id missing", "POST", path, body(participant_id=...), j),
        ("participant_id null", "POST", path, body(participant_id=None), j),
        ("participant_id unknown to the org chart", "POST", path, body(participant_id="NOBODY-1"), j),
        ("participant_id 10,000 chars", "POST", path, body(participant_id="E" * 10_000), j),
        ("participant_id with NUL", "POST", path, body(participant_id="E\x00001"), j),
        ("participant_id a number", "POST", path, body(participant_id=12345), j),
        ("role invalid", "POST", path, body(role="boss"), j),
        ("capacity negative", "POST", path, body(capacity=-1), j),
        ("capacity 10**30", "POST", path, body(capacity=10**30), j),
        ("capacity 2.5", "POST", path, body(capacity=2.5), j),
        ("capacity a word", "POST", path, body(capacity="three"), j),
        ("skills_offered a string", "POST", path, body(skills_offered="python"), j),
        ("skills_offered 10,000 items", "POST", path, body(skills_offered=["x"] * 10_000), j),
        ("skills_sought with a 1 MB tag", "POST", path, body(skills_sought=["y" * 1_000_000]), j),
        ("goals with a NUL tag", "POST", path, body(goals=["lead\x00ership"]), j),
        ("unknown extra field", "POST", path, body(salary=100000), j),
        ("conflicts_with itself", "POST", path, body(conflicts_with=[good["participant_id"]]), j),
        ("languages a dict", "POST", path, body(languages={"en": 1}), j),
        ("body not JSON", "POST", path, b"participant_id=E1&role=mentee", j),
        ("body truncated JSON", "POST", path, body()[:-5], j),
        ("body a JSON list", "POST", path, b"[]", j),
        ("body a JSON string", "POST", path, b'"hello"', j),
        ("body empty", "POST", path, b"", j),
        ("body nested 100,000 deep", "POST", path, deep, j),
        ("body invalid UTF-8", "POST", path, b'{"participant_id": "\xff\xfe", "role": "mentee"}', j),
        ("content-type text/plain", "POST", path, body(), {"Content-Type": "text/plain"}),
        ("program unknown", "POST", "/programs/prg-nope/enrolments", body(), j),
        ("program id 5,000 chars", "POST", f"/programs/{'p' * 5000}/enrolments", body(), j),
        ("program id with %00", "POST", "/programs/prg%00x/enrolments", body(), j),
    ]  # fmt: skip


async def raw_request(host: str, port: int, token_: str, method: str, path: str, payload: bytes,
                      headers: dict[str, str]) -> tuple[int, bytes]:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token_}\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(payload)}\r\n\r\n"
        writer.write(head.encode() + payload)
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    body = rest.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in rest else b""
    return int(status_line.split()[1]), body


def shape_problem(status: int, body: bytes) -> str | None:
    """None when the body is FastAPI's one error shape with a loc naming where (a field, or the body)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:120]!r}"
    detail = doc.get("detail") if isinstance(doc, dict) else None
    if not isinstance(detail, list) or not detail:
        return f"detail is not a list: {str(doc)[:160]}"
    for item in detail:
        if not isinstance(item, dict) or set(item) < {"loc", "msg", "type"}:
            return f"item lacks loc/msg/type: {str(item)[:160]}"
        if not isinstance(item["loc"], list) or not item["loc"]:
            return f"empty loc: {str(item)[:160]}"
    if len(body) > 20_000:
        return f"error body of {len(body):,} bytes"
    return None


async def api(args: argparse.Namespace) -> None:
    prefix = f"p9{uuid.uuid4().hex[:6]}"
    async with stack_of("enrollment", prefix=prefix) as (endpoints, svcs):
        enrollment = svcs["enrollment"]
        tok = token()
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {tok}"}, timeout=120) as client:
            org = org_chart(20_000, seed=13)
            (
                await client.post(f"{enrollment.url}/org-chart", json=[p.row() for p in org], timeout=600)
            ).raise_for_status()
            program = await new_program(client, enrollment, "probe9 api")
        rows = enrolments(org, args.good, seed=13)
        bad = bad_inputs(rows[0], program)
        rng = random.Random(13)
        work: list[tuple[str, str, str, bytes, dict[str, str]]] = []
        for row in rows:
            work.append(("good", "POST", f"/programs/{program}/enrolments", json.dumps(row).encode(),
                         {"Content-Type": "application/json"}))  # fmt: skip
        for _ in range(args.bad_rounds):
            work += bad
        work += [("duplicate of a good one", "POST", f"/programs/{program}/enrolments", json.dumps(r).encode(),
                  {"Content-Type": "application/json"}) for r in rows[: args.good // 10]]  # fmt: skip
        rng.shuffle(work)
        queue: asyncio.Queue[tuple[str, str, str, bytes, dict[str, str]]] = asyncio.Queue()
        for item in work:
            queue.put_nowait(item)
        results: list[tuple[str, int, bytes, float]] = []
        port = enrollment.port

        async def worker() -> None:
            while not queue.empty():
                name, method, path, payload, headers = queue.get_nowait()
                t = time.perf_counter()
                try:
                    status, body = await raw_request("127.0.0.1", port, tok, method, path, payload, headers)
                except (OSError, IndexError, ValueError) as exc:
                    status, body = 0, repr(exc).encode()
                results.append((name, status, body, time.perf_counter() - t))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(50)))
        elapsed = time.perf_counter() - started
        print(f"{len(work):,} requests from 50 concurrent clients in {elapsed:.1f} s "
              f"({args.good:,} good, {args.bad_rounds} x {len(bad)} bad, {args.good // 10} duplicates)")  # fmt: skip
        by_kind: dict[str, Counter[int]] = {}
        problems: dict[str, str] = {}
        for name, status, body, _ in results:
            by_kind.setdefault(name, Counter())[status] += 1
            if status >= 400 and name not in problems:
                problem = shape_problem(status, body)
                if problem:
                    problems[name] = problem
        print(f"  statuses overall: {dict(Counter(s for _, s, _, _ in results))}")
        for name, statuses in by_kind.items():
            sample = next(b for n, s, b, _ in results if n == name)
            print(f"  {name}: {dict(statuses)}  e.g. {sample[:230].decode(errors='replace')}")
        for name, problem in problems.items():
            print(f"  SHAPE: {name}: {problem}")
        good_lat = sorted(d for n, s, _, d in results if n == "good")
        print(
            f"  good enrolments: p50 {good_lat[len(good_lat) // 2] * 1000:.0f} ms, "
            f"p99 {good_lat[int(len(good_lat) * 0.99)] * 1000:.0f} ms"
        )
        conn = await asyncpg.connect(endpoints.admin_dsn)
        n = await count(conn, enrollment.schema, "SELECT count(*) FROM {s}.enrolments WHERE program_id = $1", program)
        o = await count(conn, enrollment.schema, "SELECT count(*) FROM {s}.outbox WHERE key = $1", program)
        print(
            f"  enrolments stored: {n:,}; outbox rows for the program: {o:,}"
            f" (expected {args.good:,} and {args.good + 1:,})"
        )
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="check", required=True)
    p = sub.add_parser("poison")
    p.add_argument("--keep-for-replay", action="store_true")
    p.add_argument("--set", choices=sorted(VARIANTS), default="basic")
    p.add_argument("--other-programs", type=int, default=0, help="programs (keys) enrolled besides the poisoned one")
    d = sub.add_parser("dbout")
    d.add_argument("--seconds", type=float, default=5)
    d.add_argument("--size", type=int, default=5000)
    d.add_argument("--service", choices=["matching", "enrollment"], default="matching")
    d.add_argument("--cut-after", type=float, default=0.3, help="enrollment: seconds after the upload starts")
    d.add_argument("--blackhole", action="store_true", help="a partition instead of a refused connection")
    d.add_argument("--wait", type=float, default=180)
    d.add_argument("--ready-wait", type=float, default=60)
    d.add_argument("--reset-on-restore", action="store_true", help="black-holed connections reset at the restore")
    d.add_argument("--terminate", action="store_true", help="pg_terminate_backend on the service's connections")
    b = sub.add_parser("brokerout")
    b.add_argument("--seconds", type=float, default=20)
    b.add_argument("--size", type=int, default=5000)
    b.add_argument("--blackhole", action="store_true")
    b.add_argument("--relay-batch", type=int, default=200, help="ENROLLMENT_OUTBOX_BATCH_SIZE: cut mid-relay")
    b.add_argument("--wait", type=float, default=240)
    b.add_argument("--ready-wait", type=float, default=60)
    b.add_argument("--reset-on-restore", action="store_true", help="black-holed connections reset at the restore")
    k = sub.add_parser("kill9")
    k.add_argument("--service", choices=["matching", "enrollment"], default="matching")
    k.add_argument("--size", type=int, default=5000)
    k.add_argument("--relay-batch", type=int, default=200)
    k.add_argument("--during-upload", type=float, default=0.0, help="kill this many seconds into the upload")
    a = sub.add_parser("api")
    a.add_argument("--good", type=int, default=1000)
    a.add_argument("--bad-rounds", type=int, default=10)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {time.strftime('%H:%M:%S', time.gmtime())} UTC")
    asyncio.run(
        {"poison": poison, "dbout": dbout, "brokerout": brokerout, "kill9": kill9, "api": api}[args.check](args)
    )


if __name__ == "__main__":
    main()
