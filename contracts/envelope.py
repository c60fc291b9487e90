"""CloudEvents 1.0 in Kafka binary mode: attributes in ``ce_*`` headers, the payload as JSON body.

One module turns an event into a Kafka record and back, so every service speaks the same envelope and
every reason a message is rejected is worded once (the dead-letter topic carries it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from contracts.base import message, utcnow
from contracts.events import EVENTS_BY_TYPE, Event
from contracts.timestamps import rfc3339

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
MAX_ID_LENGTH = 256
"""The longest ``ce_id`` a consumer accepts (this platform's are UUIDs, 36 characters): every consumer
records the ids it applied in a database index, which refuses a NUL or a value near 8 kB; such a
message is dead-lettered alone instead of stopping its partition."""


class InvalidMessage(Exception):
    """A message that can never be applied: it goes to the dead-letter topic, with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownEventType(InvalidMessage):
    """A well-formed message of a type this release does not know (a newer producer added it).

    Not a poison message: a consumer skips and counts it (forward compatibility), never dead-letters it.
    """

    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown ce_type {event_type!r}")
        self.event_type = event_type


class _RandomIds:
    """Version-4 UUIDs from a buffered ``os.urandom``: one system call per 256 ids instead of one each,
    which is what bulk imports of tens of thousands of events are bounded by otherwise."""

    def __init__(self) -> None:
        self._buffer = b""

    def __call__(self) -> str:
        if len(self._buffer) < 16:
            self._buffer = os.urandom(16 * 256)
        chunk, self._buffer = self._buffer[:16], self._buffer[16:]
        return str(uuid.UUID(bytes=chunk, version=4))


new_event_id = _RandomIds()


@dataclass(frozen=True)
class Envelope:
    data: Event
    id: str = field(default_factory=new_event_id)
    time: datetime = field(default_factory=utcnow)
    traceparent: str | None = None
    body: bytes | None = field(default=None, repr=False, compare=False)
    """The JSON body ``data`` was validated from (:func:`from_kafka`), None for an event built here. A
    projection may store a part of it as it came instead of serialising ``data`` again: it is a valid
    instance of the contract, though not normalised (tags as sent, unknown fields kept), so whoever
    reads it back validates it with the same model."""

    @property
    def type(self) -> str:
        return self.data.TYPE

    @property
    def source(self) -> str:
        return self.data.SOURCE

    @property
    def subject(self) -> str:
        return self.data.partition_key()

    @property
    def topic(self) -> str:
        return self.data.TOPIC.name


_new_object = object.__new__
_set_attribute = object.__setattr__


def _received(data: Event, event_id: str, time: datetime, traceparent: str | None, body: bytes) -> Envelope:
    """An :class:`Envelope` as its generated ``__init__`` would build it, with one attribute write instead
    of one ``object.__setattr__`` call per field (what a frozen dataclass's ``__init__`` makes): a
    consumer builds one per record, and that was an eighth of its instructions outside validation."""
    envelope: Envelope = _new_object(Envelope)
    _set_attribute(
        envelope, "__dict__", {"data": data, "id": event_id, "time": time, "traceparent": traceparent, "body": body}
    )
    return envelope


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def to_kafka(env: Envelope) -> KafkaRecord:
    headers = {
        "ce_specversion": SPEC_VERSION,
        "ce_id": env.id,
        "ce_source": env.source,
        "ce_type": env.type,
        "ce_time": rfc3339(env.time),
        "ce_subject": env.subject,
        "content-type": CONTENT_TYPE,
    }
    if env.traceparent:
        headers["traceparent"] = env.traceparent
    return KafkaRecord(
        topic=env.topic,
        key=env.subject.encode(),
        value=env.data.model_dump_json().encode(),
        headers=[(k, v.encode()) for k, v in headers.items()],
    )


_MODELS: dict[str | bytes, type[Event]] = {
    key: model for event_type, model in EVENTS_BY_TYPE.items() for key in (event_type, event_type.encode())
}
"""Each event type by its ``ce_type`` as text and as the raw header bytes a Kafka record carries, so that a
consumer finds the model without decoding the header first."""

_SPEC_VERSIONS = (SPEC_VERSION, SPEC_VERSION.encode())


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if type(value) is bytes else str(value)


def _header_dict(headers: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]]) -> dict[str, bytes | str]:
    """The headers by name, values as they came (a later duplicate wins). A consumer parses every record's
    headers: aiokafka hands a tuple of pairs, which ``dict`` takes in one C call, and only the few values
    :func:`from_kafka` uses are decoded, not every header of every record."""
    if type(headers) is tuple or isinstance(headers, list):  # not `tuple | list`: a new union per call
        return dict(headers)
    if isinstance(headers, Mapping):
        return dict(headers.items())
    return dict(headers)


def from_kafka(headers: Mapping[str, bytes | str] | Iterable[tuple[str, bytes | str]], value: bytes | None) -> Envelope:
    """Parse and validate; raise :class:`InvalidMessage` with a human reason for anything unusable."""
    h = _header_dict(headers)
    spec = h.get("ce_specversion")
    if spec not in _SPEC_VERSIONS:
        raise InvalidMessage(
            f"ce_specversion must be {SPEC_VERSION!r}, got {_text(spec) if spec is not None else None!r}"
        )
    event_id, event_type, ce_time = h.get("ce_id"), h.get("ce_type"), h.get("ce_time")
    if not (event_id and event_type and h.get("ce_source") and ce_time):
        missing = next(a for a in ("ce_id", "ce_type", "ce_source", "ce_time") if not h.get(a))
        raise InvalidMessage(f"missing header {missing}")
    model = _MODELS.get(event_type)
    if model is None:
        raise UnknownEventType(_text(event_type))
    ce_time = _text(ce_time)
    try:
        time = datetime.fromisoformat(ce_time)
    except ValueError as exc:
        raise InvalidMessage(f"ce_time is not RFC 3339: {ce_time!r}") from exc
    if value is None:
        raise InvalidMessage("empty body")
    try:
        # parsed and validated in one pass by pydantic-core: a consumer's batch spends most of its
        # Python time here, and this is several times faster than json.loads + model_validate; its
        # validator is called directly, as model_validate_json does after Python-level keyword handling
        data: Event = model.__pydantic_validator__.validate_json(value)
    except ValidationError as exc:
        syntax = next((err for err in exc.errors() if err["type"] == "json_invalid"), None)
        if syntax is not None:
            if "recursion limit" in syntax["msg"]:  # pathologically nested: a dead letter, never a stuck partition
                raise InvalidMessage("body is nested too deeply") from None
            raise InvalidMessage(f"body is not JSON: {syntax['msg'].removeprefix('Invalid JSON: ')}") from None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {message(err)}" for err in exc.errors()[:10]
        )
        raise InvalidMessage(f"{model.TYPE} failed validation: {problems}") from exc
    event_id = _text(event_id)
    if len(event_id) > MAX_ID_LENGTH or "\x00" in event_id:
        raise InvalidMessage(f"ce_id must be at most {MAX_ID_LENGTH} characters, without NUL")
    traceparent = h.get("traceparent")
    return _received(data, event_id, time, _text(traceparent) if traceparent else None, value)
