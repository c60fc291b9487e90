"""Issue-9 probe, check 1 (``issue9 poison``): poison and forward-compatibility variants produced ahead of
valid enrolments on the same key, then what every consumer applied, dead-lettered and reported; with
``--keep-for-replay``, check 5: the dead-letter command on the letters just produced."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import asyncpg
import httpx

from bench.probes.harness import (
    ROOT,
    Service,
    eventually,
    read_topic,
)
from bench.probes.issue9_common import (
    ENROLLMENT_TOPIC,
    PARTICIPANTS_SQL,
    POOL_SQL,
    consumer_metrics,
    count,
    counts,
    new_program,
    show,
    stack_of,
    token,
)
from bench.synthetic_org import enrolments, org_chart
from tests.faultkit import send_raw


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
