"""CPU time of other processes (PostgreSQL backends, a service's workers), read from Linux ``/proc``:
on a shared machine, CPU per event says what bounds a rate better than the rate itself."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import asyncpg


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children still running (uvicorn's workers under its supervisor)."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
    return cpu_seconds(pid) + sum(tree_cpu_seconds(c) for c in children)


async def backend_pids(admin_dsn: str, schema: str) -> list[int]:
    """The PostgreSQL backends of a service's pool (its application_name is its schema)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        return [r[0] for r in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE application_name = $1", schema)]
    finally:
        await conn.close()
