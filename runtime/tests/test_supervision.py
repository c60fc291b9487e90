"""Supervised background tasks: a failing task is restarted, counted and shown until it recovers."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import cast

from prometheus_client import CollectorRegistry, Counter

from conftest import eventually
from runtime.service import ServiceContext, _as_background
from runtime.supervision import Supervisor, TaskStatus, every


async def test_a_failing_task_is_restarted_with_its_errors_counted_and_shown_until_a_pass_succeeds() -> None:
    registry = CollectorRegistry()
    errors = Counter("t_background_task_errors_total", "errors", ["task"], registry=registry)
    supervisor = Supervisor(errors=errors, min_backoff=0.01, max_backoff=0.05)
    broken = True
    passes = 0

    async def step() -> None:
        nonlocal passes
        if broken:
            raise ConnectionResetError("database went away")
        passes += 1

    async def attempt(status: TaskStatus) -> None:
        await every(0.01, step, status)

    supervisor.start("loop", attempt)

    async def failing_shown() -> bool:
        return "ConnectionResetError" in supervisor.failing().get("loop", "")

    await eventually(failing_shown, 5, "the failure to be shown")

    async def restarted() -> bool:
        return (registry.get_sample_value("t_background_task_errors_total", {"task": "loop"}) or 0) >= 3

    await eventually(restarted, 5, "the loop to be restarted after each failure")
    broken = False

    async def recovered() -> bool:
        return passes >= 2 and supervisor.failing() == {}

    await eventually(recovered, 5, "the loop to run again and its status to clear")
    await supervisor.stop()
    assert supervisor.failing() == {"loop": "not running"}


async def test_a_task_reports_a_failure_it_handles_itself_and_a_graceful_task_ends_on_its_own() -> None:
    supervisor = Supervisor()
    stop = asyncio.Event()

    async def attempt(status: TaskStatus) -> None:
        status.failing("retrying a batch: OSError")
        await stop.wait()

    supervisor.start("consumer:x", attempt, graceful=True)

    async def shown() -> bool:
        return supervisor.failing() == {"consumer:x": "retrying a batch: OSError"}

    await eventually(shown, 5, "the self-reported failure")
    stop.set()
    await supervisor.stop(grace=5)
    assert supervisor.tasks["consumer:x"].done() and not supervisor.tasks["consumer:x"].cancelled()


async def test_a_background_task_of_the_former_shape_is_supervised_and_restarted_too() -> None:
    starts = 0

    def _former(_ctx: ServiceContext) -> asyncio.Task[None]:
        nonlocal starts
        starts += 1

        async def loop() -> None:
            if starts < 3:
                raise OSError("the database went away")
            await asyncio.Event().wait()

        return asyncio.create_task(loop())

    task = _as_background(_former)
    assert task.name == "former"
    supervisor = Supervisor(min_backoff=0.01, max_backoff=0.02)
    supervisor.start(task.name, partial(task.run, cast(ServiceContext, None)))

    async def restarted() -> bool:
        return starts >= 3

    await eventually(restarted, 5, "the former-shape task to be started again after its failures")
    await supervisor.stop()
