"""A minimal service made only of runtime parts, run as a separate process by the runtime tests.

``relay``: publishes the outbox of a schema. ``consume``: applies ParticipantWithdrawn events of the
programs whose id starts with a prefix to a non-idempotent counter, so a double application shows.
Killing either with SIGKILL at any moment must not lose or double an effect.

Fault hook, so a test kills the relay at the worst moment instead of racing it: with
``PROBE_RELAY_PAUSE_AFTER_BATCHES=N`` the relay stops for good once its N-th batch is acknowledged by
Kafka and before it is marked published, after touching the file ``PROBE_RELAY_PAUSED_FILE``.
Likewise ``PROBE_CONSUMER_PAUSE_AFTER_BATCHES=N`` (and ``PROBE_CONSUMER_PAUSED_FILE``) freezes the
consumer once its N-th batch is applied and committed in the database, before the offsets are committed
(the file holds how many events it applied); ``PROBE_CONSUMER_FREEZE_AT_EVENT=N`` freezes it inside the
handler of its N-th event, mid-batch, with the batch's transaction open.
Every delivery the consumer receives is recorded in ``deliveries`` (outside the tracking transaction),
so a test can prove a redelivery happened.

``PROBE_KAFKA_VIA=host:port`` sends every broker connection of the process through that address (a
TCP proxy a test cuts to simulate the broker going away; the broker advertises its own address, so
the redirection has to happen in the client).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import os
import signal
from pathlib import Path
from typing import Any

import aiokafka.client
import asyncpg

from contracts.envelope import Envelope
from contracts.events import ParticipantWithdrawn
from contracts.topics import ENROLLMENT
from runtime.consumer import EventConsumer
from runtime.db import create_pool, migrate
from runtime.logging import configure_logging
from runtime.outbox import OutboxRelay, make_producer
from runtime.supervision import Supervisor
from runtime.tracking import ParsedBatch

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
    """Freezes after a batch's effects are stored and before its offsets are committed: the window a
    crash replays."""

    pause_after = int(os.environ.get("PROBE_CONSUMER_PAUSE_AFTER_BATCHES", "0"))
    paused_file = os.environ.get("PROBE_CONSUMER_PAUSED_FILE", "")
    batches = 0
    applied = 0

    async def apply_batch(self, parsed: ParsedBatch) -> None:
        await self.pool.executemany(
            'INSERT INTO deliveries (topic, part, "offset") VALUES ($1, $2, $3)',
            [(r.topic, r.partition, r.offset) for r in parsed.records],
        )
        await super().apply_batch(parsed)
        self.batches += 1
        if self.pause_after and self.batches == self.pause_after:
            applied = await self.pool.fetchval("SELECT n FROM counter")
            message = f"consumer paused after {self.batches} batches ({applied} events), offsets not committed"
            await _pause(self.paused_file, str(applied), message)


def redirect_kafka(via: str) -> None:
    """Every connection to a broker goes to ``via`` instead (bootstrap and advertised addresses alike): a TCP
    proxy a test or probe cuts to take the broker away from this process alone (``bench/probes/serve.py``
    uses it too)."""
    host, port = via.rsplit(":", 1)
    real = aiokafka.client.create_conn

    async def create_conn(_host: str, _port: int, **kwargs: Any) -> Any:
        return await real(host, int(port), **kwargs)

    aiokafka.client.create_conn = create_conn


async def relay(dsn: str, schema: str, bootstrap: str, batch: int) -> None:
    if os.environ.get("PROBE_KAFKA_VIA"):
        redirect_kafka(os.environ["PROBE_KAFKA_VIA"])
    pool = await create_pool(dsn, schema)
    await migrate(pool, schema, {})
    timeout_ms = int(os.environ.get("PROBE_KAFKA_TIMEOUT_MS", "30000"))
    producer = make_producer(bootstrap, "probe-relay", request_timeout_ms=timeout_ms)
    await producer.start()
    ack_timeout = float(os.environ.get("PROBE_RELAY_ACK_TIMEOUT_SECONDS", "30"))
    r = PausingRelay(pool, producer, schema=schema, batch_size=batch, poll_seconds=0.2, ack_timeout_seconds=ack_timeout)
    task = asyncio.create_task(r.run())
    await _wait_for_signal()
    r.stop()
    await task
    await producer.stop()
    await pool.close()


async def consume(dsn: str, schema: str, bootstrap: str, group: str, prefix: str, topic: str, batch: int) -> None:
    pool = await create_pool(dsn, schema)
    await migrate(pool, schema, {})
    await pool.execute(CONSUMER_SQL)
    producer = make_producer(bootstrap, "probe-consumer")
    await producer.start()
    freeze_at = int(os.environ.get("PROBE_CONSUMER_FREEZE_AT_EVENT", "0"))
    handled = 0

    async def on_withdrawn(conn: asyncpg.Connection, env: Envelope) -> None:
        nonlocal handled
        event = env.data
        assert isinstance(event, ParticipantWithdrawn)
        if not event.program_id.startswith(prefix):
            return
        handled += 1
        if freeze_at and handled == freeze_at:
            paused_file = os.environ.get("PROBE_CONSUMER_PAUSED_FILE", "")
            await _pause(paused_file, "mid-batch", f"consumer frozen inside its batch at event {handled}")
        await conn.execute(
            "INSERT INTO applied (event_id, program_id, participant_id) VALUES ($1, $2, $3)",
            env.id,
            event.program_id,
            event.participant_id,
        )
        await conn.execute("UPDATE counter SET n = n + 1 WHERE id = 1")

    consumer = PausingConsumer(
        name=group,
        pool=pool,
        producer=producer,
        topics=(dataclasses.replace(ENROLLMENT, name=topic),),
        handlers={ParticipantWithdrawn: on_withdrawn},
        batch_size=batch,
    )
    supervisor = Supervisor()
    supervisor.start("consumer", functools.partial(consumer.run, bootstrap), graceful=True)
    print("consumer ready", flush=True)
    await _wait_for_signal()
    consumer.stop()
    await supervisor.stop()
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
    configure_logging(f"probe-{a.mode}", "INFO")
    if a.mode == "relay":
        asyncio.run(relay(a.dsn, a.schema, a.bootstrap, a.batch))
    else:
        asyncio.run(consume(a.dsn, a.schema, a.bootstrap, a.group, a.prefix, a.topic, a.batch))


if __name__ == "__main__":
    main()
