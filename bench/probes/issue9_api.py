"""Issue-9 probe, check 6 (``issue9 api``): the single-enrolment API under 50 concurrent clients, bad
inputs mixed in: the statuses, whether every error has the one shape, latencies and what was stored."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx

from bench.probes.issue9_common import (
    count,
    new_program,
    stack_of,
    token,
)
from bench.synthetic_org import enrolments, org_chart


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
