"""Reading past what aiokafka cannot decode: a batch read here gives the records aiokafka would give, and a
record whose header key is not UTF-8 as an UndecodableRecord, with the records after it in its batch."""

from __future__ import annotations

import struct

import pytest
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy
from aiokafka.record.legacy_records import _LegacyRecordBatchBuilderPy
from aiokafka.record.memory_records import MemoryRecords

from runtime.undecodable import UndecodableRecord, decode_fetch, lenient_records


class _RawKey(str):
    """aiokafka's pure-Python builder calls ``key.encode()``: this header key gives bytes that are not UTF-8."""

    def encode(self, *args: object, **kwargs: object) -> bytes:
        return b"ce_\xff\xfe"


Header = tuple[str, bytes | None]
Raw = tuple[bytes | None, bytes | None, list[Header]]
_GOOD: list[Raw] = [
    (b"k1", b'{"a": 1}', [("ce_id", b"1"), ("ce_type", b"t")]),
    (None, b"no key", []),
    (b"k3", None, [("empty", b""), ("null", None)]),
    (b"k4", "é".encode() * 300, [("ce_id", b"4")]),
]


def _v2(base: int, records: list[Raw], codec: int = 0) -> bytes:
    builder = _DefaultRecordBatchBuilderPy(2, codec, 0, -1, -1, -1, 1 << 20)
    for i, (key, value, headers) in enumerate(records):
        builder.append(i, timestamp=1_700_000_000_000 + i, key=key, value=value, headers=headers)
    batch = builder.build()
    batch[0:8] = struct.pack(">q", base)
    return bytes(batch)


def _as_aiokafka(data: bytes) -> list[tuple[object, ...]]:
    fetched = MemoryRecords(data)
    out: list[tuple[object, ...]] = []
    while fetched.has_next():
        batch = fetched.next_batch()
        assert batch is not None
        out += [
            (r.offset, r.timestamp, r.timestamp_type, r.key, r.value, tuple(getattr(r, "headers", ()))) for r in batch
        ]
    return out


def _fields(records: list[object]) -> list[tuple[object, ...]]:
    return [(r.offset, r.timestamp, r.timestamp_type, r.key, r.value, tuple(r.headers)) for r in records]  # type: ignore[attr-defined]


@pytest.mark.parametrize("codec", [0, 1], ids=["plain", "gzip"])  # the others need libraries not installed
def test_a_good_batch_read_leniently_is_what_aiokafka_reads(codec: int) -> None:
    batch = _v2(40, _GOOD, codec)
    records, next_offset = lenient_records("t", 3, batch)
    assert _fields(records) == _as_aiokafka(batch)
    assert next_offset == 44
    assert {(r.topic, r.partition, type(r).__name__) for r in records} == {("t", 3, "ConsumerRecord")}
    assert [(r.serialized_key_size, r.serialized_value_size) for r in records] == [(2, 8), (-1, 6), (2, -1), (2, 600)]


@pytest.mark.parametrize("codec", [0, 1], ids=["plain", "gzip"])
def test_a_bad_header_key_makes_its_record_undecodable_and_the_rest_of_its_batch_is_read(codec: int) -> None:
    bad: Raw = (b"kb", b'{"bad": true}', [("ce_id", b"b"), (_RawKey("x"), b"v")])
    batch = _v2(10, [_GOOD[0], bad, _GOOD[1], _GOOD[3]], codec)
    with pytest.raises(UnicodeDecodeError):
        _as_aiokafka(batch)  # what stops the consumer's client
    records, next_offset = lenient_records("t", 0, batch)
    assert [r.offset for r in records] == [10, 11, 12, 13] and next_offset == 14
    assert [isinstance(r, UndecodableRecord) for r in records] == [False, True, False, False]
    poison = records[1]
    assert isinstance(poison, UndecodableRecord)
    assert (poison.key, poison.value) == bad[:2], "key and body kept as they are"
    assert poison.headers == (("ce_id", b"b"), ("ce_\\xff\\xfe", b"v"))
    assert poison.reason == 'header key not UTF-8 (shown with \\x escapes): #1 "ce_\\xff\\xfe"'


def test_a_fetch_is_read_from_the_start_offset_and_a_batch_cut_short_at_its_end_is_left_for_the_next() -> None:
    bad: Raw = (b"kb", b"{}", [(_RawKey("x"), b"v")])
    first, second, third = _v2(0, _GOOD[:2]), _v2(2, [_GOOD[2], bad, _GOOD[3]]), _v2(5, _GOOD[:1])
    records, next_offset = decode_fetch("t", 0, first + second + third[:-7], start=1)
    assert [(r.offset, type(r).__name__) for r in records] == [
        (1, "ConsumerRecord"),
        (2, "ConsumerRecord"),
        (3, "UndecodableRecord"),
        (4, "ConsumerRecord"),
    ]
    assert next_offset == 5, "the third batch, cut short, is fetched again"
    assert decode_fetch("t", 0, b"", start=7) == ([], 7)


def test_an_old_format_batch_is_decoded_by_aiokafka() -> None:
    builder = _LegacyRecordBatchBuilderPy(1, 0, 1 << 20)
    builder.append(0, timestamp=1_700_000_000_000, key=b"k", value=b"v")
    records, next_offset = decode_fetch("t", 0, bytes(builder.build()), start=0)
    assert [(r.offset, r.key, r.value, r.headers) for r in records] == [(0, b"k", b"v", ())]
    assert next_offset == 1
