"""Children for ``solver_process`` tests that misbehave on purpose: importable by the fork server, so
module level. Each takes what a solver child takes: the pipe's writing end, the input as JSON, the seed."""

from __future__ import annotations

import os
import time
from multiprocessing.connection import Connection

from services.matching.adapters.solver_process import solve_and_send
from services.matching.domain.common import Checkpoint


def hangs_after_first_checkpoint(sender: Connection, inp_json: str, seed: int) -> None:
    """A solver that reaches its first complete grouping, then never ends (a step far slower than the
    limit allows)."""

    def send_then_hang(checkpoint: Checkpoint) -> None:
        sender.send(("checkpoint", checkpoint))
        time.sleep(3600)

    solve_and_send(sender, inp_json, seed, send_then_hang)


def hangs_at_once(sender: Connection, inp_json: str, seed: int) -> None:
    """A solver that reaches no grouping before the limit."""
    time.sleep(3600)


def dies(sender: Connection, inp_json: str, seed: int) -> None:
    """A solver killed from outside (e.g. for memory): no message, the process just ends."""
    os._exit(9)
