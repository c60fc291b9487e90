"""Batched, idempotent event consumption: nothing lost, nothing applied twice, no partition blocked.

The guarantee and why each step keeps it:

- **A batch per poll.** :meth:`EventConsumer.run` polls up to ``batch_size`` records (aiokafka,
  ``enable_auto_commit=False``), partition by partition in offset order, and applies them in **one
  database transaction**: the ids of the batch's events are recorded with one multi-row ``INSERT``
  into ``processed_events`` (the tracking record), whose primary key refuses an id recorded before.
  A batch's ids are new as a rule, so the plain ``INSERT`` is tried first; should the key refuse one
  (a redelivery, or another member applying the same events at this moment: the index waits for its
  transaction), the transaction is rolled back and applied again with ``INSERT ... ON CONFLICT DO
  NOTHING RETURNING``, and only the ids it returns are applied. A redelivered event, or the same id
  twice in one batch, is a ``duplicate`` and changes nothing.
- **Offsets after the transaction.** Each partition's offset is committed only once the transaction that
  applied its records has committed; a crash in between replays the batch, and the tracking record
  skips what was already applied. Per-partition order holds because a partition's records are applied
  in offset order and nothing after a record is committed before it.
- **Fetching overlaps the rest.** aiokafka asks the broker for more of a partition only once every
  record it fetched has been taken (from a single broker: once every partition's are), so records are
  taken from it whole, as soon as they arrive, into a read-ahead (:mod:`runtime.read_ahead`, at most one
  fetch beyond a batch), and batches are cut from there: the next fetch travels while this one is parsed
  and applied. Nothing in the read-ahead is applied or committed before the batches ahead of it; should a
  batch fail, the partitions are sought back to it and the read-ahead is dropped and read again; the
  records of a partition this consumer no longer owns are dropped when batches are cut, and records the
  client reads again from an earlier offset (a partition lost and assigned again) replace what is held.
- **Parsing overlaps the database.** While a batch is in its transaction, :meth:`EventConsumer.run`
  parses the records fetched after it, up to :data:`PARSE_AHEAD` batches (CPU in this process while
  PostgreSQL works); they are applied one after the other, each only once the batch before it has
  committed and its offsets are committed, so the order, the tracking record and the offsets are
  exactly as without the overlap. Should the batch in flight fail, the parsed ones are dropped and all
  of them are read again.
- **Failure classes** (:func:`is_transient`):

  * *never applicable*: a body that does not parse, an event that fails its contract's validation, an
    event a handler refuses with :class:`RejectEvent`: dead-lettered at once (attempts 1);
  * *infrastructure*: the database or the broker is unreachable or refuses work for now
    (``OSError``/``ConnectionError``, ``TimeoutError``, asyncpg's interface and connection errors,
    SQLSTATE classes 08 connection, 53 insufficient resources, 57 operator intervention such as a
    shutdown or a cancelled statement, 40 serialization failure or deadlock, 55P03 lock not available,
    and every Kafka client error): **never dead-lettered**. The batch's partitions are sought back to
    the batch's first offsets (the consumer does not advance), the consumer backs off (capped at
    ``max_backoff_seconds``) and tries again for as long as the failure lasts; meanwhile its
    :class:`~runtime.supervision.TaskStatus` carries the reason and ``/health/ready`` answers 503;
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

Handlers. The per-event API is unchanged: ``async def handler(conn, envelope)`` in a
``dict[type[Event], Handler]``; each is called inside the batch's transaction, in order, once per fresh
event. Where one statement per batch pays (a projection receiving thousands of events), wrap a batch
handler with :func:`batched`::

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
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import Tracer

from contracts.envelope import Envelope, InvalidMessage, UnknownEventType, from_kafka
from contracts.events import Event
from contracts.topics import Topic
from runtime.db import text_array_args, text_array_sql
from runtime.deadletters import DeadLetter, send_dead_letter
from runtime.logging import SafeMessage, describe_exception, validation_summary
from runtime.metrics import RuntimeMetrics
from runtime.read_ahead import READ_AHEAD_MAX, ForgetRevoked, ReadAhead
from runtime.read_ahead import Record as Record  # re-exported: handlers' and tools' name for a record
from runtime.supervision import TaskStatus
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


@dataclass
class _Applying:
    batches: dict[TopicPartition, list[Record]]
    task: asyncio.Task[None]


def _unapplied(
    applying: _Applying | None, parsed: Iterable[tuple[dict[TopicPartition, list[Record]], ParsedBatch]]
) -> dict[TopicPartition, list[Record]]:
    """Each partition's earliest records not applied yet: in the batch in flight, else in a parsed one."""
    first: dict[TopicPartition, list[Record]] = dict(applying.batches) if applying else {}
    for batches, _ in parsed:
        for tp, records in batches.items():
            first.setdefault(tp, records)
    return first


FETCH_MAX_WAIT_MS = 100
"""How long the broker may hold a fetch that finds no records (aiokafka's default: 500 ms). While
records of one partition wait in the client for more than 0.1 s (the read-ahead holds a fetch or so),
aiokafka fetches the *other* partitions alone; at the end of their logs that fetch is held the whole
wait, and the busy partition cannot be fetched before it returns: a 50,000-event catch-up stalled
2 x 300 ms in 1.9 s. An idle consumer polls the broker ten times a second instead of twice."""

PARSE_AHEAD = 2
"""Batches parsed while the one before them is in its transaction. One is not enough: a batch's
transaction (its statements one after the other, the handlers' Python between them) took longer than
parsing the next one, and the consumer sat idle for a third of a catch-up."""

LAG_EVERY_SECONDS = 1.0
POLL_EVERY_SECONDS = 10.0


@dataclass
class EventConsumer:
    """One consumer group of one service: which event types it applies and how."""

    name: str
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    topics: tuple[Topic, ...]
    handlers: Mapping[type[Event], Handler | Batched]
    metrics: RuntimeMetrics | None = None
    max_attempts: int = 5
    offset_reset: Literal["earliest", "latest"] = "earliest"
    batch_size: int = 2000
    min_backoff_seconds: float = 0.2
    max_backoff_seconds: float = 10.0
    tracer: Tracer | None = None  # None: tracing off, no span work per event (runtime/tracing.py)
    _attempts: dict[tuple[str, int, int], int] = field(default_factory=dict)
    _unknown_types: set[str] = field(default_factory=set)
    _stopping: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _lag_due: float = 0.0
    _polled_at: float = 0.0

    # The poll loop ---------------------------------------------------------------------------------

    async def run(self, bootstrap: str, status: TaskStatus | None = None) -> None:
        """Consume until :meth:`stop`; meant to run under a :class:`~runtime.supervision.Supervisor`,
        which restarts it (from the committed offsets) should anything but an infrastructure failure
        escape."""
        status = status or TaskStatus(f"consumer:{self.name}")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=self.name,
            client_id=self.name,
            enable_auto_commit=False,
            auto_offset_reset=self.offset_reset,
            max_poll_records=self.batch_size,
            # large fetches: a projection catching up reads thousands of records per round trip
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        ahead = ReadAhead()
        consumer.subscribe([t.name for t in self.topics], listener=ForgetRevoked(ahead))
        await consumer.start()
        backoff = self.min_backoff_seconds
        applying: _Applying | None = None  # a batch in its transaction while the next ones are parsed
        parsed: deque[tuple[dict[TopicPartition, list[Record]], ParsedBatch]] = deque()  # in offset order
        if self.metrics:
            self.metrics.consumer_started(t.name for t in self.topics)
        try:
            while not self._stopping:
                await self._observe_lag(consumer, _unapplied(applying, parsed), ahead)
                if applying is not None and (applying.task.done() or len(parsed) >= PARSE_AHEAD):
                    in_flight, applying = applying, None
                    failure = await self._finish(consumer, in_flight)
                    if failure is not None:
                        # what was read meanwhile is dropped too: all of it is read again after the back-off
                        fetched = [batches for batches, _ in parsed]
                        await self._back_off(
                            consumer, status, failure, backoff, in_flight.batches, *fetched, ahead.records
                        )
                        parsed.clear()
                        ahead.clear()
                        backoff = min(backoff * 2, self.max_backoff_seconds)
                        continue
                    status.ok()
                    backoff = self.min_backoff_seconds
                if applying is None and parsed:
                    batches, batch = parsed.popleft()
                    applying = _Applying(batches, asyncio.create_task(self.apply_batch(batch)))
                if len(parsed) < PARSE_AHEAD:
                    batches = await self._next_batch(consumer, ahead, wait=applying is None)
                    if batches:
                        parsed.append((batches, await self.parse_batch([r for rs in batches.values() for r in rs])))
                        continue
                if applying is not None:  # nothing to parse meanwhile: the batch in flight is waited for
                    await asyncio.wait([applying.task])
            if applying is not None:  # stopping: what is in flight is finished and committed
                in_flight, applying = applying, None
                await self._finish(consumer, in_flight)  # an infrastructure failure: read again after a restart
        finally:
            if self.metrics:
                self.metrics.set_consumer_lag(self.name, {})
            if applying is not None:  # an error elsewhere: the batch in flight is not committed (replayed)
                applying.task.cancel()
                with contextlib.suppress(BaseException):
                    await applying.task
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _finish(self, consumer: AIOKafkaConsumer, in_flight: _Applying) -> Exception | None:
        """The batch in flight applied, then its offsets committed; an infrastructure failure is returned
        (nothing committed: the batch is read again), anything else raised."""
        try:
            await in_flight.task
            await self._commit(consumer, in_flight.batches)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return exc
        return None

    async def _next_batch(
        self, consumer: AIOKafkaConsumer, ahead: ReadAhead, *, wait: bool
    ) -> dict[TopicPartition, list[Record]]:
        """Up to ``batch_size`` records from the read-ahead, after taking whatever the client has fetched
        when the read-ahead holds less than a batch. Waits up to half a second for records only when
        there is nothing else to do (``wait``: no batch in flight, whose commit must not wait for more).

        With a full read-ahead the client is still polled (for one record) once per ``POLL_EVERY_SECONDS``:
        the group drops a member that has not polled for ``max_poll_interval_ms`` (5 minutes), and a slow
        batch (a handler retrying a poison record) must not make the batches after it cost the partitions."""
        now = time.monotonic()
        if ahead.count < self.batch_size:
            timeout_ms = 500 if wait and not ahead.count else 0
            ahead.add(await consumer.getmany(timeout_ms=timeout_ms, max_records=READ_AHEAD_MAX))
            self._polled_at = now
        elif now - self._polled_at > POLL_EVERY_SECONDS:
            ahead.add(await consumer.getmany(timeout_ms=0, max_records=1))
            self._polled_at = now
        return ahead.take(self.batch_size, consumer.assignment()) if ahead.count else {}

    async def _back_off(
        self,
        consumer: AIOKafkaConsumer,
        status: TaskStatus,
        exc: Exception,
        backoff: float,
        *fetched: dict[TopicPartition, list[Record]],
    ) -> None:
        """An infrastructure failure: the partitions go back to the failed batch (and any fetched after
        it), readiness shows the reason, and the consumer waits before it reads them again."""
        status.failing(f"retrying a batch: {describe_exception(exc)[:300]}")
        self._count((r.topic, "retried") for rs in fetched[0].values() for r in rs)
        log.warning(
            "infrastructure failure; the batch will be applied again after a back-off",
            extra={"consumer": self.name, "error_type": type(exc).__name__, "retry_in_seconds": backoff},
        )
        self._rewind(consumer, *fetched)
        await self._sleep(backoff)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _observe_lag(
        self, consumer: AIOKafkaConsumer, in_flight: dict[TopicPartition, list[Record]], ahead: ReadAhead
    ) -> None:
        """Each assigned partition's lag (end offset minus the first record not yet applied: the batch
        in flight counts as not applied until its commit, then the parsed ones, the read-ahead, else the
        position) from what the last fetches told the client: no request to the broker, at most once per
        ``LAG_EVERY_SECONDS``, so it costs the poll loop nothing measurable. A partition not fetched yet
        (no end offset known) is left out; a round interrupted by a rebalance (or a position being reset)
        is skipped, never waited for."""
        now = time.monotonic()
        if self.metrics is None or now < self._lag_due:
            return
        self._lag_due = now + LAG_EVERY_SECONDS
        lags: dict[tuple[str, int], int] = {}
        try:
            async with asyncio.timeout(0.2):
                for tp in consumer.assignment():
                    end = consumer.highwater(tp)
                    if end is not None:
                        pending = in_flight.get(tp) or ahead.records.get(tp)
                        start = pending[0].offset if pending else await consumer.position(tp)
                        lags[(tp.topic, tp.partition)] = max(0, end - start)
        except (TimeoutError, AssertionError, IllegalStateError):
            return
        self.metrics.set_consumer_lag(self.name, lags)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _commit(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Record]]) -> None:
        try:
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        except (CommitFailedError, IllegalStateError):
            # The group rebalanced while the batch was applied: the partitions' new owner replays from
            # the last committed offsets and the tracking record skips what this batch applied.
            log.warning("offsets not committed: the group rebalanced", extra={"consumer": self.name})

    def _rewind(self, consumer: AIOKafkaConsumer, *fetched: dict[TopicPartition, list[Record]]) -> None:
        """Seek each partition still ours back to the first record fetched: the consumer does not advance."""
        owned = consumer.assignment()
        first: dict[TopicPartition, int] = {}
        for batches in fetched:
            for tp, records in batches.items():
                first[tp] = min(first.get(tp, records[0].offset), records[0].offset)
        for tp, offset in first.items():
            if tp in owned:
                consumer.seek(tp, offset)

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
        self._count(outcomes.elements())
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
        self._count([(record.topic, "retried")])
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
                outcomes.update((record.topic, "applied") for record, _ in work)
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

    def _count(self, outcomes: Iterable[tuple[str, str]]) -> None:
        if self.metrics:
            for (topic, outcome), n in Counter(outcomes).items():
                self.metrics.consumed.labels(topic, outcome).inc(n)
