"""The consumer's read-ahead: batches cut from whole fetches, in order, only of partitions still owned."""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from runtime.read_ahead import ForgetRevoked, ReadAhead, Record

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def _records(tp: TopicPartition, first: int, count: int) -> list[Record]:
    return [
        ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"k", b"{}", None, 1, 2, ())
        for offset in range(first, first + count)
    ]


def _offsets(batch: dict[TopicPartition, list[Record]]) -> dict[int, list[int]]:
    return {tp.partition: [r.offset for r in records] for tp, records in batch.items()}


def test_batches_are_cut_in_offset_order_per_partition_up_to_the_limit() -> None:
    ahead = ReadAhead()
    ahead.add({A: _records(A, 0, 5), B: _records(B, 10, 2)})
    ahead.add({A: _records(A, 5, 2)})  # the next fetch of A goes behind what is there
    assert ahead.count == 9
    assert _offsets(ahead.take(4, {A, B})) == {0: [0, 1, 2, 3]}
    assert _offsets(ahead.take(4, {A, B})) == {0: [4, 5, 6], 1: [10]}
    assert _offsets(ahead.take(4, {A, B})) == {1: [11]}
    assert ahead.count == 0 and ahead.take(4, {A, B}) == {}


def test_records_of_a_partition_taken_by_a_rebalance_are_dropped() -> None:
    ahead = ReadAhead()
    ahead.add({A: _records(A, 0, 3), B: _records(B, 0, 3)})
    assert _offsets(ahead.take(10, {B})) == {1: [0, 1, 2]}  # A's new owner reads A from its commit
    assert ahead.count == 0 and not ahead.records


def test_records_read_again_from_an_earlier_offset_replace_what_is_held() -> None:
    """The partition was lost and assigned again: the client reads from the committed offset, which is
    at or before what is held, and everything held comes again after it."""
    ahead = ReadAhead()
    ahead.add({A: _records(A, 100, 5), B: _records(B, 0, 1)})
    ahead.add({A: _records(A, 90, 20)})
    assert ahead.count == 21
    assert _offsets(ahead.take(50, {A, B})) == {0: list(range(90, 110)), 1: [0]}


def test_a_gap_in_offsets_is_kept_as_it_is() -> None:
    """A compacted topic skips offsets: records that come later are appended, nothing is dropped."""
    ahead = ReadAhead()
    ahead.add({A: _records(A, 0, 2)})
    ahead.add({A: _records(A, 7, 2)})
    assert _offsets(ahead.take(10, {A})) == {0: [0, 1, 7, 8]}


def test_clear_forgets_everything() -> None:
    ahead = ReadAhead()
    ahead.add({A: _records(A, 0, 3)})
    ahead.clear()
    assert ahead.count == 0 and ahead.take(10, {A}) == {}


def test_a_revoked_partitions_records_are_forgotten_as_the_rebalance_happens() -> None:
    """Held from before a rebalance that took A and gave it back: the refetch from A's committed offset
    (perhaps past them, another member applied them meanwhile) is all that is applied of A."""
    ahead = ReadAhead()
    ahead.add({A: _records(A, 200, 100), B: _records(B, 0, 2)})
    ForgetRevoked(ahead).on_partitions_revoked([A])
    assert ahead.count == 2
    assert ahead.rebalances == 1, "the consumer drops what it parsed before the rebalance"
    ahead.add({A: _records(A, 400, 2)})
    assert _offsets(ahead.take(10, {A, B})) == {0: [400, 401], 1: [0, 1]}


def test_the_offset_after_the_last_record_handed_over_is_kept_per_partition_until_the_partition_goes() -> None:
    ahead = ReadAhead()
    ahead.add({A: _records(A, 0, 3), B: _records(B, 10, 2)})
    ahead.take(10, {A, B})
    assert ahead.expected == {A: 3, B: 12}, "kept once the records are in a batch"
    ahead.sought(A, 1)  # the consumer rewound A to read it again
    ahead.clear()
    assert ahead.expected == {A: 1, B: 12}
    ahead.add({A: _records(A, 1, 4)})
    ForgetRevoked(ahead).on_partitions_revoked([B])
    assert ahead.expected == {A: 5}, "a revoked partition resumes from its committed offset"
    ahead.take(10, {B})
    assert ahead.expected == {}
