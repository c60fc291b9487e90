"""A minimal service made only of runtime parts, run as a separate process by the runtime tests.

``relay``: publishes the outbox of a schema. ``consume``: applies ParticipantWithdrawn events of the
programs whose id starts with a prefix to a non-idempotent counter, so a double application shows.
Killing either with SIGKILL at any moment must not lose or double an effect.

Fault hook, so a test kills the relay at the worst moment instead of racing it: with
``PROBE_RELAY_PAUSE_AFTER_BATCHES=N`` the relay stops for good once its N-th batch is acknowledged by
Kafka and before it is marked published, after touching the file ``PROBE_RELAY_PAUSED_FILE``.
Likewise ``PROBE_CONSUMER_PAUSE_AFTER_EVENTS=N`` (and ``PROBE_CONSUMER_PAUSED_FILE``) freezes the consumer
once its N-th event is applied and committed in the database, before FastStream commits the offset.
Every delivery the consumer receives is recorded in ``deliveries`` (outside the tracking transaction),
so a test can prove a redelivery happened.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
from pathlib import Path

import asyncpg
from aiokafka.structs import ConsumerRecord

from contracts.envelope import Envelope
from contracts.events import ParticipantWithdrawn
from contracts.topics import ENROLLMENT
from runtime.consumer import EventConsumer
from runtime.db import create_pool, migrate
from runtime.kafka import make_broker
from runtime.outbox import OutboxRelay, make_producer

CONSUMER_SQL = """
CREATE TABLE IF NOT EXISTS applied (
    seq BIGSERIAL PRIMARY KEY, event_id TEXT NOT NULL, program_id TEXT NOT NULL, participant_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counter (id INT PRIMARY KEY, n BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (seq BIGSERIAL PRIMARY KEY, topic TEXT, part INT, "offset" BIGINT);
INSERT INTO counter VALUES (1, 0) ON CONFLICT DO NOTHING;
"""


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _pause(paused_file: str, where: str, message: str) -> None:
    """Tell the test where we froze (a file it polls, and a line), then wait to be killed right here."""
    if paused_file:
        Path(paused_file).write_text(f"{where}\n")
    print(message, flush=True)
    await asyncio.Event().wait()


class PausingRelay(OutboxRelay):
    """Freezes between "sent" and "marked" after a given number of batches: the window a crash re-sends."""

    pause_after = int(os.environ.get("PROBE_RELAY_PAUSE_AFTER_BATCHES", "0"))
    paused_file = os.environ.get("PROBE_RELAY_PAUSED_FILE", "")
    batches = 0

    async def before_mark(self, sent: int) -> None:
        self.batches += 1
        if self.pause_after and self.batches == self.pause_after:
            message = f"relay paused after batch {self.batches} ({sent} rows sent, not marked)"
            await _pause(self.paused_file, f"{sent}", message)


class PausingConsumer(EventConsumer):
    """Freezes after the effect is stored and before the offset is committed: the window a crash replays."""

    pause_after = int(os.environ.get("PROBE_CONSUMER_PAUSE_AFTER_EVENTS", "0"))
    paused_file = os.environ.get("PROBE_CONSUMER_PAUSED_FILE", "")
    processed = 0

    async def process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        await self.pool.execute(
            'INSERT INTO deliveries (topic, part, "offset") VALUES ($1, $2, $3)',
            record.topic,
            record.partition,
            record.offset,
        )
        await super().process(record)
        self.processed += 1
        if self.pause_after and self.processed == self.pause_after:
            where = f"{record.topic}:{record.partition}:{record.offset}"
            message = f"consumer paused after {self.processed} events, offset not committed"
            await _pause(self.paused_file, where, message)


async def relay(dsn: str, schema: str, bootstrap: str, batch: int) -> None:
    pool = await create_pool(dsn, schema)
    await migrate(pool, schema, {})
    producer = make_producer(bootstrap, "probe-relay")
    await producer.start()
    r = PausingRelay(pool, producer, schema=schema, batch_size=batch, poll_seconds=0.2)
    task = asyncio.create_task(r.run())
    await _wait_for_signal()
    r.stop()
    await task
    await producer.stop()
    await pool.close()


async def consume(dsn: str, schema: str, bootstrap: str, group: str, prefix: str, topic: str) -> None:
    pool = await create_pool(dsn, schema)
    await migrate(pool, schema, {})
    await pool.execute(CONSUMER_SQL)
    producer = make_producer(bootstrap, "probe-consumer")
    await producer.start()

    async def on_withdrawn(conn: asyncpg.Connection, env: Envelope) -> None:
        event = env.data
        assert isinstance(event, ParticipantWithdrawn)
        if not event.program_id.startswith(prefix):
            return
        await conn.execute(
            "INSERT INTO applied (event_id, program_id, participant_id) VALUES ($1, $2, $3)",
            env.id,
            event.program_id,
            event.participant_id,
        )
        await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    broker = make_broker(bootstrap, "probe-consumer")
    PausingConsumer(
        name=group,
        pool=pool,
        producer=producer,
        topics=(dataclasses.replace(ENROLLMENT, name=topic),),
        handlers={ParticipantWithdrawn: on_withdrawn},
    ).attach(broker)
    await broker.start()
    print("consumer ready", flush=True)
    await _wait_for_signal()
    await broker.stop()
    await producer.stop()
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["relay", "consume"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--group", default="probe")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--topic", default=ENROLLMENT.name)
    a = parser.parse_args()
    if a.mode == "relay":
        asyncio.run(relay(a.dsn, a.schema, a.bootstrap, a.batch))
    else:
        asyncio.run(consume(a.dsn, a.schema, a.bootstrap, a.group, a.prefix, a.topic))


if __name__ == "__main__":
    main()
