"""The consumer's read-ahead: records taken from aiokafka whole, batches cut from them.

aiokafka asks the broker for more of a partition only once every record it fetched has been taken (and,
from a single broker, only once every partition's have), so a consumer that takes a batch at a time
waits a whole fetch round trip whenever its client's buffer runs dry, with nothing else to do. Taking
each fetch whole as soon as it arrives lets the next one travel while this one is parsed and applied;
:class:`ReadAhead` holds what was taken and not yet in a batch. See :mod:`runtime.consumer` for how it
keeps the delivery guarantees (rewound with the batch in flight, dropped for a partition no longer owned).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"

READ_AHEAD_MAX = 100_000
"""Records taken from the client in one call: as a rule more than it has fetched (a fetch of small
events, 4 MiB per partition), so that its buffer empties and it fetches again at once."""


@dataclass
class ReadAhead:
    """Records taken from the client and not yet in a batch, per partition in offset order."""

    records: dict[TopicPartition, list[Record]] = field(default_factory=dict)
    count: int = 0
    expected: dict[TopicPartition, int] = field(default_factory=dict)
    """Each partition's offset after the last record the client handed over (or where the consumer sought
    it since): where it resumes should a ``getmany`` that raised have lost records it had taken
    (:func:`runtime.undecodable.read_past`). Absent: nothing handed since the partition was assigned."""
    rebalances: int = 0
    """Rebalances that revoked partitions so far: after one, the client reads every partition it is given
    again from its committed offset, so batches parsed before it are stale (the consumer drops them)."""

    def add(self, fetched: Mapping[TopicPartition, list[Record]]) -> None:
        """Appends each partition's records. Records that do not follow what is held (the client was
        sought back, e.g. a partition lost and assigned again reads from its committed offset) replace
        it: the client reads everything held again after them, so nothing is lost or reordered."""
        for tp, records in fetched.items():
            held = self.records.setdefault(tp, [])
            if held and records and records[0].offset <= held[-1].offset:
                self.count -= len(held)
                held.clear()
            held.extend(records)
            self.count += len(records)
            if records:
                self.expected[tp] = records[-1].offset + 1

    def take(self, limit: int, owned: set[TopicPartition]) -> dict[TopicPartition, list[Record]]:
        """The next batch: up to ``limit`` records, each partition's in offset order; the records of a
        partition no longer ``owned`` (a rebalance took it) are dropped, its new owner reads them."""
        batch: dict[TopicPartition, list[Record]] = {}
        for tp in list(self.records):
            records = self.records[tp]
            if tp not in owned:
                del self.records[tp]
                self.expected.pop(tp, None)
                self.count -= len(records)
                continue
            if limit <= 0:
                continue
            batch[tp], rest = records[:limit], records[limit:]
            limit -= len(batch[tp])
            self.count -= len(batch[tp])
            if rest:
                self.records[tp] = rest
            else:
                del self.records[tp]
        return batch

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget the records of ``partitions`` (revoked in a rebalance): their next owner, or this
        consumer if they come back, reads them again from the committed offset."""
        for tp in partitions:
            self.count -= len(self.records.pop(tp, ()))
            self.expected.pop(tp, None)

    def sought(self, tp: TopicPartition, offset: int) -> None:
        """The client was sought to ``offset``: that is the next record it hands over."""
        self.expected[tp] = offset

    def clear(self) -> None:
        """Forget the records held (the consumer sought their partitions back to read them again)."""
        self.records.clear()
        self.count = 0


class ForgetRevoked(ConsumerRebalanceListener):  # type: ignore[misc]
    """Drops a revoked partition's records from the read-ahead as the rebalance happens, so that records
    held from before it are never applied (as duplicates) and committed behind the offset another member
    committed meanwhile."""

    def __init__(self, ahead: ReadAhead) -> None:
        self.ahead = ahead

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.ahead.drop(revoked)
        self.ahead.rebalances += 1

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        """Nothing to do: a partition assigned is read from its committed offset."""
