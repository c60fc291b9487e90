"""Starts the platform's services as local processes against the local stack (``up``/``down``/``status``).

Each service is ``uvicorn services.<name>.app:app`` with its settings from environment variables,
its log in ``.stack/services/<name>.log`` and its pid in ``.stack/services/<name>.pid``. ``up`` reuses
a service that already answers ``/health/ready``; ``down`` stops only what it started.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from deploy.local.stack import ROOT, Stack, _read_pid, say, terminate

PORTS = {"enrollment": 18081, "matching": 18082, "sessions": 18083, "feedback": 18084, "metrics": 18085}


def available() -> list[str]:
    """The services whose code exists in this checkout (the platform grows one service at a time)."""
    return [name for name in PORTS if importlib.util.find_spec(f"services.{name}.app") is not None]


def _running_pid(pid_file: Path, name: str) -> int | None:
    """The pid in ``pid_file`` if it is a live uvicorn of ``name``, whichever checkout started it."""
    return _read_pid(pid_file, "uvicorn", f"services.{name}.app:app", str(PORTS[name]))


def _service_pid(pid_file: Path, name: str) -> int | None:
    """The pid in ``pid_file`` if it is this checkout's uvicorn of ``name``; never a stranger's process."""
    pid = _running_pid(pid_file, name)
    if pid is None:
        return None
    try:
        cwd = Path(f"/proc/{pid}/cwd").resolve()
    except OSError:
        return None
    if cwd != ROOT:
        say(f"{pid_file} names pid {pid}, a {name} of another checkout ({cwd}): leaving it alone")
        return None
    return pid


def _log_config(folder: Path, name: str) -> Path:
    """uvicorn's own lines (start-up, errors) as JSON too, from the first line, with no exception text."""
    from runtime.logging import uvicorn_log_config

    path = folder / f"{name}.log-config.json"
    path.write_text(json.dumps(uvicorn_log_config(name), indent=1))
    return path


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def up(names: list[str] | None = None, timeout: float = 60) -> dict[str, str]:
    stack = Stack()
    endpoints = stack.up()
    folder = stack.dir / "services"
    folder.mkdir(parents=True, exist_ok=True)
    urls = {}
    for name in names or available():
        port = PORTS[name]
        urls[name] = f"http://127.0.0.1:{port}"
        pid_file = folder / f"{name}.pid"
        if _service_pid(pid_file, name) and _ready(port):
            say(f"{name} already running on :{port}")
            continue
        prefix = name.upper()
        env = {
            **os.environ,
            f"{prefix}_DATABASE_URL": endpoints.service_dsn[name],
            f"{prefix}_KAFKA_BOOTSTRAP": endpoints.kafka_bootstrap,
            f"{prefix}_HTTP_PORT": str(port),
        }
        with (folder / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", f"services.{name}.app:app", "--host", "127.0.0.1",
                 "--port", str(port), "--no-access-log", "--log-config", str(_log_config(folder, name))],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout
        while not _ready(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join((folder / f"{name}.log").read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"{name} did not become ready on :{port}; last log lines:\n{tail}")
            time.sleep(0.3)
        say(f"{name} ready on :{port}")
    return urls


def down() -> None:
    """Stops this checkout's services. A pid file that names another checkout's running service (a
    worktree sharing this stack through ``STACK_DIR``) is left in place: removing it orphaned that
    checkout's services, which then ran on, unseen by its ``status`` and ``down``."""
    folder = Stack().dir / "services"
    for name in PORTS:
        pid_file = folder / f"{name}.pid"
        pid = _service_pid(pid_file, name)
        if pid:
            terminate(pid, grace_seconds=15)
            say(f"{name} stopped")
        elif _running_pid(pid_file, name) is not None:
            continue  # running, but another checkout's
        pid_file.unlink(missing_ok=True)


def main() -> int:
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "up":
        for name, url in up().items():
            print(f"{name:11} {url}  (OpenAPI: {url}/docs)")
    elif command == "down":
        down()
    elif command == "status":
        folder = Stack().dir / "services"
        for name in available():
            pid = _service_pid(folder / f"{name}.pid", name)
            state = "ready" if pid and _ready(PORTS[name]) else "stopped"
            print(f"{name:11} {state} :{PORTS[name]}")
    else:
        print("usage: python -m deploy.local.services up|down|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
