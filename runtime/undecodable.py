"""Records aiokafka cannot decode, read here so that the consumer gets past them.

A Kafka header key is a string in the protocol, but the broker stores whatever bytes a producer sends.
aiokafka decodes every header key as UTF-8 while it iterates a fetched batch (``DefaultRecordBatch``,
in its C extension as in its pure-Python twin), so one key that is not UTF-8 makes
``AIOKafkaConsumer.getmany`` raise ``UnicodeDecodeError``, and:

- the records of *other* partitions the same call had already taken from the client are lost with the
  exception, though the client has moved their positions past them;
- the bad partition's records before the bad one, in the same fetch, are lost too: the next call finds
  the batch iterator dead and moves the position to where it stopped;
- every later fetch of that batch raises again, and records after the bad one *in the same producer
  batch* can never be decoded by aiokafka at all (seeking past the bad offset fetches the same batch).

:func:`read_past` is what :class:`runtime.consumer.EventConsumer` does when ``getmany`` raises it: every
partition it owns goes back to the record after the last one it was handed (else its committed offset),
and the next fetch of each is read here, straight from the partition's leader: each batch is decoded by
aiokafka when it can, else by :func:`lenient_records` (record format v2), which decodes header keys
with ``\\x`` escapes and returns the records carrying one as :class:`UndecodableRecord` (the consumer
dead-letters them, alone). The client is then sought past what was read and aiokafka goes on from
there. Nothing of aiokafka is patched; a bad key beyond what one such read covers raises again and is
read past the same way (each round moves every partition on by at least one batch).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.errors import CorruptRecordException, LeaderNotAvailableError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import ConsumerRecord

from runtime.read_ahead import ReadAhead, Record

log = logging.getLogger(__name__)

READ_BYTES = 4 * 1024 * 1024
"""Bytes read per partition in one round: the consumer's own ``max_partition_fetch_bytes``, so that one
round covers at least the fetch aiokafka failed on."""

_BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")  # record format v2, 61 bytes
_LOG_OVERHEAD = 12  # base offset (int64) and length (int32): the framing of every format
_CODECS = {1: gzip_decode, 2: snappy_decode, 3: lz4_decode, 4: zstd_decode}


@dataclass
class UndecodableRecord(ConsumerRecord[bytes, bytes]):  # type: ignore[misc]  # aiokafka's types are Any here
    """A record with a header key that is not UTF-8: its keys hold ``\\x`` escapes for the bytes that are
    not, ``reason`` says which; the consumer dead-letters it as it is (key and body unchanged)."""

    reason: str = ""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint (record format v2) and the position after it."""
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def _bytes(data: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = _varint(data, pos)
    if length < 0:
        return None, pos
    return data[pos : pos + length], pos + length


def lenient_records(topic: str, partition: int, batch: bytes) -> tuple[list[Record], int]:
    """The records of one v2 batch (``batch``: its bytes, framing included) as aiokafka would return
    them, but a record whose header keys are not all UTF-8 is an :class:`UndecodableRecord`; and the
    offset after the batch. A control batch (transaction markers) has no records for a consumer."""
    (base_offset, _, _, magic, _, attributes, last_delta, base_ts, max_ts, _, _, _, count) = _BATCH_HEADER.unpack_from(
        batch
    )
    if magic != 2:
        raise ValueError(f"record format v{magic} has no headers")
    next_offset = base_offset + last_delta + 1
    if attributes & 0x20:
        return [], next_offset
    body = batch[_BATCH_HEADER.size :]
    codec = attributes & 0x07
    if codec:
        body = _CODECS[codec](body)
    log_append_time = (attributes >> 3) & 1
    records: list[Record] = []
    pos = 0
    for _ in range(count):
        length, pos = _varint(body, pos)
        end = pos + length
        pos += 1  # the record's attributes (unused)
        ts_delta, pos = _varint(body, pos)
        offset_delta, pos = _varint(body, pos)
        key, pos = _bytes(body, pos)
        value, pos = _bytes(body, pos)
        n_headers, pos = _varint(body, pos)
        headers: list[tuple[str, bytes]] = []
        bad: list[str] = []
        for i in range(n_headers):
            raw_key, pos = _bytes(body, pos)
            header_value, pos = _bytes(body, pos)
            try:
                header_key = (raw_key or b"").decode()
            except UnicodeDecodeError:
                header_key = (raw_key or b"").decode(errors="backslashreplace")
                bad.append(f'#{i} "{header_key}"')
            headers.append((header_key, header_value))  # type: ignore[arg-type]  # a null value passes on as aiokafka's
        pos = end
        fields = (
            topic, partition, base_offset + offset_delta, max_ts if log_append_time else base_ts + ts_delta,
            log_append_time, key, value, None, len(key) if key is not None else -1,
            len(value) if value is not None else -1, tuple(headers),
        )  # fmt: skip
        if bad:
            reason = f"header key not UTF-8 (shown with \\x escapes): {', '.join(bad)}"
            records.append(UndecodableRecord(*fields, reason=reason))
        else:
            records.append(ConsumerRecord(*fields))
    return records, next_offset


def decode_fetch(topic: str, partition: int, data: bytes, start: int) -> tuple[list[Record], int]:
    """The records at ``start`` and after in one partition's fetched bytes, and the offset to fetch next:
    each batch checked (CRC) and decoded by aiokafka, or by :func:`lenient_records` when a header key stops
    it. A batch cut short at the end of the fetch is left for the next one."""
    records: list[Record] = []
    next_offset = start
    pos = 0
    while pos + _LOG_OVERHEAD <= len(data):
        (length,) = struct.unpack_from(">i", data, pos + 8)
        end = pos + _LOG_OVERHEAD + length
        if end > len(data):
            break
        batch = data[pos:end]
        pos = end
        fetched = MemoryRecords(batch).next_batch()
        if fetched is None or not fetched.validate_crc():
            raise CorruptRecordException(f"invalid batch at byte {pos - len(batch)} of {topic}-{partition}")
        try:
            decoded, batch_next = _aiokafkas(topic, partition, fetched)
        except UnicodeDecodeError:
            decoded, batch_next = lenient_records(topic, partition, batch)
        records.extend(r for r in decoded if r.offset >= start)
        next_offset = max(next_offset, batch_next)
    return records, next_offset


def _aiokafkas(topic: str, partition: int, fetched: Any) -> tuple[list[Record], int]:
    """One batch of any record format decoded as the client does (``PartitionRecords`` in aiokafka's
    fetcher); raises ``UnicodeDecodeError`` on a header key that is not UTF-8."""
    records: list[Record] = []
    if not getattr(fetched, "is_control_batch", False):
        for r in fetched:
            records.append(
                ConsumerRecord(
                    topic, partition, r.offset, r.timestamp, r.timestamp_type, r.key, r.value, r.checksum,
                    len(r.key) if r.key is not None else -1, len(r.value) if r.value is not None else -1,
                    tuple(getattr(r, "headers", ())),
                )
            )  # fmt: skip
    next_offset = getattr(fetched, "next_offset", None)  # format v2; an old one ends with its last record
    return records, next_offset if next_offset is not None else records[-1].offset + 1


async def fetch_records(
    bootstrap: str, starts: Mapping[TopicPartition, int], *, client_id: str, read_bytes: int = READ_BYTES
) -> dict[TopicPartition, tuple[list[Record], int]]:
    """One fetch of each partition from ``starts`` (a request each: a request for all could be filled
    by the first ones and leave the bad partition out every time), read and decoded here
    (:func:`decode_fetch`): each partition's records and the offset to fetch next. A partition the broker
    answers with an error is left out (the consumer's client meets the error again and handles it)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap, client_id=client_id)
    await client.bootstrap()
    try:
        fetched: dict[TopicPartition, tuple[list[Record], int]] = {}
        for tp, offset in starts.items():
            await client.add_topic(tp.topic)
            leader = client.cluster.leader_for_partition(tp)
            if leader is None or leader < 0:
                raise LeaderNotAvailableError(f"no leader for {tp}")
            request = FetchRequest(0, 1, read_bytes, 0, [(tp.topic, [(tp.partition, offset, read_bytes)])])
            response = await client.send(leader, request)
            for topic, partitions in response.topics:
                for partition, error_code, _, *part_data in partitions:
                    if error_code:
                        error = for_code(error_code).__name__
                        log.warning("fetch error", extra={"topic": topic, "partition": partition, "error_type": error})
                        continue
                    fetched[tp] = decode_fetch(topic, partition, part_data[-1] or b"", offset)
        return fetched
    finally:
        await client.close()


async def _restart_offset(consumer: AIOKafkaConsumer, tp: TopicPartition, offset_reset: str) -> int:
    """Where a partition this consumer was handed nothing of resumes: its committed offset, else the
    start of the log (``earliest``) or the client's position (``latest``: the end when it was assigned)."""
    committed = await consumer.committed(tp)
    if committed is not None:
        return int(committed)
    if offset_reset == "earliest":
        return int((await consumer.beginning_offsets([tp]))[tp])
    return int(await consumer.position(tp))


async def read_past(
    consumer: AIOKafkaConsumer, ahead: ReadAhead, bootstrap: str, *, client_id: str, offset_reset: str
) -> dict[TopicPartition, list[Record]]:
    """After ``getmany`` raised ``UnicodeDecodeError``: the next records of every partition owned, read
    here from where the consumer stands (see the module's docstring), and the client sought past them.
    Returns them as ``getmany`` would; nothing when a rebalance happened meanwhile (the client reads every
    partition again from its committed offset then). Should anything fail here (the broker unreachable,
    say), the error escapes the poll loop like any of the client's, and the supervisor restarts the
    consumer from its committed offsets: nothing the failed ``getmany`` lost is skipped."""
    rebalances = ahead.rebalances
    starts: dict[TopicPartition, int] = {}
    for tp in consumer.assignment():
        expected = ahead.expected.get(tp)
        starts[tp] = expected if expected is not None else await _restart_offset(consumer, tp, offset_reset)
    fetched = await fetch_records(bootstrap, starts, client_id=client_id) if starts else {}
    if ahead.rebalances != rebalances:
        return {}
    owned = consumer.assignment()
    records: dict[TopicPartition, list[Record]] = {}
    for tp, start in starts.items():
        if tp not in owned:
            continue
        got, next_offset = fetched.get(tp, ([], start))
        consumer.seek(tp, next_offset)
        ahead.sought(tp, next_offset)
        if got:
            records[tp] = got
    undecodable = [
        f"{r.topic}/{r.partition}@{r.offset}" for rs in records.values() for r in rs if isinstance(r, UndecodableRecord)
    ]
    log.warning(
        "a fetch aiokafka could not decode was read past",
        extra={"records": sum(map(len, records.values())), "undecodable": undecodable},
    )
    return records
