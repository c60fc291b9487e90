"""The runtime's consumer as the benches time a projection: from its first batch (the group join before it
is not projection time) to the batch that commits the ``expected``-th event, noted as it happens so that
nothing polls the database or the broker meanwhile (a ``count(*)`` every 50 ms over a growing table cost
its PostgreSQL backends several µs per event)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

from runtime.consumer import EventConsumer, Record
from runtime.tracking import ParsedBatch


@dataclasses.dataclass(kw_only=True)
class TimedConsumer(EventConsumer):
    expected: int = 0
    first_batch_at: float | None = None
    cpu_at_first_batch: float = 0.0
    applied: int = 0
    applied_at: float = 0.0
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def parse_batch(self, records: Sequence[Record]) -> ParsedBatch:
        if self.first_batch_at is None:
            self.first_batch_at = time.perf_counter()
            self.cpu_at_first_batch = time.process_time()
        return await super().parse_batch(records)

    async def apply_batch(self, parsed: ParsedBatch) -> None:
        await super().apply_batch(parsed)  # committed: its events are in the read models
        self.applied += len(parsed.work)
        if self.applied >= self.expected:
            self.applied_at = time.perf_counter()
            self.done.set()
