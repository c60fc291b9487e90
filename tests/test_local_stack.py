"""The local stack launcher: reuse, clear errors, and never signalling a process that is not ours.

Fast: the shared stack is only asked what runs; the other cases use a fresh STACK_DIR in tmp_path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import StackEndpoints
from deploy.local import services
from deploy.local.stack import Stack, StackError, _alive


@pytest.fixture
def fresh_stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STACK_DIR", str(tmp_path / "stack"))
    return tmp_path / "stack"


@pytest.fixture
def bound_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def stranger() -> Iterator[int]:
    """An unrelated live process whose pid ends up in our pid files."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.mark.stack
def test_up_twice_reuses_the_running_processes(stack: StackEndpoints) -> None:
    first = Stack()
    before = (first._kafka_pid(), first._pg_pid())
    assert all(before)
    first.up()
    again = Stack()
    assert (again._kafka_pid(), again._pg_pid()) == before


def test_a_taken_postgres_port_is_a_clear_error(
    fresh_stack_dir: Path, bound_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACK_PG_PORT", str(bound_port))
    with pytest.raises(StackError, match=f"port {bound_port} is in use.*STACK_PG_PORT"):
        Stack().up()


def test_a_taken_kafka_port_is_a_clear_error(
    fresh_stack_dir: Path, bound_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACK_KAFKA_PORT", str(bound_port))
    stack = Stack()
    stack.kafka_dir.mkdir(parents=True)
    with pytest.raises(StackError, match=f"port {bound_port} is in use.*STACK_KAFKA_PORT"):
        stack._kafka_up()


def test_stale_pid_files_naming_an_unrelated_process_are_never_signalled(
    fresh_stack_dir: Path, stranger: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = Stack()
    (stack.pg_dir / "data").mkdir(parents=True)
    stack.kafka_dir.mkdir(parents=True)
    (stack.kafka_dir / "kafka.pid").write_text(f"{stranger}\n")
    (stack.pg_dir / "data" / "postmaster.pid").write_text(f"{stranger}\n{stack.pg_dir / 'data'}\n")
    (fresh_stack_dir / "services").mkdir()
    for name in services.PORTS:
        (fresh_stack_dir / "services" / f"{name}.pid").write_text(f"{stranger}\n")
    with monkeypatch.context() as patch:
        patch.setattr(os, "kill", _refuse_to_signal(stranger))
        assert stack.status() == {"kafka": "stopped", "postgres": "stopped"}
        stack.down()
        services.down()
    assert _alive(stranger)


@pytest.mark.stack
def test_down_leaves_another_checkouts_running_service_and_its_pid_file(
    fresh_stack_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worktree that shares this stack (``STACK_DIR``) and runs ``down`` must not forget the services
    another checkout started: their pid files stay, so that checkout still sees and stops them."""
    elsewhere = tmp_path / "other-checkout"
    elsewhere.mkdir()
    args = ["uvicorn", "services.enrollment.app:app", "--port", str(services.PORTS["enrollment"])]
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *args], cwd=elsewhere)
    try:
        pid_file = fresh_stack_dir / "services" / "enrollment.pid"
        pid_file.parent.mkdir(parents=True)
        pid_file.write_text(f"{proc.pid}\n")
        with monkeypatch.context() as patch:
            patch.setattr(os, "kill", _refuse_to_signal(proc.pid))
            services.down()
        assert _alive(proc.pid)
        assert pid_file.read_text().strip() == str(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def _refuse_to_signal(protected: int):  # type: ignore[no-untyped-def]
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        if pid == protected and sig != 0:
            raise AssertionError(f"signal {sig} sent to an unrelated process {pid}")
        real_kill(pid, sig)

    return kill


def test_maven_gets_a_timeout_and_network_timeouts(fresh_stack_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append({"cmd": cmd, **kwargs})
        raise subprocess.TimeoutExpired(cmd, float(kwargs["timeout"]))  # type: ignore[arg-type]

    monkeypatch.setenv("STACK_MAVEN_TIMEOUT", "7")
    monkeypatch.setattr("deploy.local.stack.shutil.which", lambda _name: "/usr/bin/mvn")
    monkeypatch.setattr("deploy.local.stack.subprocess.run", fake_run)
    with pytest.raises(StackError, match=r"within 7 s.*reachable"):
        Stack()._resolve_kafka()
    (call,) = calls
    assert call["timeout"] == 7.0
    assert "-Daether.connector.connectTimeout=15000" in call["cmd"]  # type: ignore[operator]
    assert "-Dmaven.wagon.rto=60000" in call["cmd"]  # type: ignore[operator]


def test_a_kafka_cluster_id_never_starts_with_a_dash(fresh_stack_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kafka's storage tool takes an id starting with '-' for an option and refuses to format: one fresh
    clone in 64 failed `make up` so. A new id never starts with it, and one left by an older release is
    replaced."""
    draws = iter([b"\xf8" + bytes(15), bytes(16)])  # the first encodes to '-A...'
    monkeypatch.setattr(os, "urandom", lambda n: next(draws))
    stack = Stack()
    stack.kafka_dir.mkdir(parents=True)
    (stack.kafka_dir / "cluster.id").write_text("-4ZjFfK6AzBEU2D1UkiQXg\n")
    assert stack._cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"
    assert stack._cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"  # kept once written
