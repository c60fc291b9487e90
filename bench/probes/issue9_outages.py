"""Issue-9 probe, checks 2-4 (``issue9 dbout``, ``brokerout``, ``kill9``): a fault injected under a
service during a bulk upload (its PostgreSQL cut, its broker cut, the process killed with -9), lifted,
and then what every outage prints: the upload's answer, when matching's pool is complete, readiness
through the fault and after it, the counts and the consumers' metrics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx

from bench.probes.harness import (
    Service,
    eventually,
    via,
)
from bench.probes.issue9_common import (
    ENROLLED_SQL,
    POOL_SQL,
    PUBLISHED_SQL,
    Proxy,
    consumer_metrics,
    count,
    counts,
    new_program,
    show,
    stack_of,
    token,
)
from bench.synthetic_org import enrolments, org_chart
from deploy.local.stack import Stack


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


# 2. Database outage under a service during a 5,000-person bulk upload -----------------------------------


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
