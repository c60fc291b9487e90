"""End to end on the real stack: a program enrolled through enrollment and matched by matching lives on in
sessions (expectations, sessions, goals, notes), a renewal keeps the mentor's slot, a withdrawn mentor's
group closes and its mentee is matched again, closing the program frees every slot; every event arrives
once in the contracts' envelope and a redelivery of all of them changes nothing; and the confidential
texts written on the way appear in no Kafka message, log line, metric or other participant's response."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from fastapi import FastAPI

from conftest import StackEndpoints, eventually, unique
from contracts.envelope import Envelope, from_kafka, to_kafka
from contracts.events import (
    ClosureReason,
    Event,
    GroupMatched,
    GroupMember,
    ParticipantWithdrawn,
    RelationshipClosed,
)
from contracts.policy import Form, Role
from contracts.topics import ALL_TOPICS, ENROLLMENT, MATCHING, SESSIONS
from runtime.auth import issue_token
from runtime.logging import JsonFormatter
from runtime.tail import wait_for_consumer_group
from services.enrollment.app import EnrollmentSettings
from services.enrollment.app import create as create_enrollment
from services.matching.app import MatchingSettings
from services.matching.app import create as create_matching
from services.sessions.app import SessionsSettings
from services.sessions.app import create as create_sessions

pytestmark = pytest.mark.stack


class Bus:
    """Every record on every topic (dead-letter topics too) from the moment it is opened, kept in order."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Bus:
        await self._consumer.start()
        await self._consumer._client.force_metadata_update()
        names = [n for t in ALL_TOPICS for n in (t.name, t.dead_letter)]
        tps = [TopicPartition(n, p) for n in names for p in sorted(self._consumer.partitions_for_topic(n) or ())]
        assert {tp.topic for tp in tps} == set(names), "every topic exists before anything is written"
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                self.records.extend(records)

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._consumer.stop()

    def events(self, topic: str, keys: set[str]) -> list[tuple[ConsumerRecord[bytes, bytes], Envelope]]:
        if self._task is not None and self._task.done():  # a reader that died must fail the test, not starve it
            self._task.result()
        return [
            (r, from_kafka(r.headers, r.value))
            for r in self.records
            if r.topic == topic and r.key and r.key.decode() in keys
        ]


@dataclass
class Platform:
    enrollment: httpx.AsyncClient
    matching: httpx.AsyncClient
    sessions: httpx.AsyncClient
    apps: dict[str, FastAPI]
    schemas: dict[str, str]
    stack: StackEndpoints
    prefix: str

    def token(self, sub: str, role: str = "participant") -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.apps['sessions'].state.jwt, sub, [role])}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.token("hr-admin", "admin")

    async def fetch(self, service: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.stack.admin_dsn, server_settings={"search_path": self.schemas[service]})
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def pool(self, program_id: str) -> dict[str, Any]:
        r = await self.matching.get(f"/programs/{program_id}/pool", headers=self.admin)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def relationships(self, program_id: str) -> list[dict[str, Any]]:
        r = await self.sessions.get(f"/programs/{program_id}/relationships", headers=self.admin)
        if r.status_code == 404:
            return []
        assert r.status_code == 200, r.text
        body: list[dict[str, Any]] = r.json()["items"]
        return body

    async def run_matching(self, program_id: str, seed: int) -> dict[str, Any]:
        r = await self.matching.post(
            f"/programs/{program_id}/runs", json={"wait": True, "seed": seed}, headers=self.admin
        )
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        body: dict[str, Any] = r.json()
        return body


@pytest.fixture
async def platform(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[Platform]:
    schemas = {s: unique(f"{s}_life") for s in ("enrollment", "matching", "sessions")}
    scratch_schemas += list(schemas.values())
    dsn, kafka = stack.admin_dsn, stack.kafka_bootstrap
    apps = {
        "matching": create_matching(
            MatchingSettings(
                database_url=dsn,
                kafka_bootstrap=kafka,
                log_level="INFO",
                db_schema=schemas["matching"],
                consumer_offset_reset="latest",
            )
        ),
        "sessions": create_sessions(
            SessionsSettings(
                database_url=dsn,
                kafka_bootstrap=kafka,
                log_level="INFO",
                db_schema=schemas["sessions"],
                consumer_offset_reset="latest",
            )
        ),
        "enrollment": create_enrollment(
            EnrollmentSettings(
                database_url=dsn,
                kafka_bootstrap=kafka,
                log_level="INFO",
                db_schema=schemas["enrollment"],
                consumer_offset_reset="latest",
            )
        ),
    }
    async with AsyncExitStack() as stack_:
        await stack_.enter_async_context(apps["matching"].router.lifespan_context(apps["matching"]))
        await stack_.enter_async_context(apps["sessions"].router.lifespan_context(apps["sessions"]))
        await wait_for_consumer_group(stack.kafka_bootstrap, f"{schemas['matching']}-pools")
        await wait_for_consumer_group(stack.kafka_bootstrap, f"{schemas['sessions']}-relationships")
        await stack_.enter_async_context(apps["enrollment"].router.lifespan_context(apps["enrollment"]))
        clients = {}
        for name, app in apps.items():
            clients[name] = await stack_.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{name}", timeout=120)
            )
        yield Platform(
            clients["enrollment"],
            clients["matching"],
            clients["sessions"],
            apps,
            schemas,
            stack,
            prefix=f"L{uuid.uuid4().hex[:6]}",
        )


@contextlib.contextmanager
def captured_logs() -> Any:
    """Every log record from here on, as the services write it (JSON) and as raw attributes."""
    stream = io.StringIO()

    class Raw(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stream.write(JsonFormatter("capture").format(record) + "\n")
            stream.write(repr(record.__dict__) + "\n")

    handler = Raw(level=logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


async def _enrol(p: Platform) -> tuple[str, list[str], list[str]]:
    """Three senior mentors (two slots each) and three mentees outside their reporting lines."""
    x = p.prefix
    people: list[dict[str, Any]] = [
        {"employee_id": f"{x}-ceo", "manager_id": None, "department": "Executive", "level": 9},
        {"employee_id": f"{x}-boss", "manager_id": f"{x}-ceo", "department": "Sales", "level": 8},
        *(
            {"employee_id": f"{x}-M{i}", "manager_id": f"{x}-ceo", "department": d, "level": 6}
            for i, d in enumerate(("Finance", "Legal", "IT"))
        ),
        *({"employee_id": f"{x}-e{i}", "manager_id": f"{x}-boss", "department": "Sales", "level": 2} for i in range(3)),
    ]
    for person in people:
        person.update(location="Milan", utc_offset_minutes=60, languages=["it", "en"])
    r = await p.enrollment.post("/org-chart", json=people, headers=p.admin)
    assert r.status_code == 200, r.text
    r = await p.enrollment.post(
        "/programs",
        json={"name": "Life", "form": "one_to_one", "starts_on": "2026-01-01", "cadence_days": 21},
        headers=p.admin,
    )
    assert r.status_code == 201, r.text
    program_id: str = r.json()["program_id"]
    mentors, mentees = [f"{x}-M{i}" for i in range(3)], [f"{x}-e{i}" for i in range(3)]
    rows = [{"participant_id": m, "role": "mentor", "capacity": 2, "skills_offered": ["negotiation"]} for m in mentors]
    rows += [{"participant_id": e, "role": "mentee", "skills_sought": ["negotiation"]} for e in mentees]
    r = await p.enrollment.post(f"/programs/{program_id}/enrolments/bulk", json=rows, headers=p.admin)
    assert r.status_code == 200, r.text

    async def pooled() -> bool:
        return (await p.pool(program_id))["participants"] == 6 if await _known(p, program_id) else False

    await eventually(pooled, 60, "matching to pool the six enrolments")
    return program_id, mentors, mentees


async def _known(p: Platform, program_id: str) -> bool:
    r = await p.matching.get(f"/programs/{program_id}/pool", headers=p.admin)
    return r.status_code == 200


def _mentor_of(relationships: list[dict[str, Any]], mentee: str) -> tuple[str, str]:
    for rel in relationships:
        ids = {m["participant_id"]: m["role"] for m in rel["members"]}
        if ids.get(mentee) == "mentee" and rel["status"] == "open":
            return rel["group_id"], next(pid for pid, role in ids.items() if role == "mentor")
    raise AssertionError(f"{mentee} is in no open relationship")


async def _live_a_relationship(p: Platform, group_id: str, mentor: str, mentee: str, marks: dict[str, str]) -> None:
    """Expectations, a session held, one cancelled with a reason, a goal in steps, a private note."""
    m, e = p.token(mentor), p.token(mentee)
    s = p.sessions
    r = await s.put(
        f"/relationships/{group_id}/expectations",
        json={"format": "video", "agenda_template": marks["agenda"], "boundaries": "no HR"},
        headers=m,
    )
    assert r.status_code == 200, r.text
    held_at = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    r = await s.post(
        f"/relationships/{group_id}/sessions", json={"scheduled_for": held_at, "duration_minutes": 60}, headers=e
    )
    assert r.status_code == 201, r.text
    held = r.json()["session_id"]
    r = await s.post(f"/sessions/{held}/held", json={"duration_minutes": 55, "attendees": [mentor, mentee]}, headers=m)
    assert r.status_code == 200, r.text
    soon = (datetime.now(UTC) + timedelta(days=20)).isoformat()
    r = await s.post(f"/relationships/{group_id}/sessions", json={"scheduled_for": soon}, headers=m)
    r = await s.post(f"/sessions/{r.json()['session_id']}/cancel", json={"reason": marks["reason"]}, headers=e)
    assert r.status_code == 200, r.text
    goal = {"category": "communication", "wording": marks["goal"], "steps": ["outline", marks["step"]]}
    r = await s.post(f"/relationships/{group_id}/goals", json=goal, headers=e)
    assert r.status_code == 201, r.text
    r = await s.post(f"/goals/{r.json()['goal_id']}/steps/1/done", headers=e)
    assert r.status_code == 200 and r.json()["steps_done"] == 1, r.text
    r = await s.post(f"/sessions/{held}/notes", json={"text": marks["note"]}, headers=e)
    assert r.status_code == 201, r.text
    r = await s.post(
        f"/sessions/{held}/notes", json={"kind": "action_item", "text": "book a room", "shared": True}, headers=m
    )
    assert r.status_code == 201, r.text


async def _processed(p: Platform, service: str, event_id: str) -> bool:
    rows = await p.fetch(service, "SELECT 1 FROM processed_events WHERE event_id = $1", event_id)
    return bool(rows)


async def _redeliver(p: Platform, records: list[ConsumerRecord[bytes, bytes]]) -> None:
    """Send every record again as it was (same id, key, partition), then one fresh sentinel per partition
    that the consumers apply; once both services recorded every sentinel, every redelivery before it has
    been handled (a partition is consumed in order)."""
    producer = AIOKafkaProducer(bootstrap_servers=p.stack.kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for rec in records:
            await producer.send_and_wait(
                rec.topic, rec.value, key=rec.key, headers=list(rec.headers), partition=rec.partition
            )
        waits: list[tuple[str, str]] = []
        for topic, partition in sorted({(r.topic, r.partition) for r in records}):
            sentinel = _sentinel(topic, p.prefix)
            record = to_kafka(sentinel)
            await producer.send_and_wait(
                topic, record.value, key=record.key, headers=record.headers, partition=partition
            )
            readers = {
                ENROLLMENT.name: ("matching", "sessions"),
                MATCHING.name: ("sessions",),
                SESSIONS.name: ("matching",),
            }[topic]
            waits += [(service, sentinel.id) for service in readers]
    finally:
        await producer.stop()
    for service, event_id in waits:

        async def seen(service: str = service, event_id: str = event_id) -> bool:
            return await _processed(p, service, event_id)

        await eventually(seen, 60, f"{service} to reach the sentinel after the redeliveries")


def _sentinel(topic: str, prefix: str) -> Envelope:
    """A harmless fresh event of a type the topic's readers apply, about a program and group nobody has."""
    now, program, group = datetime.now(UTC), f"{prefix}-sentinel", f"{prefix}-sentinel-{uuid.uuid4().hex[:6]}"
    event: Event
    if topic == ENROLLMENT.name:
        event = ParticipantWithdrawn(program_id=program, participant_id=f"{group}-withdrawn", withdrawn_at=now)
    elif topic == MATCHING.name:
        event = GroupMatched(
            program_id=program,
            run_id="sentinel",
            group_id=group,
            form=Form.ONE_TO_ONE,
            members=[GroupMember(participant_id=f"{group}-mentee", role=Role.MENTEE)],
            fit=0,
            explanation=[],
            cadence_days=30,
            matched_at=now,
        )
    else:
        event = RelationshipClosed(program_id=program, group_id=group, reason=ClosureReason.COMPLETED, closed_at=now)
    return Envelope(data=event)


async def test_a_matched_group_lives_renews_loses_its_mentor_and_the_program_closes(platform: Platform) -> None:
    p = platform
    marks = {k: f"{k}-{uuid.uuid4().hex}" for k in ("note", "goal", "step", "reason", "agenda")}
    async with Bus(p.stack.kafka_bootstrap) as bus:
        with captured_logs() as logs:
            program_id, mentors, mentees = await _enrol(p)
            first = await p.run_matching(program_id, seed=11)
            assert first["summary"]["placed"] == 3, first["summary"]

            async def related(n: int) -> bool:
                return len(await p.relationships(program_id)) == n

            await eventually(lambda: related(3), 60, "sessions to learn the three matched groups")
            rels = await p.relationships(program_id)
            assert all(r["term"] == 1 and r["status"] == "open" and r["cadence_days"] == 21 for r in rels)

            # a participant sees whom they were matched with
            group_id, mentor = _mentor_of(rels, mentees[0])
            r = await p.sessions.get("/me/relationships", headers=p.token(mentees[0]))
            assert [(x["group_id"], x["my_role"], x["members"]) for x in r.json()] == [
                (group_id, "mentee", [{"participant_id": mentor, "role": "mentor", "active": True}])
            ]
            await _live_a_relationship(p, group_id, mentor, mentees[0], marks)

            # a renewal keeps the mentor's slot in matching
            renewed_group, renewed_mentor = _mentor_of(rels, mentees[1])
            r = await p.sessions.post(
                f"/relationships/{renewed_group}/close", json={"outcome": "renewed"}, headers=p.token(renewed_mentor)
            )
            assert r.status_code == 200 and r.json()["term"] == 2, r.text

            async def renewal_published() -> bool:
                events = [e.data for _, e in bus.events(SESSIONS.name, {renewed_group})]
                return any(isinstance(e, RelationshipClosed) and e.reason == "renewed" for e in events)

            await eventually(renewal_published, 30, "relationship.closed (renewed) on Kafka")
            (renewal,) = [e for _, e in bus.events(SESSIONS.name, {renewed_group})]
            await eventually(lambda: _processed(p, "matching", renewal.id), 30, "matching to apply the renewal")
            assert (await p.pool(program_id))["active_groups"] == 3, "a renewed group still holds its mentor"

            # the mentor withdraws: the group closes, matching frees it, the next run places the mentee again
            r = await p.enrollment.delete(f"/programs/{program_id}/enrolments/{mentor}", headers=p.admin)
            assert r.status_code == 204, r.text

            async def freed() -> bool:
                return bool((await p.pool(program_id))["active_groups"] == 2)

            await eventually(freed, 60, "relationship.closed to free the withdrawn mentor's group in matching")
            closed = {r["group_id"]: r for r in await p.relationships(program_id)}[group_id]
            assert (closed["status"], closed["outcome"]) == ("closed", "withdrawn")
            second = await p.run_matching(program_id, seed=12)
            assert second["summary"]["placed"] == 1, second["summary"]
            await eventually(lambda: related(4), 60, "sessions to learn the new group")
            new_group, new_mentor = _mentor_of(await p.relationships(program_id), mentees[0])
            assert new_group != group_id and new_mentor in mentors and new_mentor != mentor

            # closing the program closes every open relationship and frees every slot
            r = await p.enrollment.post(f"/programs/{program_id}/close", headers=p.admin)
            assert r.status_code == 200, r.text

            async def all_freed() -> bool:
                pool = await p.pool(program_id)
                return bool(pool["active_groups"] == 0 and pool["in_active_groups"] == 0)

            await eventually(all_freed, 60, "matching to free every slot of the closed program")
            final = await p.relationships(program_id)
            assert sorted((r["status"], r["outcome"], r["term"]) for r in final) == [
                ("closed", "completed", 1),
                ("closed", "completed", 1),
                ("closed", "completed", 2),
                ("closed", "withdrawn", 1),
            ]

            groups = {r["group_id"] for r in final}

            async def every_closure() -> bool:
                return _count(bus.events(SESSIONS.name, groups), "relationship.closed") == 5

            await eventually(every_closure, 60, "every closure on Kafka")
            _check_every_event_once(p, bus, program_id, groups)
            outbox = await p.fetch("sessions", "SELECT event_id FROM outbox")
            assert {str(r["event_id"]) for r in outbox} == {e.id for _, e in bus.events(SESSIONS.name, groups)}

            # redelivering every event of the program changes nothing
            before = (await p.relationships(program_id), await p.pool(program_id), len(outbox))
            mine = [
                rec
                for rec in bus.records
                if rec.key
                and rec.key.decode() in groups | {program_id}
                and rec.topic in (ENROLLMENT.name, MATCHING.name, SESSIONS.name)
            ]
            await _redeliver(p, mine)
            after_outbox = await p.fetch("sessions", "SELECT event_id FROM outbox")
            assert (await p.relationships(program_id), await p.pool(program_id), len(after_outbox)) == before

            await _check_a_dead_letter_repeats_no_content(p, bus)
            await _check_nothing_leaked(p, bus, logs, marks, group_id, mentees)


async def _check_a_dead_letter_repeats_no_content(p: Platform, bus: Bus) -> None:
    """A group.matched that fails validation, with a marker where a list belongs: sessions parks it on the
    dead-letter topic with a reason that names the field, never the content."""
    marker, key = f"dlt-{uuid.uuid4().hex}", f"{p.prefix}-probe"
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_source", b"/probe"),
        ("ce_type", GroupMatched.TYPE.encode()),
        ("ce_time", datetime.now(UTC).isoformat().encode()),
    ]
    body = f'{{"program_id": "{key}", "run_id": "r", "group_id": "{key}", "members": "{marker}"}}'.encode()
    producer = AIOKafkaProducer(bootstrap_servers=p.stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(MATCHING.name, body, key=key.encode(), headers=headers)
    finally:
        await producer.stop()
    group = f"{p.schemas['sessions']}-relationships".encode()

    def parked() -> list[ConsumerRecord[bytes, bytes]]:
        return [
            r
            for r in bus.records
            if r.topic == MATCHING.dead_letter
            and (r.key or b"") == key.encode()
            and ("dlt_consumer_group", group) in r.headers
        ]

    async def arrived() -> bool:
        return bool(parked())

    await eventually(arrived, 60, "the dead letter of the invalid group.matched")
    (record,) = parked()
    reason = dict(record.headers)["dlt_reason"].decode()
    assert "members" in reason, reason
    for name, value in record.headers:
        assert marker.encode() not in value and marker not in name, f"the content reached the header {name}"


def _count(events: list[tuple[ConsumerRecord[bytes, bytes], Envelope]], name: str) -> int:
    return sum(1 for _, e in events if e.type == f"org.mentoring.{name}.v1")


def _check_every_event_once(p: Platform, bus: Bus, program_id: str, groups: set[str]) -> None:
    sessions = bus.events(SESSIONS.name, groups)
    kinds = Counter(e.type.removeprefix("org.mentoring.").removesuffix(".v1") for _, e in sessions)
    assert kinds == {
        "expectations.agreed": 1,
        "session.scheduled": 2,
        "session.held": 1,
        "session.cancelled": 1,
        "goal.set": 1,
        "goal.progressed": 1,
        "relationship.closed": 5,
    }, kinds
    upstream = bus.events(ENROLLMENT.name, {program_id}) + bus.events(MATCHING.name, {program_id})
    assert _count(upstream, "group.matched") == 4
    for rec, env in sessions + upstream:
        headers = {k: v.decode() for k, v in rec.headers}
        assert headers["ce_specversion"] == "1.0" and headers["ce_source"] == env.data.SOURCE
        assert headers["ce_subject"] == rec.key.decode() == env.subject
        if rec.topic == SESSIONS.name:
            assert env.data.program_id == program_id  # type: ignore[attr-defined]
    ids = [env.id for _, env in sessions + upstream]
    assert len(ids) == len(set(ids)), "every event arrives once"


async def _check_nothing_leaked(
    p: Platform, bus: Bus, logs: io.StringIO, marks: dict[str, str], group_id: str, mentees: list[str]
) -> None:
    wire = b"\n".join(
        b"".join([r.key or b"", r.value or b"", *(k.encode() + v for k, v in r.headers)]) for r in bus.records
    )
    assert any(r.topic == SESSIONS.name for r in bus.records)
    metrics = "".join([(await c.get("/metrics")).text for c in (p.enrollment, p.matching, p.sessions)])
    # everyone but the author: the other mentees, the (withdrawn) mentor, an admin, an integration
    mentor = next(
        m["participant_id"]
        for m in (await p.sessions.get(f"/relationships/{group_id}", headers=p.admin)).json()["members"]
        if m["role"] == "mentor"
    )
    readers = [p.token(m) for m in [*mentees[1:], mentor]] + [p.admin, p.token("warehouse", "integration")]
    sessions_list = (await p.sessions.get(f"/relationships/{group_id}/sessions", headers=p.admin)).json()
    paths = [
        "/me/relationships",
        f"/relationships/{group_id}",
        f"/relationships/{group_id}/sessions",
        f"/relationships/{group_id}/goals",
        f"/relationships/{group_id}/expectations",
    ]
    paths += [f"/sessions/{s['session_id']}" for s in sessions_list]
    paths += [f"/sessions/{s['session_id']}/notes" for s in sessions_list]
    others = ""
    for headers in readers:
        for path in paths:
            others += (await p.sessions.get(path, headers=headers)).text
    own = "".join([(await p.sessions.get(path, headers=p.token(mentees[0]))).text for path in paths])
    stored = ""
    for table in ("expectations", "sessions", "goals", "goal_steps", "notes", "outbox"):
        stored += "".join(str(r[0]) for r in await p.fetch("sessions", f"SELECT t::text FROM {table} t"))
    log_text = logs.getvalue()
    assert log_text, "the capture saw the services' logs"
    for name, mark in marks.items():
        assert mark in own, f"the author reads the {name}"
        assert mark.encode() not in wire, f"the {name} reached Kafka"
        assert mark not in log_text, f"the {name} reached a log line"
        assert mark not in metrics, f"the {name} reached /metrics"
        assert mark not in stored and mark.encode().hex() not in stored, f"the {name} is stored in plaintext"
        assert mark not in others, f"the {name} reached someone who may not read it"
