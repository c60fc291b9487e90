"""Each run's solve in a child process that the service stops at the time limit: the limit an
administrator sets holds on a loaded machine too.

Why a process: the solver's long steps are single calls into native code (OR-Tools' min-cost flows,
the LP, CP-SAT's model building) that hold Python's lock, so a thread can neither be interrupted nor
stopped. Measured on this 2-core machine at load 6-7, a 50,000-mentee run took 155 s of its 120 in a
thread (``docs/matching.md``, "The time limit is wall-clock"). A process can be killed.

What stands when it is: the solver hands each complete grouping it reaches to ``Prepared.stage_done``
(the greedy, the greedy placement, its fit reassigned, the solver's groups, the finished groups); the
child sends each here as a ``Checkpoint``. A run stopped at its limit publishes the newest one built by
``stopped.stopped_result`` (status ``GREEDY``, noted, each person left out told the limit stopped the
run); past half the limit the newest checkpoint is built ahead, while the child works on, so the stop
does not wait for it. A run stopped before its first checkpoint fails with a clear error: nothing is
published.

On a machine with time to spare nothing changes: the child's result is the run's, the same groups for
the same input and seed as ``match`` in-process. The children are forked from a server process that
imported the solver once (``forkserver``, ``warm_up`` at start-up), so a run starts in milliseconds, not
the second the imports take; the service's own threads (Kafka clients, tracing) are never forked.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from runtime.logging import SafeMessage, describe_exception
from services.matching.domain import MatchingInput, MatchingResult, match
from services.matching.domain.common import Checkpoint, Progress, no_progress
from services.matching.domain.stopped import stopped_result

log = logging.getLogger(__name__)


def _preloaded() -> list[str]:
    """What the fork server imports once. Each child also runs the parent's main module again (as
    ``__mp_main__``, multiprocessing's rule); when that is a module (``python -m bench.x``) its imports
    are made here too, so a child does not pay them (0.7 s of the benchmark's 1,000-mentee rows)."""
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    main = getattr(main_spec, "name", None)
    extra = [main] if main and not main.endswith("__main__") else []
    return ["services.matching.domain", "services.matching.adapters.solver_process", *extra]


CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(_preloaded())

STOP_AT_SHARE = 0.9
"""The child is stopped this share of the limit after the run started: the rest (and the issue's 10 %
allowance) builds the result from the last checkpoint and validates it. At 50,000 mentees (120 s) that
took 4.6 s and 1.8 s on this 2-core machine with one other busy process; beside three busy loops, a run
stopped at 97 % of the limit ended at 130.8 s (``bench.probes.hard_limit``), too near 132 s."""
BUILD_AHEAD_SHARE = 0.5
"""Past this share of the limit with no result, the service builds the stopped result of the newest
checkpoint while the child works on (``_Standby``), so that a stop does not wait for it: at 50,000
mentees, beside three busy loops, building and validating it after the stop took 14-30 s."""
POLL_SECONDS = 0.05
"""How often the supervisor looks at the clock and the stop flag while the child is silent."""


class SolverFailed(SafeMessage):
    """The solver raised (the message is ``describe_exception`` of what it raised: never the input), or its
    process ended without a result (e.g. killed for memory)."""


class StoppedEmpty(SafeMessage):
    """The time limit (or the service stopping) ended the run before it reached any grouping."""


@dataclass
class _Watch:
    """What the supervisor has heard from the child so far."""

    last: Checkpoint | None = None
    result: MatchingResult | None = None


def warm_up() -> None:
    """Start the fork server (it imports the solver once) so that the first run does not wait for it."""
    CONTEXT.Process(target=_nothing, daemon=True).start()


ChildMain = Callable[[Connection, str, int], None]
"""What a child runs: the pipe's writing end, the input as JSON, the seed."""


def solve_within_limit(
    inp: MatchingInput,
    seed: int,
    progress: Progress = no_progress,
    stop: threading.Event | None = None,
    *,
    child_main: ChildMain | None = None,
) -> MatchingResult:
    """``match(inp, seed)`` in a child process; at ``STOP_AT_SHARE`` of the policy's time limit the child
    is killed and the last complete grouping it reached stands; when ``stop`` is set (the service
    shutting down) it is killed and nothing stands. Blocks: call it from a worker thread. ``child_main``
    replaces the solver's child (tests: a solver that hangs or dies)."""
    limit = inp.policy.time_limit_seconds
    started = time.monotonic()
    deadline = started + limit * STOP_AT_SHARE
    receiver, sender = CONTEXT.Pipe(duplex=False)
    child = CONTEXT.Process(
        target=child_main or _solve_in_child, args=(sender, inp.model_dump_json(), seed), daemon=True
    )
    child.start()
    sender.close()  # the child holds the only writing end: its exit ends the pipe
    watch = _Watch()
    standby = _Standby(inp, seed, started)
    try:
        _listen(receiver, watch, progress, (started + limit * BUILD_AHEAD_SHARE, deadline), stop, standby)
    finally:
        child.kill()
        child.join()
        receiver.close()
    if watch.result is not None:
        return watch.result
    elapsed = time.monotonic() - started
    if stop is not None and stop.is_set():
        raise StoppedEmpty("the run was stopped before it ended (the service is shutting down)")
    if watch.last is None:
        raise StoppedEmpty(
            f"the time limit of {limit:g} s ran out before the run reached any grouping (the machine is busier "
            "than the limit allows): nothing was published; run again with a longer limit"
        )
    stood, result = standby.result(watch.last)
    log.warning(
        "matching run stopped at its time limit; a complete grouping it reached stands",
        extra={"stage": stood.stage, "elapsed_s": round(elapsed, 3), "limit_s": limit},
    )
    return result


class _Standby:
    """The stopped result of the newest checkpoint, built in a thread of its own while the child works
    on, once the run is late (``BUILD_AHEAD_SHARE``); a run that ends in time never builds one."""

    def __init__(self, inp: MatchingInput, seed: int, started: float) -> None:
        self._inp, self._seed, self._started = inp, seed, started
        self._thread: threading.Thread | None = None
        self._built: tuple[Checkpoint, MatchingResult] | None = None

    def refresh(self, newest: Checkpoint) -> None:
        """Start building ``newest``, unless a build is under way or it is built already."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self._built is not None and self._built[0] is newest:
            return
        self._thread = threading.Thread(target=self._build, args=(newest,), name="matching-standby", daemon=True)
        self._thread.start()

    def _build(self, checkpoint: Checkpoint) -> None:
        elapsed = time.monotonic() - self._started
        result = stopped_result(self._inp, self._seed, checkpoint, self._inp.policy.time_limit_seconds, elapsed)
        self._built = (checkpoint, result)  # one reference assignment: the reader sees the old or the new

    def result(self, last: Checkpoint) -> tuple[Checkpoint, MatchingResult]:
        """The newest standby built (it may be older than ``last``: what is ready at the stop stands);
        else the one under way, awaited; else ``last``, built now."""
        if self._built is None and self._thread is not None:
            self._thread.join()
        if self._built is not None:
            return self._built
        elapsed = time.monotonic() - self._started
        return last, stopped_result(self._inp, self._seed, last, self._inp.policy.time_limit_seconds, elapsed)


def _listen(
    receiver: Connection,
    watch: _Watch,
    progress: Progress,
    clock: tuple[float, float],
    stop: threading.Event | None,
    standby: _Standby,
) -> None:
    """Read the child's messages until its result, its failure, the deadline or ``stop``; past the
    build-ahead point (``clock``: it, then the deadline), keep a standby of the newest checkpoint."""
    build_ahead, deadline = clock
    while watch.result is None:
        if stop is not None and stop.is_set():
            return
        now = time.monotonic()
        if now >= deadline:  # what the child sent before the deadline still counts
            while watch.result is None and receiver.poll(0):
                _take(*_received(receiver), watch, progress)
            return
        if now >= build_ahead and watch.last is not None:
            standby.refresh(watch.last)
        if receiver.poll(POLL_SECONDS):
            _take(*_received(receiver), watch, progress)


def _received(receiver: Connection) -> tuple[str, Any]:
    try:
        kind, payload = receiver.recv()
    except EOFError:
        raise SolverFailed("the solver's process ended without a result (killed, e.g. for memory)") from None
    return kind, payload


def _take(kind: str, payload: Any, watch: _Watch, progress: Progress) -> None:
    if kind == "done":
        watch.result = MatchingResult.model_validate_json(payload)
    elif kind == "checkpoint":
        watch.last = payload
    elif kind == "progress":
        progress(*payload)
    elif kind == "log":
        name, level, message = payload
        logging.getLogger(name).log(level, "%s", message)
    elif kind == "failed":
        raise SolverFailed(payload)


class _ToParent(logging.Handler):
    """The child's log records, sent to the service's logging (the domain logs ids and figures only)."""

    def __init__(self, send: Callable[[tuple[str, Any]], None]) -> None:
        super().__init__(logging.INFO)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        self._send(("log", (record.name, record.levelno, record.getMessage())))


def _solve_in_child(sender: Connection, inp_json: str, seed: int) -> None:
    """The child's whole life: solve, sending progress, checkpoints and the result; never raise."""
    solve_and_send(sender, inp_json, seed, lambda checkpoint: sender.send(("checkpoint", checkpoint)))


def solve_and_send(sender: Connection, inp_json: str, seed: int, on_stage: Callable[[Checkpoint], None]) -> None:
    """``match`` with its progress, log records and result sent to the supervisor (``on_stage`` sends
    the checkpoints; a test's stand-in may hold the child after one)."""
    root = logging.getLogger()
    root.handlers = [_ToParent(sender.send)]
    root.setLevel(logging.INFO)
    try:
        inp = MatchingInput.model_validate_json(inp_json)
        result = match(
            inp,
            seed,
            progress=lambda message, fraction: sender.send(("progress", (message, fraction))),
            on_stage=on_stage,
        )
        sender.send(("done", result.model_dump_json()))
    except Exception as exc:  # the parent records it on the run; the input is never quoted
        sender.send(("failed", describe_exception(exc)))
    finally:
        sender.close()


def _nothing() -> None:
    return None
