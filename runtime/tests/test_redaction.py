"""Confidential text never reaches a log line or a dead-letter header, whatever exception carries it."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel, ValidationError

from conftest import StackEndpoints, unique
from contracts.envelope import Envelope, to_kafka
from contracts.events import ParticipantWithdrawn
from contracts.topics import ENROLLMENT
from runtime.consumer import EventConsumer
from runtime.db import create_pool, migrate
from runtime.logging import configure_logging, describe_exception, uvicorn_log_config

MARKER = "CONFIDENTIAL-NOTE-" + unique("x")


class _Survey(BaseModel):
    rating: int
    note: str


def _validation_error() -> ValidationError:
    try:
        _Survey.model_validate({"rating": MARKER, "note": 5})
    except ValidationError as exc:
        assert MARKER in str(exc)  # pydantic quotes the input: this is what must not leak
        return exc
    raise AssertionError("expected a ValidationError")


def test_a_validation_error_is_described_by_location_and_type_only() -> None:
    text = describe_exception(_validation_error())
    assert MARKER not in text
    assert text == "ValidationError: rating: int_parsing; note: string_type"


def test_other_messages_are_withheld_but_the_cause_chain_is_kept() -> None:
    try:
        try:
            int(MARKER)
        except ValueError as inner:
            raise KeyError(MARKER) from inner
    except KeyError as exc:
        text = describe_exception(exc)
    assert text == "KeyError <- ValueError"
    assert describe_exception(TimeoutError("broker 127.0.0.1:9 did not answer in 2 s")).endswith("in 2 s")


def test_the_formatter_writes_frames_not_messages_even_when_a_library_copies_the_exception_into_the_message(
    json_log: io.StringIO,
) -> None:
    exc = _validation_error()
    # FastStream's logging middleware does exactly this: f"{type}: {exc}" with exc_info.
    logging.getLogger("runtime.kafka").error(f"{type(exc).__name__}: {exc}", exc_info=exc)
    line = json.loads(json_log.getvalue().splitlines()[-1])
    assert MARKER not in json_log.getvalue()
    assert line["msg"] == "ValidationError: <withheld>"
    assert line["error_type"] == "ValidationError"
    assert line["frames"] and all(" in " in f for f in line["frames"])


def test_an_exception_passed_as_a_log_argument_is_described_not_printed(json_log: io.StringIO) -> None:
    logging.getLogger("runtime.test").warning("lookup failed: %s", KeyError(MARKER))
    line = json.loads(json_log.getvalue().splitlines()[-1])
    assert line["msg"] == "lookup failed: KeyError"


def test_uvicorn_loggers_write_json_through_the_service_config() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    uvicorn_saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in ("uvicorn",)}
    stream = io.StringIO()
    try:
        config = uvicorn_log_config("probe")
        config["handlers"]["stdout"]["stream"] = stream
        logging.config.dictConfig(config)
        logging.getLogger("uvicorn.error").error("Exception in ASGI application", exc_info=_validation_error())
        configure_logging("probe")  # what the lifespan does later: uvicorn's own handlers must not come back
        assert logging.getLogger("uvicorn").handlers == []
        assert logging.getLogger("uvicorn.error").propagate
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, (handlers, propagate) in uvicorn_saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["service"] == "probe" and line["logger"] == "uvicorn.error"
    assert MARKER not in stream.getvalue()


class _CapturingProducer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        self.sent.append({"topic": topic, "value": value, "headers": dict(headers)})


def _record(value: bytes, headers: list[tuple[str, bytes]], offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=ENROLLMENT.name,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"prg",
        value=value,
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=len(value),
        headers=headers,
    )


@pytest.fixture
async def pool(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[asyncpg.Pool]:
    schema = unique("redact")
    scratch_schemas.append(schema)
    p = await create_pool(stack.admin_dsn, schema)
    await migrate(p, schema, {})
    await p.execute("CREATE TABLE notes (note TEXT PRIMARY KEY)")
    yield p
    await p.close()


@pytest.mark.stack
async def test_secrets_in_rejected_input_reach_neither_logs_nor_dead_letter_headers(
    pool: asyncpg.Pool, json_log: io.StringIO
) -> None:
    producer = _CapturingProducer()
    failures = iter(["validation", "postgres-detail", "postgres-message"])

    async def handler(conn: asyncpg.Connection, env: Envelope) -> None:
        kind = next(failures, "validation")
        if kind == "validation":
            _Survey.model_validate({"rating": MARKER, "note": "x"})
        elif kind == "postgres-detail":  # DETAIL: Key (note)=(...) already exists
            await conn.execute("INSERT INTO notes VALUES ($1)", MARKER)
            await conn.execute("INSERT INTO notes VALUES ($1)", MARKER)
        else:  # invalid input syntax for type integer: "..."
            await conn.execute("SELECT $1::text::int", MARKER)

    consumer = EventConsumer(
        name=unique("redact"),
        pool=pool,
        producer=producer,
        topics=(ENROLLMENT,),
        handlers={ParticipantWithdrawn: handler},
        max_attempts=1,
    )
    good = to_kafka(
        Envelope(data=ParticipantWithdrawn(program_id="prg", participant_id="p1", withdrawn_at=datetime.now(UTC)))
    )
    # 1: the body fails contract validation, with the secret as the rejected value
    bad_body = json.loads(good.value)
    bad_body["withdrawn_at"] = MARKER
    await consumer.process(_record(json.dumps(bad_body).encode(), good.headers, 0))
    # 2-4: the handler fails on a ValidationError and on two asyncpg errors that quote the secret
    for offset in (1, 2, 3):
        headers = [(k, v) for k, v in good.headers if k != "ce_id"] + [("ce_id", unique("id").encode())]
        await consumer.process(_record(good.value, headers, offset))

    assert len(producer.sent) == 4
    reasons = [m["headers"]["dlt_reason"].decode() for m in producer.sent]
    for m in producer.sent:
        for name, value in m["headers"].items():
            assert MARKER.encode() not in value, f"{name} carries the secret"
    assert reasons[0] == f"{ParticipantWithdrawn.TYPE} failed validation: withdrawn_at: datetime_from_date_parsing"
    assert reasons[1] == "failed 1 times: ValidationError: rating: int_parsing"
    assert reasons[2].startswith("failed 1 times: UniqueViolationError: sqlstate 23505")
    assert "constraint notes_pkey" in reasons[2]
    assert reasons[3] == "failed 1 times: InvalidTextRepresentationError: sqlstate 22P02"
    output = json_log.getvalue()
    assert "giving up on event" in output
    assert MARKER not in output
