"""Supervised background tasks: a long-running loop that fails is restarted, counted and shown.

Why: a loop started with ``asyncio.create_task`` and no error handling dies on its first database error
and nobody notices; whatever it kept doing (publishing the outbox, consuming, failing orphaned runs)
silently stops until the next restart. Here every long-running task of a service runs under a
:class:`Supervisor`:

- an exception ends one *attempt*, never the task: it is logged (type and frames, never content),
  counted in ``<service>_background_task_errors_total{task}``, and the task starts again after a
  capped exponential back-off (``min_backoff`` doubling up to ``max_backoff``);
- while a task is failing its :class:`TaskStatus` carries the reason, and ``/health/ready`` answers 503
  naming the task and the reason; a task may also report a failure it handles itself (the consumer
  retrying an unreachable database) through the same status, without raising. A failure that began
  within an outage the readiness probes saw end is shown as recovering instead, until the task's next
  attempt (:mod:`runtime.health`), so readiness does not wait for a back-off after the outage;
- a task that returns has finished its work on purpose (it was stopped) and is not restarted; one that
  is cancelled from outside is shown as not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import Counter

from runtime.logging import describe_exception

log = logging.getLogger(__name__)


@dataclass
class TaskStatus:
    """What readiness reports of one task: running or not, and why it is failing, if it is."""

    name: str
    reason: str | None = None
    since: float | None = None
    running: bool = False
    errors: int = 0
    last_failure_at: float | None = None
    """``time.monotonic()`` of the latest failure reported; with ``since`` (when the current failure
    began) it lets readiness tell a task waiting out an outage that has ended (:mod:`runtime.health`)."""

    def failing(self, reason: str) -> None:
        """The task cannot do its work right now (it keeps trying): readiness names it with ``reason``."""
        now = time.monotonic()
        if self.reason is None:
            self.since = now
        self.reason = reason
        self.last_failure_at = now

    def ok(self) -> None:
        self.reason = None
        self.since = None

    @property
    def healthy(self) -> bool:
        return self.running and self.reason is None


Attempt = Callable[[TaskStatus], Awaitable[None]]


@dataclass
class Supervisor:
    """Runs named tasks, restarting each after an error with a capped back-off."""

    errors: Counter | None = None
    min_backoff: float = 0.5
    max_backoff: float = 30.0
    statuses: dict[str, TaskStatus] = field(default_factory=dict)
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _graceful: set[str] = field(default_factory=set)

    def start(self, name: str, attempt: Attempt, *, graceful: bool = False) -> asyncio.Task[None]:
        """Supervise ``attempt``; ``graceful`` tasks end by themselves once asked (a stop flag), and
        :meth:`stop` waits for them a little before cancelling; the others are cancelled at once."""
        if name in self.tasks:
            raise ValueError(f"a background task named {name!r} is already supervised")
        status = TaskStatus(name)
        self.statuses[name] = status
        task = asyncio.create_task(self._supervise(status, attempt), name=name)
        self.tasks[name] = task
        if graceful:
            self._graceful.add(name)
        return task

    async def _supervise(self, status: TaskStatus, attempt: Attempt) -> None:
        backoff = self.min_backoff
        status.running = True
        try:
            while True:
                started = time.monotonic()
                try:
                    await attempt(status)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    status.errors += 1
                    status.failing(f"{describe_exception(exc)[:300]}")
                    if self.errors is not None:
                        self.errors.labels(status.name).inc()
                    if time.monotonic() - started > 4 * self.max_backoff:
                        backoff = self.min_backoff  # it had been running fine for a while: a fresh fault
                    log.error(
                        "background task failed; restarting after a back-off",
                        exc_info=exc,
                        extra={"task": status.name, "retry_in_seconds": round(backoff, 2)},
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
        finally:
            status.running = False

    def failing(self) -> dict[str, str]:
        """Every task that is not healthy, with why: a reason, or that it is not running."""
        out: dict[str, str] = {}
        for name, status in self.statuses.items():
            if not status.running:
                out[name] = "not running"
            elif status.reason is not None:
                out[name] = status.reason
        return out

    async def stop(self, grace: float = 10.0) -> None:
        """Cancel the others, give the graceful ones (already asked to stop) ``grace`` seconds, then
        cancel whatever still runs. Cancelling mid-work is safe: nothing is committed half-way."""
        for name, task in self.tasks.items():
            if name not in self._graceful:
                task.cancel()
        graceful = [t for n, t in self.tasks.items() if n in self._graceful and not t.done()]
        if graceful:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(asyncio.gather(*graceful, return_exceptions=True)), grace)
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


async def every(seconds: float, step: Callable[[], Awaitable[None]], status: TaskStatus) -> None:
    """Call ``step`` every ``seconds`` for ever; a successful step clears the status, a failing one
    raises to the supervisor (which counts it, shows it and starts again after its back-off)."""
    while True:
        await step()
        status.ok()
        await asyncio.sleep(seconds)
