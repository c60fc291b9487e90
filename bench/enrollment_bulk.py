"""Bulk enrolment throughput, end to end: from the HTTP upload until every participant.enrolled
event is on Kafka (the outbox relay included).

    python -m bench.enrollment_bulk [--sizes 10000,50000]

Runs the enrollment service in-process on the local stack, in a throw-away schema. Prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import asyncpg
import httpx

from bench.synthetic_org import enrolments, org_chart
from contracts.events import ParticipantEnrolled
from contracts.topics import ENROLLMENT
from deploy.local.stack import Stack
from runtime.auth import issue_token
from runtime.tail import TopicTail
from services.enrollment.app import EnrollmentSettings, create

_TYPE, _ENROLLED = "ce_type", ParticipantEnrolled.TYPE.encode()


async def one_size(admin_dsn: str, bootstrap: str, size: int) -> None:
    schema = f"bench_enrollment_{uuid.uuid4().hex[:8]}"
    settings = EnrollmentSettings(
        database_url=admin_dsn,
        db_schema=schema,
        kafka_bootstrap=bootstrap,
        log_level="WARNING",
        db_pool_max=4,
        consumer_offset_reset="latest",
    )
    app = create(settings)
    people = org_chart(int(size * 1.25) + 10, seed=size)
    rows = enrolments(people, size)
    try:
        async with app.router.lifespan_context(app):
            auth = {"Authorization": f"Bearer {issue_token(app.state.jwt, 'bench', ['admin'])}"}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://e", timeout=600) as client:
                r = await client.post("/org-chart", json=[p.row() for p in people], headers=auth)
                r.raise_for_status()
                r = await client.post(
                    "/programs", json={"name": "bench", "form": "one_to_one", "starts_on": "2026-01-01"}, headers=auth
                )
                pid = r.json()["program_id"]
                body = json.dumps(rows).encode()
                async with TopicTail(bootstrap, ENROLLMENT.name) as tail:
                    started_wall = time.time()
                    started = time.perf_counter()
                    r = await client.post(
                        f"/programs/{pid}/enrolments/bulk",
                        content=body,
                        headers={**auth, "content-type": "application/json"},
                    )
                    r.raise_for_status()
                    stored = time.perf_counter() - started
                    records = await tail.collect(
                        lambda rec: rec.key == pid.encode() and (_TYPE, _ENROLLED) in rec.headers,
                        count=size,
                        timeout=600,
                    )
                    # figures from a partial or doubled set would be wrong, not just slow: refuse them
                    ids = {dict(rec.headers).get("ce_id") for rec in records}
                    if len(records) != size or len(ids) != size:
                        raise SystemExit(
                            f"{size:,} enrolments: {len(records):,} participant.enrolled events arrived"
                            f" ({len(ids):,} distinct) within the timeout, expected exactly {size:,}: no figures"
                        )
                    # the last event's broker-side timestamp, not when our reader got round to it
                    total = max(r.timestamp for r in records) / 1000 - started_wall
        print(
            f"{size:>7,} enrolments: stored in {stored:6.2f} s, all {len(records):,} events on Kafka after "
            f"{total:6.2f} s -> {size / total:8,.0f} enrolments/s end to end ({size / stored:,.0f}/s to the database)"
        )
    finally:
        conn = await asyncpg.connect(admin_dsn)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,50000")
    args = parser.parse_args()
    endpoints = Stack().up()
    for size in (int(s) for s in args.sizes.split(",")):
        asyncio.run(one_size(endpoints.admin_dsn, endpoints.kafka_bootstrap, size))


if __name__ == "__main__":
    main()
