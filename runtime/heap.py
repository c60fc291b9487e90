"""The cyclic garbage collector, set for a process that consumes events in batches.

CPython frees nearly everything by reference counting; the cyclic collector only reclaims reference
cycles, yet by default it runs a young-generation pass every 700 net allocations of container objects.
A consumer's batch of 2,000 events allocates about 50,000 of them (aiokafka's records and header
tuples, the models, their lists) that all live until the batch is applied, and with parse-ahead a
second batch is parsed meanwhile: the default thresholds ran some thirty passes per 1,000 events,
each scanning the batches in flight and promoting them to the older generations to be scanned again.
Measured in the pool projection: about 8 µs of collector time per event, a fifth of the consumer's
CPU (``gc.callbacks`` around ``bench.pipeline_bench``'s projection), against under 0.5 µs with
:data:`YOUNG_THRESHOLD`.

The read-ahead (:mod:`runtime.read_ahead`) holds a whole fetch besides: some 20,000 records of three
partitions (4 MiB each), nine containers each (the record, its headers). With passes every 100,000
allocations, each pass scanned them again: measured in the pool projection (2026-11-30, load 4-5, the
start-up's full collection included) 3.0-5.6 µs of collector time per event, a tenth to a fifth of the
consumer's CPU; 0.6-1.1 µs at 300,000.

What it costs: garbage cycles wait up to :data:`YOUNG_THRESHOLD` net container allocations longer
before they are freed. The bound counts objects, not bytes: a cycle that holds a large value (a
record's body, an uploaded file) keeps it that much longer. The rare young pass scans up to that many
objects at once (a few tens of milliseconds on a busy machine).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 300_000
"""Net container allocations between two young-generation passes: above two batches in flight and a
full read-ahead."""


def settle_heap() -> None:
    """Once a service has started: what it allocated so far lives as long as the process, so it is
    kept out of every later scan (``gc.freeze``), and young passes run per :data:`YOUNG_THRESHOLD`.
    The garbage of start-up is collected first: a cycle frozen would never be freed."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
