"""One batch of records applied idempotently: the tracking record, the failure classes, the handlers.

:class:`BatchApplier` applies a batch; :class:`runtime.consumer.EventConsumer` is one, fed by its poll loop
(which commits offsets only after the batch's transaction, and says why order holds).

- **The tracking record.** A batch is applied in **one database transaction**: the ids of its events
  are recorded with one multi-row ``INSERT`` into ``processed_events``, whose primary key refuses an id
  recorded before. A batch's ids are new as a rule, so the plain ``INSERT`` is tried first; should the
  key refuse one (a redelivery, or another member applying the same events at this moment: the index
  waits for its transaction), the transaction is rolled back and applied again with ``INSERT ... ON
  CONFLICT DO NOTHING RETURNING``, and only the ids it returns are applied. A redelivered event, or the
  same id twice in one batch, is a ``duplicate`` and changes nothing.
- **Failure classes** (:func:`is_transient`):

  * *never applicable*: a body that does not parse, an event that fails its contract's validation, an
    event a handler refuses with :class:`RejectEvent`: dead-lettered at once (attempts 1);
  * *infrastructure*: the database or the broker is unreachable or refuses work for now
    (``OSError``/``ConnectionError``, ``TimeoutError``, asyncpg's interface and connection errors,
    SQLSTATE classes 08 connection, 53 insufficient resources, 57 operator intervention such as a
    shutdown or a cancelled statement, 40 serialization failure or deadlock, 55P03 lock not available,
    and every Kafka client error): **never dead-lettered**, raised for the whole batch to be applied
    again (the poll loop backs off and retries for as long as the failure lasts);
  * *anything else* a handler raises (a bug, a constraint violation, a value the database refuses):
    the record is tried again up to ``max_attempts`` times with a short back-off (it may be a race with
    another writer), then dead-lettered with the reason.

  A poison record is dead-lettered **alone**: the batch is applied again without it, so the rest of its
  batch (and partition) is applied. Dead letters are sent after the batch's transaction commits and
  before its offsets are, so a crash re-sends a dead letter at worst (at least once, like every event).
  A dead-letter copy that cannot be published is kept in the service's database
  (:mod:`runtime.deadletters`); the partition moves on.
- **Unknown event types** (a newer producer's) are skipped and counted (``outcome="skipped"``), never
  dead-lettered; a known type this consumer has no handler for is ``ignored``.

Handlers. The per-event API: ``async def handler(conn, envelope)`` in a ``dict[type[Event], Handler]``;
each is called inside the batch's transaction, in order, once per fresh event. Where one statement per
batch pays (a projection receiving thousands of events), wrap a batch handler with :func:`batched`::

    async def on_enrolled(conn: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
        ...  # one multi-row statement for all of them

    handlers = {ParticipantEnrolled: batched(on_enrolled), ParticipantWithdrawn: on_withdrawn}

A batch handler receives each *run* of consecutive fresh events that map to the same :class:`Batched`
object (so one ``Batched`` may serve several types), in order, never reordered around other handlers'
events; it must cope with one entity appearing twice in a run (the later event wins). When it raises,
the batch is applied again with it called one event at a time, to find the poison record.

Tracing (when the service has a tracer): one consumer span per applied event, child of the context its
``traceparent`` header names, around the handler call that applies it (:func:`runtime.tracing.consumer_spans`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from opentelemetry.trace import Tracer

from contracts.envelope import Envelope, InvalidMessage, UnknownEventType, from_kafka
from contracts.events import Event
from runtime.db import text_array_args, text_array_sql
from runtime.deadletters import DeadLetter, send_dead_letter
from runtime.logging import SafeMessage, describe_exception, validation_summary
from runtime.metrics import RuntimeMetrics
from runtime.read_ahead import Record
from runtime.tracing import NO_SPANS, consumer_spans

log = logging.getLogger(__name__)

Handler = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]
BatchHandler = Callable[[asyncpg.Connection, Sequence[Envelope]], Awaitable[None]]


@dataclass(frozen=True)
class Batched:
    """A handler that takes a run of consecutive events at once (see the module docstring)."""

    apply: BatchHandler


def batched(handler: BatchHandler) -> Batched:
    return Batched(handler)


class RejectEvent(SafeMessage):
    """Raised by a handler for a well-formed event that can never be applied (e.g. unknown program).

    Its message goes to logs and to the dead-letter reason as written: name ids, never content.
    """


_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionRefusedError, ConnectionResetError, ...
    TimeoutError,
    asyncpg.InterfaceError,  # the connection was closed under us, the pool is closing
    asyncpg.InternalClientError,  # the protocol's state after a backend was terminated under a statement
    asyncpg.PostgresConnectionError,  # SQLSTATE 08
    asyncpg.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.OperatorInterventionError,  # 57: admin shutdown, cannot connect now, statement cancelled
    asyncpg.TransactionRollbackError,  # 40: serialization failure, deadlock
    asyncpg.LockNotAvailableError,  # 55P03
    KafkaError,
)


def is_transient(exc: BaseException) -> bool:
    """An infrastructure failure (retried for as long as it lasts), judged on the error and its causes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _TRANSIENT):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def dead_letter_reason(record: Record, exc: InvalidMessage) -> str:
    """The reason of an unusable message, without the rejected content.

    A validation failure keeps where and what (``data.note: string_too_long``), not the input; the
    other reasons of :func:`contracts.envelope.from_kafka` speak of headers and JSON syntax only.
    """
    problems = validation_summary(exc.__cause__) if exc.__cause__ is not None else None
    if problems is not None:
        event_type = next((v.decode(errors="replace") for k, v in record.headers if k == "ce_type"), "event")
        return f"{event_type} failed validation: {problems}"
    return exc.reason


class _HandlerFailed(Exception):
    """A handler raised; ``index`` is the failing event's place in the batch, None when a batch
    handler failed on a run of several (the batch is then applied one event at a time)."""

    def __init__(self, index: int | None, error: BaseException) -> None:
        super().__init__(type(error).__name__)
        self.index = index
        self.error = error


_RECORD_NEW_IDS = f"INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest({text_array_sql(2)})"
"""The common case, every id new: a plain insert. ``ON CONFLICT`` costs PostgreSQL twice as much per row
(3.5 against 7 µs of backend CPU per row in batches of 2,000: a speculative insertion, its lock and its
confirmation for each row). The ids go as one joined text (:func:`runtime.db.text_array_sql`)."""

_RECORD_IDS = (
    "WITH fresh AS (INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::text[])"
    " ON CONFLICT DO NOTHING RETURNING event_id) SELECT array_agg(event_id) FROM fresh"
)
"""When an id was recorded before: the fresh ids as one array value (decoding it costs the consumer
less than a row per event)."""


class _SeenBefore(Exception):
    """The plain insert of a batch's ids met one recorded before: the batch is applied again with
    :data:`_RECORD_IDS`. The refused insert is an ``ERROR`` line in PostgreSQL's own log naming the key
    (the consumer's name and an event id, nothing of the event): expected on a redelivery or a replay,
    so database alerting should not count SQLSTATE 23505 on ``processed_events``."""


Work: TypeAlias = "list[tuple[Record, Envelope]]"
_YIELD_EVERY = 64


@dataclass
class ParsedBatch:
    """A batch after :meth:`EventConsumer.parse_batch`: what to apply, what to dead-letter, what was
    skipped or ignored (counted once the batch is applied)."""

    records: Sequence[Record]
    started: float
    work: Work = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass(kw_only=True)
class BatchApplier:
    """Applies, skips or dead-letters a batch of records for one consumer (``name``, the tracking
    record's key): what :class:`runtime.consumer.EventConsumer` does with each batch it polls."""

    name: str
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    handlers: Mapping[type[Event], Handler | Batched]
    metrics: RuntimeMetrics | None = None
    max_attempts: int = 5
    min_backoff_seconds: float = 0.2
    tracer: Tracer | None = None  # None: tracing off, no span work per event (runtime/tracing.py)
    _attempts: dict[tuple[str, int, int], int] = field(default_factory=dict, init=False)
    _unknown_types: set[str] = field(default_factory=set, init=False)

    # One batch ---------------------------------------------------------------------------------------

    async def process(self, record: Record) -> None:
        """One record, as a batch of one (tests and tools)."""
        await self.process_batch([record])

    async def process_batch(self, records: Sequence[Record]) -> None:
        """Apply, skip or dead-letter every record; raises only an infrastructure failure (retry all)."""
        await self.apply_batch(await self.parse_batch(records))

    async def parse_batch(self, records: Sequence[Record]) -> ParsedBatch:
        """Every record parsed and validated, nothing written. :meth:`run` parses a batch while the one
        before it is in its transaction (CPU here, PostgreSQL there): it yields now and then so that the
        other batch's next statement is sent as soon as the database answers the last one."""
        parsed = ParsedBatch(records, started=time.perf_counter())
        for i, record in enumerate(records):
            if i % _YIELD_EVERY == 0:  # first at once: the batch before starts its transaction meanwhile
                await asyncio.sleep(0)
            try:
                envelope = from_kafka(record.headers, record.value)
            except UnknownEventType as exc:
                parsed.outcomes[(record.topic, "skipped")] += 1
                self._note_unknown(exc.event_type, record)
                continue
            except InvalidMessage as exc:
                parsed.letters.append(DeadLetter(self.name, record, dead_letter_reason(record, exc), attempts=1))
                continue
            if type(envelope.data) in self.handlers:
                parsed.work.append((record, envelope))
            else:
                parsed.outcomes[(record.topic, "ignored")] += 1
        return parsed

    async def apply_batch(self, parsed: ParsedBatch) -> None:
        """The batch's transaction, then its dead letters; raises only an infrastructure failure."""
        outcomes, letters = parsed.outcomes, parsed.letters
        applied = await self._apply_isolating(parsed.work, letters)
        for letter in letters:
            where = await send_dead_letter(self.producer, self.pool, letter)
            outcomes[(letter.record.topic, "dead_lettered")] += 1
            if where != "topic" and self.metrics:
                self.metrics.dead_letters_kept.labels(letter.record.topic).inc()
            log.warning(
                "event dead-lettered",
                extra={
                    "topic": letter.record.topic,
                    "partition": letter.record.partition,
                    "offset": letter.record.offset,
                    "consumer": self.name,
                },
            )
        outcomes.update(applied)
        self._count(outcomes)
        if self.metrics and parsed.records:
            self.metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - parsed.started)

    async def _apply_isolating(self, work: Work, letters: list[DeadLetter]) -> Counter[tuple[str, str]]:
        """Apply the batch; a poison record is taken out (into ``letters``) and the rest applied again."""
        one_by_one = False
        while True:
            try:
                return await self._apply(work, one_by_one)
            except _HandlerFailed as failed:
                if is_transient(failed.error):
                    raise failed.error from None
                if failed.index is None:
                    one_by_one = True
                    continue
                record, envelope = work[failed.index]
                letter = self._poison(record, envelope, failed.error)
                if letter is not None:
                    letters.append(letter)
                    del work[failed.index]
                    continue
                attempts = self._attempts[(record.topic, record.partition, record.offset)]
                await asyncio.sleep(min(self.min_backoff_seconds * 2**attempts, 5.0))

    def _poison(self, record: Record, envelope: Envelope, exc: BaseException) -> DeadLetter | None:
        """A dead letter for a record its handler refuses, or None to try it again (attempt counted)."""
        if isinstance(exc, RejectEvent):
            return DeadLetter(self.name, record, f"rejected: {describe_exception(exc)}", attempts=1)
        position = (record.topic, record.partition, record.offset)
        attempts = self._attempts.get(position, 0) + 1
        if attempts >= self.max_attempts:
            self._attempts.pop(position, None)
            log.error(
                "giving up on event",
                exc_info=exc,
                extra={"event_id": envelope.id, "topic": record.topic, "consumer": self.name},
            )
            return DeadLetter(self.name, record, f"failed {attempts} times: {describe_exception(exc)}", attempts)
        self._attempts[position] = attempts
        self._count(Counter([(record.topic, "retried")]))
        log.warning(
            "event failed, will retry",
            extra={
                "event_id": envelope.id,
                "topic": record.topic,
                "offset": record.offset,
                "error_type": type(exc).__name__,
            },
        )
        return None

    async def _apply(self, work: Work, one_by_one: bool) -> Counter[tuple[str, str]]:
        """The tracking record: every fresh event's effect and its id commit together, in one transaction.
        Tried first as if every id were new (a plain insert), and again with ``ON CONFLICT`` if not."""
        if not work:
            return Counter()
        ids = list(dict.fromkeys(envelope.id for _, envelope in work))
        try:
            return await self._apply_tracked(work, ids, one_by_one, seen_before=False)
        except _SeenBefore:
            return await self._apply_tracked(work, ids, one_by_one, seen_before=True)

    async def _apply_tracked(
        self, work: Work, ids: list[str], one_by_one: bool, *, seen_before: bool
    ) -> Counter[tuple[str, str]]:
        outcomes: Counter[tuple[str, str]] = Counter()
        async with self.pool.acquire() as conn, conn.transaction():
            if seen_before:
                fresh = set(await conn.fetchval(_RECORD_IDS, self.name, ids) or ())
            else:
                try:
                    await conn.execute(_RECORD_NEW_IDS, self.name, *text_array_args(ids))
                except asyncpg.UniqueViolationError:
                    raise _SeenBefore from None  # the transaction is rolled back on the way out
                fresh = set(ids)
            todo: list[int] = []
            if len(fresh) == len(work):  # the common case: every event new, none twice in the batch
                todo = list(range(len(work)))
                outcomes.update({(topic, "applied"): n for topic, n in Counter(r.topic for r, _ in work).items()})
            else:
                for i, (record, envelope) in enumerate(work):
                    if envelope.id in fresh:
                        fresh.discard(envelope.id)  # the same id later in the batch is a duplicate
                        todo.append(i)
                        outcomes[(record.topic, "applied")] += 1
                    else:
                        outcomes[(record.topic, "duplicate")] += 1
            await self._run_handlers(conn, work, todo, one_by_one)
        if self._attempts:  # records that failed before and are applied now start afresh
            for position in [(r.topic, r.partition, r.offset) for r, _ in work]:
                self._attempts.pop(position, None)
        return outcomes

    async def _run_handlers(self, conn: asyncpg.Connection, work: Work, todo: list[int], one_by_one: bool) -> None:
        j = 0
        while j < len(todo):
            handler = self.handlers[type(work[todo[j]][1].data)]
            end = j + 1
            if isinstance(handler, Batched) and not one_by_one:
                while end < len(todo) and self.handlers[type(work[todo[end]][1].data)] is handler:
                    end += 1
            run = todo[j:end]
            spans: contextlib.AbstractContextManager[None] = NO_SPANS
            if self.tracer:  # one span per event, under its publisher's (runtime/tracing.py)
                spans = consumer_spans(self.tracer, self.name, [work[i] for i in run])
            try:
                with spans:
                    if isinstance(handler, Batched):
                        await handler.apply(conn, [work[i][1] for i in run])
                    else:
                        await handler(conn, work[run[0]][1])
            except Exception as exc:
                raise _HandlerFailed(run[0] if len(run) == 1 else None, exc) from exc
            j = end

    # Bookkeeping --------------------------------------------------------------------------------------

    def _note_unknown(self, event_type: str, record: Record) -> None:
        """Logged once per type and process (a newer producer's type may arrive by the thousand)."""
        if event_type not in self._unknown_types:
            self._unknown_types.add(event_type)
            log.info(
                "skipping events of a type this release does not know",
                extra={"event_type": event_type[:200], "topic": record.topic, "consumer": self.name},
            )

    def _count(self, outcomes: Counter[tuple[str, str]]) -> None:
        if self.metrics:
            for (topic, outcome), n in outcomes.items():
                if n:
                    self.metrics.consumed.labels(topic, outcome).inc(n)
