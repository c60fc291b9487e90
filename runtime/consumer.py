"""Batched, idempotent event consumption: nothing lost, nothing applied twice, no partition blocked.

The poll loop of one consumer group; each batch it polls is applied by :class:`runtime.tracking.BatchApplier`
(the tracking record, the failure classes, the handlers' API). The guarantee and why each step keeps it:

- **A batch per poll.** :meth:`EventConsumer.run` polls up to ``batch_size`` records (aiokafka,
  ``enable_auto_commit=False``), partition by partition in offset order, and applies them in **one
  database transaction** with the tracking record, which skips an event applied before.
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
- **Infrastructure failures** (:func:`runtime.tracking.is_transient`: the database or the broker
  unreachable or refusing work for now) are never dead-lettered. The batch's partitions are sought back
  to the batch's first offsets (the consumer does not advance), the consumer backs off (capped at
  ``max_backoff_seconds``) and tries again for as long as the failure lasts; meanwhile its
  :class:`~runtime.supervision.TaskStatus` carries the reason and ``/health/ready`` answers 503.
- **A record aiokafka cannot decode** (a header key that is not UTF-8: the broker takes any bytes) makes
  ``getmany`` raise, losing what it had taken; :mod:`runtime.undecodable` then reads the next fetch of
  every partition itself, from the record after the last one the consumer was handed, and seeks the
  client past it. The record with the bad key is dead-lettered alone (:meth:`EventConsumer.parse_batch`),
  every other record is applied in order like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from contracts.topics import Topic
from runtime.deadletters import DeadLetter
from runtime.logging import describe_exception
from runtime.read_ahead import READ_AHEAD_MAX, ForgetRevoked, ReadAhead
from runtime.read_ahead import Record as Record  # re-exported: handlers' and tools' name for a record
from runtime.supervision import TaskStatus
from runtime.tracking import BatchApplier, ParsedBatch, is_transient
from runtime.undecodable import UndecodableRecord, read_past

log = logging.getLogger(__name__)


@dataclass
class _Cut:
    """A batch cut from the read-ahead and parsed, with the read-ahead's rebalance count when it was cut:
    one cut before a rebalance is stale (the client reads its records again from the committed offsets),
    so it is neither applied nor rewound to."""

    batches: dict[TopicPartition, list[Record]]
    parsed: ParsedBatch
    rebalances: int


@dataclass
class _Applying:
    cut: _Cut
    task: asyncio.Task[None]


def _unapplied(applying: _Applying | None, parsed: Iterable[_Cut]) -> dict[TopicPartition, list[Record]]:
    """Each partition's earliest records not applied yet: in the batch in flight, else in a parsed one."""
    first: dict[TopicPartition, list[Record]] = dict(applying.cut.batches) if applying else {}
    for cut in parsed:
        for tp, records in cut.batches.items():
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


@dataclass(kw_only=True)
class EventConsumer(BatchApplier):
    """One consumer group of one service: which topics it reads, and which event types it applies and how
    (the fields of :class:`~runtime.tracking.BatchApplier`)."""

    topics: tuple[Topic, ...]
    offset_reset: Literal["earliest", "latest"] = "earliest"
    batch_size: int = 2000
    max_backoff_seconds: float = 10.0
    _stopping: bool = field(default=False, init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _lag_due: float = field(default=0.0, init=False)
    _polled_at: float = field(default=0.0, init=False)
    _bootstrap: str = field(default="", init=False)
    _undecodable_seen: bool = field(default=False, init=False)

    # The poll loop ---------------------------------------------------------------------------------

    async def run(self, bootstrap: str, status: TaskStatus | None = None) -> None:
        """Consume until :meth:`stop`; meant to run under a :class:`~runtime.supervision.Supervisor`,
        which restarts it (from the committed offsets) should anything but an infrastructure failure
        escape."""
        status = status or TaskStatus(f"consumer:{self.name}")
        self._bootstrap = bootstrap
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
        parsed: deque[_Cut] = deque()  # in offset order
        if self.metrics:
            self.metrics.consumer_started(t.name for t in self.topics)
        try:
            while not self._stopping:
                await self._observe_lag(consumer, applying, parsed, ahead)
                if applying is not None and (applying.task.done() or len(parsed) >= PARSE_AHEAD):
                    in_flight, applying = applying, None
                    failure = await self._finish(consumer, in_flight)
                    if failure is not None:
                        # what was read meanwhile is dropped too: all of it is read again after the back-off
                        current = [c.batches for c in (in_flight.cut, *parsed) if c.rebalances == ahead.rebalances]
                        rewind = [*current, ahead.records]
                        await self._back_off(
                            consumer, ahead, status, failure, backoff, failed=in_flight.cut, rewind=rewind
                        )
                        parsed.clear()
                        ahead.clear()
                        backoff = min(backoff * 2, self.max_backoff_seconds)
                        continue
                    status.ok()
                    backoff = self.min_backoff_seconds
                while parsed and parsed[0].rebalances != ahead.rebalances:
                    parsed.popleft()  # cut before a rebalance: read again from the committed offsets
                if applying is None and parsed:
                    cut = parsed.popleft()
                    applying = _Applying(cut, asyncio.create_task(self.apply_batch(cut.parsed)))
                if len(parsed) < PARSE_AHEAD:
                    batches = await self._next_batch(consumer, ahead, wait=applying is None)
                    # read after the poll: a rebalance during it hands back records of the new assignment
                    rebalances = ahead.rebalances
                    if batches:
                        parsed_batch = await self.parse_batch([r for rs in batches.values() for r in rs])
                        parsed.append(_Cut(batches, parsed_batch, rebalances))
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
            await self._commit(consumer, in_flight.cut.batches)
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
            ahead.add(await self._getmany(consumer, ahead, timeout_ms=timeout_ms, max_records=READ_AHEAD_MAX))
            self._polled_at = now
        elif now - self._polled_at > POLL_EVERY_SECONDS:
            ahead.add(await self._getmany(consumer, ahead, timeout_ms=0, max_records=1))
            self._polled_at = now
        return ahead.take(self.batch_size, consumer.assignment()) if ahead.count else {}

    async def _getmany(
        self, consumer: AIOKafkaConsumer, ahead: ReadAhead, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[Record]]:
        """What the client has fetched; when a header key that is not UTF-8 stops aiokafka's decoding,
        the next fetch of every partition read here instead (:mod:`runtime.undecodable`), the records
        with such a key to be dead-lettered alone by :meth:`parse_batch`."""
        try:
            fetched: dict[TopicPartition, list[Record]] = await consumer.getmany(
                timeout_ms=timeout_ms, max_records=max_records
            )
        except UnicodeDecodeError:
            self._undecodable_seen = True
            return await read_past(
                consumer, ahead, self._bootstrap, client_id=f"{self.name}-raw", offset_reset=self.offset_reset
            )
        return fetched

    async def parse_batch(self, records: Sequence[Record]) -> ParsedBatch:
        """As :meth:`BatchApplier.parse_batch`, and a record read past aiokafka (a header key that is not
        UTF-8) is dead-lettered with the reason, whatever its body: a copy on ``.dlt`` whose key could
        not be read would stop the consumers of the dead letters the same way."""
        if not self._undecodable_seen:
            return await super().parse_batch(records)
        undecodable = [r for r in records if isinstance(r, UndecodableRecord)]
        if not undecodable:
            return await super().parse_batch(records)
        parsed = await super().parse_batch([r for r in records if not isinstance(r, UndecodableRecord)])
        parsed.records = records
        parsed.letters.extend(DeadLetter(self.name, r, r.reason, attempts=1) for r in undecodable)
        return parsed

    async def _back_off(
        self,
        consumer: AIOKafkaConsumer,
        ahead: ReadAhead,
        status: TaskStatus,
        exc: Exception,
        backoff: float,
        *,
        failed: _Cut,
        rewind: Iterable[dict[TopicPartition, list[Record]]],
    ) -> None:
        """An infrastructure failure: the ``failed`` batch's records are counted as retried, the partitions
        go back to the first of the records in ``rewind`` (the failed batch and what was read after it, but
        what a rebalance has reset already), readiness shows the reason, and the consumer waits before it
        reads them again."""
        status.failing(f"retrying a batch: {describe_exception(exc)[:300]}")
        retried: Counter[tuple[str, str]] = Counter()
        for tp, records in failed.batches.items():
            retried[(tp.topic, "retried")] += len(records)
        self._count(retried)
        log.warning(
            "infrastructure failure; the batch will be applied again after a back-off",
            extra={"consumer": self.name, "error_type": type(exc).__name__, "retry_in_seconds": backoff},
        )
        self._rewind(consumer, ahead, *rewind)
        await self._sleep(backoff)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _observe_lag(
        self, consumer: AIOKafkaConsumer, applying: _Applying | None, parsed: Iterable[_Cut], ahead: ReadAhead
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
        in_flight = _unapplied(applying, parsed)
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

    def _rewind(
        self, consumer: AIOKafkaConsumer, ahead: ReadAhead, *fetched: dict[TopicPartition, list[Record]]
    ) -> None:
        """Seek each partition still ours back to the first record fetched: the consumer does not advance."""
        owned = consumer.assignment()
        first: dict[TopicPartition, int] = {}
        for batches in fetched:
            for tp, records in batches.items():
                first[tp] = min(first.get(tp, records[0].offset), records[0].offset)
        for tp, offset in first.items():
            if tp in owned:
                consumer.seek(tp, offset)
                ahead.sought(tp, offset)
