"""Structured JSON logs on stdout: one line per record with the service, event id and trace id.

Callers pass identifiers through ``extra=``; message text is written by us, never copied from user
content, so notes, free text and tokens cannot leak through a log line.

Exceptions are the way content leaks anyway: pydantic's ``ValidationError`` quotes the rejected input
(``input_value=...``), asyncpg's errors quote the row (``DETAIL: Key (x)=(...)``), and many builtin
errors quote the value they choked on. So an exception is written as its type, a sanitised
description (:func:`describe_exception`) and its traceback *frames* (file, line, function), never its
message; the same description is what the dead-letter topic carries as a reason.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from opentelemetry import trace

_FIELDS = (
    "event_id",
    "event_type",
    "trace_id",
    "span_id",
    "topic",
    "partition",
    "offset",
    "program_id",
    "run_id",
    "error_type",
    "retry_in_seconds",
    "task",
    "consumer",
    "batch_size",
)

# Errors whose text is written by infrastructure about infrastructure (addresses, timeouts), not about
# a record's content: worth keeping for whoever is on call.
_SAFE_MODULE_PREFIXES = ("aiokafka.errors", "kafka.errors", "asyncio")
_SAFE_TYPES: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)
_MAX_CHAIN = 5


class SafeMessage(Exception):
    """Base of exceptions whose message is written by our code for logs and dead letters (ids, never content)."""


def validation_summary(exc: BaseException) -> str | None:
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - pydantic is a dependency of every service
        return None
    if not isinstance(exc, ValidationError):
        return None
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['type']}" for e in errors[:10])


def _postgres_summary(exc: BaseException) -> str | None:
    try:
        import asyncpg
    except ImportError:  # pragma: no cover
        return None
    if not isinstance(exc, asyncpg.PostgresError):
        return None
    parts = [f"sqlstate {getattr(exc, 'sqlstate', '?')}"]
    for attr in ("table_name", "column_name", "constraint_name"):  # schema names, not data
        value = getattr(exc, attr, None)
        if value:
            parts.append(f"{attr.removesuffix('_name')} {value}")
    return ", ".join(parts)


def _describe_one(exc: BaseException) -> str:
    name = type(exc).__name__
    summary = validation_summary(exc)
    if summary is None:
        summary = _postgres_summary(exc)
    if summary is None and (
        isinstance(exc, (SafeMessage, *_SAFE_TYPES)) or type(exc).__module__.startswith(_SAFE_MODULE_PREFIXES)
    ):
        summary = str(exc)[:500]
    return f"{name}: {summary}" if summary else name


def describe_exception(exc: BaseException) -> str:
    """The exception and its causes, without any text that may quote content.

    ``ValidationError`` keeps each error's location and type, a Postgres error its SQLSTATE and the
    names of the table, column and constraint; messages written by our own code (:class:`SafeMessage`)
    and by the Kafka client are kept; every other message is withheld.
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < _MAX_CHAIN:
        seen.add(id(current))
        parts.append(_describe_one(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return " <- ".join(parts)


def format_frames(tb: TracebackType | None) -> list[str]:
    """Where it happened: file, line and function of each frame; no source text, no locals."""
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb)]


def _message(record: logging.LogRecord) -> str:
    """The message, with any exception passed as an argument (``log.error("failed: %s", exc)``) described."""
    if isinstance(record.args, tuple) and any(isinstance(a, BaseException) for a in record.args):
        args = tuple(describe_exception(a) if isinstance(a, BaseException) else a for a in record.args)
        try:
            return str(record.msg) % args
        except (TypeError, ValueError):
            return str(record.msg)
    return record.getMessage()


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "service", **_: Any) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        message = _message(record)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            # Third-party loggers (FastStream: f"{type}: {exc}") put the exception text into the message.
            raw = str(exc)
            if raw and raw in message:
                message = message.replace(raw, "<withheld>")
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": message,
        }
        for name in _FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if "trace_id" not in line:
            _add_span_ids(line)
        if exc is not None:
            line["error"] = describe_exception(exc)
            line["error_type"] = type(exc).__name__
            line["frames"] = format_frames(exc.__traceback__)
        return json.dumps(line, default=str)


def _add_span_ids(line: dict[str, object]) -> None:
    """The trace and span being handled when the record was written (runtime/tracing.py), so that a log
    line leads to its trace; nothing when tracing is off (no span is ever current then)."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        line["trace_id"] = format(span_context.trace_id, "032x")
        line["span_id"] = format(span_context.span_id, "016x")


_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON on stdout for everything: our loggers, FastStream's (it logs through ours) and uvicorn's."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _UVICORN:  # uvicorn installs its own plain-text handlers: route them through ours
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    for noisy in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel("WARNING")


def uvicorn_log_config(service: str, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``uvicorn --log-config``: JSON from the first line uvicorn writes."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "runtime.logging.JsonFormatter", "service": service}},
        "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}},
        "root": {"handlers": ["stdout"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }
