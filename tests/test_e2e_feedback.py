"""End to end on the real stack: the feedback service learns groups, sessions and closures from events
on the real matching and sessions topics (produced here with unique ids, so it depends on no other
service), members answer what is due, and integration teams receive feedback.given v2: once per
answer, scores only. Redelivering every consumed event changes nothing, and a comment carrying a
unique marker appears nowhere but in its author's and a feedback:read-text holder's responses."""

from __future__ import annotations

import asyncio
import functools
import io
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from conftest import StackEndpoints, TopicTail, eventually, unique
from contracts.base import utcnow
from contracts.envelope import Envelope, from_kafka, to_kafka
from contracts.events import ClosureReason, Event, FeedbackGivenV2, Measure, SessionHeld, SurveyKind
from contracts.policy import Role
from contracts.topics import ALL_TOPICS, FEEDBACK
from runtime.auth import issue_token
from runtime.logging import JsonFormatter
from runtime.outbox import make_producer
from runtime.tail import wait_for_consumer_group
from services.feedback.app import FeedbackSettings, create
from services.feedback.tests.support import Clock, closed, group_matched, session_held

pytestmark = pytest.mark.stack

MENTOR, ALICE, BOB, CAROL, DAN = "E-mentor", "E-alice", "E-bob", "E-carol", "E-dan"


class Stack:
    def __init__(self, http: httpx.AsyncClient, app: Any, producer: AIOKafkaProducer, schema: str) -> None:
        self.http, self.app, self.producer, self.schema = http, app, producer, schema
        self.sent: list[Envelope] = []

    def who(self, sub: str, *roles: str, permissions: list[str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.app.state.jwt, sub, list(roles), permissions=permissions)}"}

    async def produce(self, *envelopes: Envelope) -> None:
        for env in envelopes:
            record = to_kafka(env)
            await self.producer.send_and_wait(record.topic, record.value, key=record.key, headers=record.headers)

    async def publish(self, *events: Event) -> None:
        """As their owning services would: each event once, with a fresh id."""
        envelopes = [Envelope(data=e) for e in events]
        self.sent += envelopes
        await self.produce(*envelopes)

    async def warm_up(self, program: str, groups: list[str]) -> None:
        """Until the service applies probes on the partitions this test's events will use.

        It starts at the latest offsets, fixed only once the consumer has asked the broker for them, a
        moment after its group is stable: an event produced before that would be skipped. A probe that
        shares the events' keys shares their partitions; once one is applied, what follows is seen.
        """
        for _ in range(12):
            probe_group, probe_sessions = unique("grp-probe"), [unique("ses-probe") for _ in groups]
            await self.produce(
                Envelope(data=group_matched(program, probe_group, {unique("E"): Role.PEER}, utcnow())),
                *(
                    Envelope(data=session_held(program, g, p, [], utcnow()))
                    for g, p in zip(groups, probe_sessions, strict=True)
                ),
            )

            try:
                await eventually(functools.partial(self._applied, probe_group, probe_sessions), 5, "probes")
                return
            except AssertionError:
                continue
        raise AssertionError("the feedback service applied none of the probes in 60 s")

    async def _applied(self, group: str, sessions: list[str]) -> bool:
        pool = self.app.state.ctx.pool
        held = await pool.fetchval("SELECT count(*) FROM sessions_held WHERE session_id = ANY($1)", sessions)
        return bool(held == len(sessions) and await pool.fetchval("SELECT 1 FROM groups WHERE group_id = $1", group))

    async def due(self, sub: str) -> list[dict[str, Any]]:
        r = await self.http.get("/me/surveys/due", headers=self.who(sub, "participant"))
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def counts(self, groups: list[str]) -> list[int]:
        """Rows this test caused (other tests publish on the same topics, and this service learns theirs too):
        answers, outbox rows, sessions, members and closures of its groups, events of its own applied."""
        pool = self.app.state.ctx.pool
        return [
            int(await pool.fetchval("SELECT count(*) FROM answers")),
            int(await pool.fetchval("SELECT count(*) FROM outbox")),
            *[
                int(await pool.fetchval(f"SELECT count(*) FROM {table} WHERE group_id = ANY($1)", groups))
                for table in ("sessions_held", "group_members", "closures")
            ],
            int(
                await pool.fetchval(
                    "SELECT count(*) FROM processed_events WHERE event_id = ANY($1)", [e.id for e in self.sent]
                )
            ),
        ]


@pytest.fixture
async def live(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[Stack]:
    schema = unique("feedback_e2e")
    scratch_schemas.append(schema)
    settings = FeedbackSettings(
        database_url=stack.admin_dsn,
        kafka_bootstrap=stack.kafka_bootstrap,
        db_schema=schema,
        consumer_offset_reset="latest",
        log_level="DEBUG",
    )
    app = create(settings)
    async with AsyncExitStack() as stack_:
        await stack_.enter_async_context(app.router.lifespan_context(app))
        await wait_for_consumer_group(stack.kafka_bootstrap, f"{schema}-projection")
        producer = make_producer(stack.kafka_bootstrap, "feedback-e2e-producer")
        await producer.start()
        stack_.push_async_callback(producer.stop)
        http = await stack_.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://feedback", timeout=60)
        )
        yield Stack(http, app, producer, schema)


def _contains(record: ConsumerRecord[bytes, bytes], marker: bytes) -> bool:
    parts = [record.value or b"", record.key or b"", *(v for _, v in record.headers)]
    return any(marker in p for p in parts)


async def test_members_answer_due_surveys_and_integration_receives_scores_once_and_never_text(
    live: Stack, stack: StackEndpoints
) -> None:
    s = live
    log = io.StringIO()  # everything the service logs from now on, as it writes it
    handler = logging.StreamHandler(log)
    handler.setFormatter(JsonFormatter("feedback"))
    logging.getLogger().addHandler(handler)
    try:
        await _scenario(s, stack, log)
    finally:
        logging.getLogger().removeHandler(handler)


async def _scenario(s: Stack, stack: StackEndpoints, log: io.StringIO) -> None:
    program = unique("prg")
    group, other_group, session = unique("grp"), unique("grp"), unique("ses")
    now = utcnow()
    clock = Clock(now)
    s.app.state.clock = clock
    matched_at = now - timedelta(days=40)

    # what matching and sessions announce: two groups, a session Bob missed, the other group's end
    await s.warm_up(program, [group, other_group])
    await s.publish(
        group_matched(program, group, {MENTOR: Role.MENTOR, ALICE: Role.MENTEE, BOB: Role.MENTEE}, matched_at),
        group_matched(program, other_group, {CAROL: Role.MENTOR, DAN: Role.MENTEE}, matched_at),
        session_held(program, group, session, [MENTOR, ALICE], now - timedelta(hours=2)),
        closed(program, group, now - timedelta(hours=1), ClosureReason.RENEWED),
        closed(program, other_group, now - timedelta(hours=1)),
    )

    async def learnt() -> bool:
        return {i["kind"] for i in await s.due(ALICE)} == {"session", "checkin"} and bool(await s.due(DAN))

    await eventually(learnt, 60, "the feedback service to learn groups, sessions and closures from Kafka")
    assert {(i["kind"], i["period"]) for i in await s.due(BOB)} == {("checkin", 1)}, "Bob missed the session"
    assert {i["kind"] for i in await s.due(DAN)} == {"program"}, "a closed group gets its program survey"
    assert {i["kind"] for i in await s.due(MENTOR)} == {"session", "checkin"}, "a renewal goes on"

    marker, dans = unique("CONFIDENTIAL-COMMENT"), unique("CONFIDENTIAL-COMMENT")
    edited = marker + " (edited)"
    rating = {"survey_id": "default-session", "survey_version": 1, "group_id": group, "session_id": session}
    tails = [TopicTail(stack.kafka_bootstrap, name) for t in ALL_TOPICS for name in (t.name, t.dead_letter)]
    async with TopicTail(stack.kafka_bootstrap, FEEDBACK.name) as feedback_tail, AsyncExitStack() as every_topic:
        for tail in tails:
            await every_topic.enter_async_context(tail)
        answers = [
            (ALICE, {**rating, "answers": [{"question_id": "rating", "score": 2}], "comment": marker}, 201),
            (ALICE, {**rating, "answers": [{"question_id": "rating", "score": 4}], "comment": edited}, 200),
            (MENTOR, {**rating, "answers": [{"question_id": "rating", "score": 5}]}, 201),
            (BOB, {**rating, "answers": [{"question_id": "rating", "score": 1}], "comment": marker}, 403),
            (DAN, {"survey_id": "default-program", "survey_version": 1, "group_id": other_group,
                   "answers": [{"question_id": "recommend", "score": 9}], "comment": dans}, 201),
        ]  # fmt: skip
        given = []
        for who, body, status in answers:
            r = await s.http.post("/me/answers", json=body, headers=s.who(who, "participant"))
            assert r.status_code == status, r.text
            if status < 300:
                given.append(r.json())
        keys = {group.encode(), other_group.encode()}
        records = await feedback_tail.collect(lambda rec: rec.key in keys, count=len(given))
        swept = await asyncio.gather(*(t.collect(lambda _: True, count=10**9, timeout=3) for t in tails))

    # once per answer, in the contracts' envelope, scores only
    assert len(records) == len(given) == 4
    envelopes = [from_kafka(rec.headers, rec.value) for rec in records]
    events = [e.data for e in envelopes]
    assert all(isinstance(e, FeedbackGivenV2) for e in events)
    assert len({e.id for e in envelopes}) == 4 and all(e.source == "/mentoring/feedback" for e in envelopes)
    v2 = [e for e in events if isinstance(e, FeedbackGivenV2)]
    by_id: dict[str, list[FeedbackGivenV2]] = {}
    for e in v2:
        by_id.setdefault(e.feedback_id, []).append(e)
    alice = by_id[given[0]["feedback_id"]]
    assert [(e.revision, e.scores[0].score) for e in alice] == [(1, 2), (2, 4)], "a replaced answer keeps its id"
    assert given[1]["feedback_id"] == given[0]["feedback_id"]
    assert alice[0].respondent_role is Role.MENTEE and alice[0].survey_kind is SurveyKind.SESSION
    assert alice[0].session_id == session and alice[0].scores[0].measure is Measure.SESSION_RATING
    (dan,) = by_id[given[3]["feedback_id"]]
    assert (dan.survey_kind, dan.group_id, dan.scores[0].score, dan.scores[0].scale_max) == (
        SurveyKind.PROGRAM, other_group, 9, 10,
    )  # fmt: skip
    for rec in records:
        assert rec.key.decode() == from_kafka(rec.headers, rec.value).data.partition_key()
        for person in (MENTOR, ALICE, BOB, CAROL, DAN):
            assert person.encode() not in rec.value, "the respondent is never named"

    # the comments: in no message on any topic (dead letters included), no log line, no metric
    marker_bytes = marker.encode()
    assert sum(len(batch) for batch in swept) >= 4
    assert not [r.topic for batch in swept for r in batch if _contains(r, marker_bytes) or _contains(r, dans.encode())]
    assert marker not in log.getvalue() and dans not in log.getvalue()
    assert '"service": "feedback"' in log.getvalue(), "the capture saw the service's log lines"
    metrics = await s.http.get("/metrics")
    assert metrics.status_code == 200 and "feedback_outbox_published_total" in metrics.text
    assert marker not in metrics.text and dans not in metrics.text

    # ... in no other participant's, plain admin's or integration's response; stored only as ciphertext
    for other in (MENTOR, BOB, CAROL, DAN):
        r = await s.http.get("/me/answers", headers=s.who(other, "participant"))
        assert r.status_code == 200 and marker not in r.text
    for headers in (s.who("hr", "admin"), s.who("bi", "integration")):
        for url in (f"/programs/{program}/comments", "/me/answers", "/surveys"):
            r = await s.http.get(url, headers=headers)
            assert marker not in r.text and r.status_code in (200, 403)
    mine = (await s.http.get("/me/answers", headers=s.who(ALICE, "participant"))).json()["items"]
    assert [a["comment"] for a in mine] == [edited]
    r = await s.http.get(
        f"/programs/{program}/comments", headers=s.who("lead", "admin", permissions=["feedback:read-text"])
    )
    assert sorted(c["comment"] for c in r.json()["items"]) == sorted([edited, dans])
    for row in await s.app.state.ctx.pool.fetch("SELECT * FROM answers"):
        stored = str(dict(row))
        assert marker not in stored and dans not in stored
        assert marker_bytes not in bytes(row["comment_blob"] or b"") and dans.encode() not in bytes(
            row["comment_blob"] or b""
        )

    # redelivering every consumed event changes nothing: no new answer, session or feedback.given
    before = await s.counts([group, other_group])
    due_before = {p: await s.due(p) for p in (ALICE, BOB, DAN, MENTOR)}
    async with TopicTail(stack.kafka_bootstrap, FEEDBACK.name) as feedback_tail:
        await s.produce(*s.sent)
        # a fresh event after them on each of their partitions: once applied, the redeliveries were seen
        sentinels: list[Event] = [
            session_held(program, g, unique("ses-sentinel"), [], clock.now) for g in (group, other_group)
        ]
        sentinel_group = unique("grp-sentinel")
        sentinels.append(group_matched(program, sentinel_group, {unique("E"): Role.PEER}, clock.now))
        await s.publish(*sentinels)

        async def sentinels_applied() -> bool:
            pool = s.app.state.ctx.pool
            ids = [e.session_id for e in sentinels if isinstance(e, SessionHeld)]
            sessions = await pool.fetchval("SELECT count(*) FROM sessions_held WHERE session_id = ANY($1)", ids)
            groups = await pool.fetchval("SELECT count(*) FROM groups WHERE group_id = $1", sentinel_group)
            return bool(sessions == 2 and groups == 1)

        await eventually(sentinels_applied, 60, "the redelivered events and the sentinels after them")
        again = await feedback_tail.collect(lambda rec: rec.key in keys, count=1, timeout=3)
    after = await s.counts([group, other_group])
    assert before[-1] == 5, "each event applied once"
    assert after == [*before[:2], before[2] + 2, *before[3:5], before[5] + 3], "only the sentinels were new"
    assert again == [], "no feedback.given from a redelivery"
    assert {p: await s.due(p) for p in (ALICE, BOB, DAN, MENTOR)} == due_before
