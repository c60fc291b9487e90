"""The dead-letter command of the README on the issue's own oversized letter, found by the outside-in probe
of issue 9 (``bench/probes/issue9.py poison --set big --keep-for-replay``): ``replay --to dlt`` re-sent the
whole kept body through a producer limited to 1 MiB and failed with MessageSizeTooLargeError; it now
publishes the copy a consumer does (the body cut, the whole kept in the table)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, eventually, unique
from runtime.metrics import RuntimeMetrics
from tests.faultkit import FaultCase, applied_at_least, consuming, records_on, with_id

pytestmark = pytest.mark.stack


async def test_the_issues_oversized_dead_letter_can_be_replayed_to_its_dead_letter_topic(fault_case: FaultCase) -> None:
    case, good = fault_case, fault_case.good
    poison = (good.key, b"x" * 1_048_200, with_id(good.headers, unique("big")))
    await case.send([poison, case.good_raw])
    async with consuming(case.stack, case.pool, case.topic, RuntimeMetrics("probe9")):
        await eventually(applied_at_least(case.pool, 1), 60, "the valid event behind the oversized one")

        async def kept() -> bool:
            return bool(await case.pool.fetchval("SELECT count(*) FROM dead_letters") == 1)

        await eventually(kept, 30, "the oversized dead letter to be kept in the table")
    replay = subprocess.run(
        [sys.executable, "-m", "runtime.deadletters", "replay", "--to", "dlt", "--service", "matching",
         "--dsn", case.stack.admin_dsn, "--schema", case.schema, "--bootstrap", case.stack.kafka_bootstrap],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr.strip().splitlines()[-1:]
    assert "replayed 1 dead letter(s)" in replay.stdout
    assert len(await records_on(case.stack.kafka_bootstrap, case.topic.dead_letter)) == 2, (
        "the first copy and the replayed one"
    )
