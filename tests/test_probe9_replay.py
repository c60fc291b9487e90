"""The dead-letter command of the README on the issue's own oversized letter, found by the outside-in probe
of issue 9 (``bench/probes/issue9.py poison --set big --keep-for-replay``): ``replay --to dlt`` re-sent the
whole kept body through a producer limited to 1 MiB and failed with MessageSizeTooLargeError; it now
publishes the copy a consumer does (the body cut, the whole kept in the table)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, PrivateTopics, StackEndpoints, eventually, unique
from contracts.envelope import to_kafka
from runtime.metrics import RuntimeMetrics
from tests.faultkit import applied_at_least, consumer_schema, consuming, records_on, send_raw, with_id, withdrawn

pytestmark = pytest.mark.stack


async def test_the_issues_oversized_dead_letter_can_be_replayed_to_its_dead_letter_topic(
    stack: StackEndpoints, scratch_schemas: list[str], private_topics: PrivateTopics
) -> None:
    topic = await private_topics("replaybig", partitions=1)
    pool = await consumer_schema(stack, scratch_schemas, "probe9_replay")
    schema = str(await pool.fetchval("SELECT current_schema()"))
    good = to_kafka(withdrawn(unique("prg"), 1))
    poison = (good.key, b"x" * 1_048_200, with_id(good.headers, unique("big")))
    await send_raw(stack.kafka_bootstrap, topic.name, [poison, (good.key, good.value, good.headers)])
    async with consuming(stack, pool, topic, RuntimeMetrics("probe9")):
        await eventually(applied_at_least(pool, 1), 60, "the valid event behind the oversized one")

        async def kept() -> bool:
            return bool(await pool.fetchval("SELECT count(*) FROM dead_letters") == 1)

        await eventually(kept, 30, "the oversized dead letter to be kept in the table")
    replay = subprocess.run(
        [sys.executable, "-m", "runtime.deadletters", "replay", "--to", "dlt", "--service", "matching",
         "--dsn", stack.admin_dsn, "--schema", schema, "--bootstrap", stack.kafka_bootstrap],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    await pool.close()
    assert replay.returncode == 0, replay.stderr.strip().splitlines()[-1:]
    assert "replayed 1 dead letter(s)" in replay.stdout
    assert len(await records_on(stack.kafka_bootstrap, topic.dead_letter)) == 2, "the first copy and the replayed one"
