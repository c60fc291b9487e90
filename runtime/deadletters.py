"""Dead letters that are never lost: a copy on ``<topic>.dlt``, or a row in the service's own database.

A consumer dead-letters a message that can never be applied (see :mod:`runtime.tracking`). The copy
goes to the family's ``.dlt`` topic with the reason and the original position in ``dlt_*`` headers.
Publishing that copy can itself fail, for reasons that have nothing to do with the message's partition:

- **too large**: the body plus the ``dlt_*`` headers exceed the producer's request limit (1 MiB). The
  body is cut from the copy (its first ``KEPT_BYTES`` stay, so a reader recognises it), the cut is
  recorded in ``dlt_body_cut_bytes`` (the original size) and ``dlt_body_stored`` headers, and the whole
  message is kept in the ``dead_letters`` table;
- **the topic is missing, publishing is not permitted, the broker does not answer in time**: the whole
  message is kept in the ``dead_letters`` table, with the publishing error.

Either way the consumer moves on: its partition is never blocked by a copy it cannot publish. Only when
the database is unreachable too does the consumer stop and retry (nothing is lost then either: its
offsets are not committed). The table is read and replayed from the command line::

    python -m runtime.deadletters list   --service matching
    python -m runtime.deadletters replay --service matching [--id 7] [--to original|dlt]

``replay`` publishes the kept message again, to its original topic (to be applied once what refused it
is fixed) or to its dead-letter topic (once that topic works), and marks the row as replayed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from runtime.logging import describe_exception

log = logging.getLogger(__name__)

MAX_COPY_BYTES = 900_000
"""Key, body and headers of a dead-letter copy must stay under the producer's 1 MiB request limit."""
KEPT_BYTES = 1024
PUBLISH_TIMEOUT_SECONDS = 15.0


class Producer(Protocol):
    async def send_and_wait(
        self, topic: str, value: bytes | None = ..., key: bytes | None = ..., *, headers: Any = ...
    ) -> Any: ...


@dataclass(frozen=True)
class DeadLetter:
    """One message that can never be applied, and why."""

    consumer: str
    record: ConsumerRecord[bytes, bytes]
    reason: str
    attempts: int

    def headers(self) -> list[tuple[str, bytes | None]]:
        r = self.record
        kept = [(k, v) for k, v in r.headers if not k.startswith("dlt_")]
        return [
            *kept,
            ("dlt_reason", self.reason[:2000].encode()),
            ("dlt_original_topic", r.topic.encode()),
            ("dlt_original_partition", str(r.partition).encode()),
            ("dlt_original_offset", str(r.offset).encode()),
            ("dlt_consumer_group", self.consumer.encode()),
            ("dlt_attempts", str(self.attempts).encode()),
        ]


def copy_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> int:
    """A Kafka header's value may be null (the broker takes it; a record carrying one is dead-lettered)."""
    return len(key or b"") + len(value or b"") + sum(len(k.encode()) + len(v or b"") for k, v in headers)


def dlt_copy(letter: DeadLetter) -> tuple[bytes | None, list[tuple[str, bytes | None]], bool]:
    """The copy for the ``.dlt`` topic (body, headers, whether the body was cut): the record with the
    ``dlt_*`` headers, its body cut to :data:`KEPT_BYTES` when the whole would pass the producer's limit."""
    r = letter.record
    headers = letter.headers()
    if copy_size(r.key, r.value, headers) <= MAX_COPY_BYTES:
        return r.value, headers, False
    headers += [("dlt_body_cut_bytes", str(len(r.value or b"")).encode()), ("dlt_body_stored", b"dead_letters")]
    return (r.value or b"")[:KEPT_BYTES], headers, True


async def send_dead_letter(producer: Producer, pool: asyncpg.Pool, letter: DeadLetter) -> str:
    """Publish the copy, or keep the message in ``dead_letters``; returns where it went.

    Raises only when the message could be kept nowhere (the database is unreachable too): the caller
    then retries later, like any infrastructure failure.
    """
    r = letter.record
    value, headers, cut = dlt_copy(letter)
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            await producer.send_and_wait(f"{r.topic}.dlt", value=value, key=r.key, headers=headers)
    except (KafkaError, TimeoutError) as exc:
        await keep(pool, letter, on_topic=False, publish_error=describe_exception(exc))
        log.error(
            "dead-letter copy could not be published; kept in the dead_letters table",
            extra={"topic": r.topic, "partition": r.partition, "offset": r.offset, "error_type": type(exc).__name__},
        )
        return "table"
    if cut:
        await keep(pool, letter, on_topic=True, publish_error=None)
        return "topic (cut) and table"
    return "topic"


def _storable(text: str) -> str:
    """Text PostgreSQL takes: a NUL (which a header key or a reason quoting one may hold) shown as U+FFFD."""
    return text.replace("\x00", "\ufffd")


async def keep(pool: asyncpg.Pool, letter: DeadLetter, *, on_topic: bool, publish_error: str | None) -> None:
    r = letter.record
    await pool.execute(
        "INSERT INTO dead_letters (consumer, topic, \"partition\", \"offset\", key, value, header_keys,"
        " header_values, reason, attempts, on_topic, publish_error, header_keys_utf8)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        letter.consumer, r.topic, r.partition, r.offset, r.key, r.value,
        [_storable(k) for k, _ in r.headers], [v for _, v in r.headers],
        _storable(letter.reason[:2000]), letter.attempts, on_topic, publish_error and _storable(publish_error),
        [k.encode() for k, _ in r.headers],
    )  # fmt: skip


# The command line --------------------------------------------------------------------------------


async def list_rows(pool: asyncpg.Pool, *, all_rows: bool) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            'SELECT id, consumer, topic, "partition", "offset", length(value) AS bytes, reason, attempts,'
            " on_topic, publish_error, created_at, replayed_at, replayed_to FROM dead_letters"
            " WHERE $1 OR replayed_at IS NULL ORDER BY id",
            all_rows,
        )
    )


async def replay(pool: asyncpg.Pool, producer: Producer, *, ids: list[int] | None, to: str) -> tuple[int, list[str]]:
    """Publish the kept messages again and mark them replayed: to the original topic with their own
    headers, key and full body; to ``.dlt`` as the copy a consumer publishes (its body cut when too
    large, the whole staying here). A row that cannot be published is said and left for another try;
    the rows after it are replayed. Returns the rows replayed and what failed."""
    rows = await pool.fetch(
        "SELECT * FROM dead_letters WHERE replayed_at IS NULL AND ($1::bigint[] IS NULL OR id = ANY($1)) ORDER BY id",
        ids,
    )
    replayed, failed = 0, []
    for row in rows:
        keys = row["header_keys"] if row["header_keys_utf8"] is None else [k.decode() for k in row["header_keys_utf8"]]
        headers: list[tuple[str, bytes | None]] = list(zip(keys, row["header_values"], strict=True))
        topic, value = row["topic"], row["value"]
        if to == "dlt":
            letter = DeadLetter(
                row["consumer"],
                ConsumerRecord(row["topic"], row["partition"], row["offset"], 0, 0, row["key"], row["value"],
                               None, 0, 0, headers),
                row["reason"], row["attempts"],
            )  # fmt: skip
            topic, (value, headers, _) = f"{row['topic']}.dlt", dlt_copy(letter)
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                await producer.send_and_wait(topic, value=value, key=row["key"], headers=headers)
        except (KafkaError, TimeoutError) as exc:
            failed.append(f"row {row['id']}: {describe_exception(exc)}")
            continue
        await pool.execute(
            "UPDATE dead_letters SET replayed_at = now(), replayed_to = $2 WHERE id = $1", row["id"], topic
        )
        replayed += 1
    return replayed, failed


def _line(row: asyncpg.Record) -> str:
    where = "on .dlt, body cut" if row["on_topic"] else "not on .dlt"
    parts = [
        str(row["id"]),
        f"{row['created_at']:%Y-%m-%d %H:%M:%S}",
        f"{row['topic']}[{row['partition']}]@{row['offset']}",
        f"{row['bytes'] or 0} bytes",
        where,
        row["reason"],
    ]
    if row["publish_error"]:
        parts.append(f"publish error: {row['publish_error']}")
    if row["replayed_to"]:
        parts.append(f"replayed to {row['replayed_to']}")
    return "\t".join(parts)


def _settings(args: argparse.Namespace) -> tuple[str, str, str]:
    """(database url, schema, bootstrap): as given, else from the service's own settings (its env prefix)."""
    if args.dsn and args.schema and args.bootstrap:
        return args.dsn, args.schema, args.bootstrap
    app = importlib.import_module(f"services.{args.service}.app")
    settings = app.settings_class()()
    return (
        args.dsn or settings.database_url.get_secret_value(),
        args.schema or settings.db_schema,
        args.bootstrap or settings.kafka_bootstrap,
    )


async def _main(args: argparse.Namespace) -> int:
    from runtime.db import create_pool
    from runtime.outbox import make_producer

    dsn, schema, bootstrap = _settings(args)
    pool = await create_pool(dsn, schema)
    try:
        if args.command == "list":
            for row in await list_rows(pool, all_rows=args.all):
                print(_line(row))
            return 0
        producer = make_producer(bootstrap, f"{args.service}-deadletters")
        await producer.start()
        try:
            count, failed = await replay(pool, producer, ids=args.id or None, to=args.to)
        finally:
            await producer.stop()
        print(f"replayed {count} dead letter(s) to the {args.to} topic")
        for line in failed:
            print(f"not replayed (left for another try): {line}", file=sys.stderr)
        return 1 if failed else 0
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.deadletters", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["list", "replay"])
    parser.add_argument("--service", required=True, help="whose schema: enrollment, matching, ...")
    parser.add_argument("--id", type=int, action="append", help="replay only this row (repeatable)")
    parser.add_argument("--to", choices=["original", "dlt"], default="original", help="where replay publishes")
    parser.add_argument("--all", action="store_true", help="list replayed rows too")
    parser.add_argument("--dsn", help="database URL (default: the service's <SERVICE>_DATABASE_URL)")
    parser.add_argument("--schema", help="schema (default: the service's)")
    parser.add_argument("--bootstrap", help="Kafka bootstrap (default: the service's)")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
