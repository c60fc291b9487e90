"""Idempotent event consumption with a dead-letter topic, on FastStream.

- Parse and validate through the contracts envelope; anything unusable goes to ``<topic>.dlt`` with
  the reason, original topic/partition/offset and attempt count in headers, and is acked: a poison
  message never loops.
- The effect and the event id are written in one transaction (the tracking record): a redelivery
  finds the id and changes nothing.
- Offsets are committed only after that transaction (FastStream ``NACK_ON_ERROR``: ack after the
  handler returns, seek back on an exception), so a crash replays instead of losing.
- A transient failure is retried with a back-off; after ``max_attempts`` the message is dead-lettered
  rather than blocking its partition for ever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.message import StreamMessage

from contracts.envelope import Envelope, InvalidMessage, from_kafka
from contracts.events import Event
from contracts.topics import Topic
from runtime.logging import SafeMessage, describe_exception, validation_summary
from runtime.metrics import RuntimeMetrics

log = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]


class RejectEvent(SafeMessage):
    """Raised by a handler for a well-formed event that can never be applied (e.g. unknown program).

    Its message goes to logs and to the dead-letter reason as written: name ids, never content.
    """


def dead_letter_reason(record: ConsumerRecord[bytes, bytes], exc: InvalidMessage) -> str:
    """The reason of an unusable message, without the rejected content.

    A validation failure keeps where and what (``data.note: string_too_long``), not the input; the
    other reasons of :func:`contracts.envelope.from_kafka` speak of headers and JSON syntax only.
    """
    problems = validation_summary(exc.__cause__) if exc.__cause__ is not None else None
    if problems is not None:
        event_type = next((v.decode(errors="replace") for k, v in record.headers if k == "ce_type"), "event")
        return f"{event_type} failed validation: {problems}"
    return exc.reason


async def _raw_body(message: StreamMessage[Any]) -> bytes:
    """Keep FastStream from decoding JSON itself: a malformed body must reach our dead-letter path."""
    body: bytes = message.body
    return body


@dataclass
class EventConsumer:
    """One consumer group of one service: which event types it applies and how."""

    name: str
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    topics: tuple[Topic, ...]
    handlers: dict[type[Event], Handler]
    metrics: RuntimeMetrics | None = None
    max_attempts: int = 5
    offset_reset: Literal["earliest", "latest"] = "earliest"
    _attempts: dict[tuple[str, int, int], int] = field(default_factory=dict)

    def attach(self, broker: KafkaBroker) -> None:
        """Register the subscriber on a broker (the service's FastStream app)."""

        async def on_message(message: KafkaMessage) -> None:
            await self.process(message.raw_message)

        broker.subscriber(
            *[t.name for t in self.topics],
            group_id=self.name,
            auto_offset_reset=self.offset_reset,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            max_poll_records=200,
            decoder=_raw_body,
        )(on_message)

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        position = (record.topic, record.partition, record.offset)
        try:
            envelope = from_kafka(record.headers, record.value)
        except InvalidMessage as exc:
            await self.dead_letter(record, dead_letter_reason(record, exc), attempts=1)
            return
        handler = self.handlers.get(type(envelope.data))
        if handler is None:
            self._count(record.topic, "ignored")
            return
        started = time.perf_counter()
        try:
            applied = await self.apply(envelope, handler)
        except RejectEvent as exc:
            await self.dead_letter(record, f"rejected: {describe_exception(exc)}", attempts=1)
            return
        except Exception as exc:
            attempts = self._attempts.get(position, 0) + 1
            self._attempts[position] = attempts
            if attempts >= self.max_attempts:
                self._attempts.pop(position, None)
                log.exception("giving up on event", extra={"event_id": envelope.id, "topic": record.topic})
                reason = f"failed {attempts} times: {describe_exception(exc)}"
                await self.dead_letter(record, reason, attempts=attempts)
                return
            self._count(record.topic, "retried")
            log.warning(
                "event failed, will retry",
                extra={
                    "event_id": envelope.id,
                    "topic": record.topic,
                    "offset": record.offset,
                    "error_type": type(exc).__name__,
                },
            )
            await asyncio.sleep(min(0.2 * 2**attempts, 5.0))
            raise
        self._attempts.pop(position, None)
        self._count(record.topic, "applied" if applied else "duplicate")
        if self.metrics:
            self.metrics.handle_seconds.labels(record.topic).observe(time.perf_counter() - started)

    async def apply(self, envelope: Envelope, handler: Handler) -> bool:
        """The tracking record: effect and event id commit together. False = already applied."""
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await conn.fetchval(
                "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
                self.name,
                envelope.id,
            )
            if not fresh:
                return False
            await handler(conn, envelope)
            return True

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str, *, attempts: int) -> None:
        headers = [(k, v) for k, v in record.headers if not k.startswith("dlt_")]
        headers += [
            ("dlt_reason", reason[:2000].encode()),
            ("dlt_original_topic", record.topic.encode()),
            ("dlt_original_partition", str(record.partition).encode()),
            ("dlt_original_offset", str(record.offset).encode()),
            ("dlt_consumer_group", self.name.encode()),
            ("dlt_attempts", str(attempts).encode()),
        ]
        await self.producer.send_and_wait(f"{record.topic}.dlt", value=record.value, key=record.key, headers=headers)
        self._count(record.topic, "dead_lettered")
        log.warning(
            "event dead-lettered",
            extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
        )

    def _count(self, topic: str, outcome: str) -> None:
        if self.metrics:
            self.metrics.consumed.labels(topic, outcome).inc()
