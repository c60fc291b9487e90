"""What every check of the issue-9 probe (``bench/probes/issue9.py``) shares: the services it starts on
private topics, the counts it reads from every database and from Kafka, and how it prints them."""

from __future__ import annotations

import contextlib
from typing import Any

import asyncpg
import httpx
from aiokafka import TopicPartition

from bench.probes import harness
from bench.probes.harness import (
    Service,
    ce_ids,
    delete_topics,
    end_offsets,
    read_topic,
    running,
)
from deploy.local.stack import Stack
from runtime.auth import issue_token, jwt_config_from_env
from runtime.undecodable import fetch_records

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
