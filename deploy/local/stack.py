"""The local stack without Docker: a single-node KRaft Kafka from Maven Central and a PostgreSQL
cluster from Debian's packages, both as local processes on loopback, in the git-ignored ``.stack/``.

Stdlib only, because it runs before the virtualenv exists. ``up`` is idempotent (a running stack is
reused), ``down`` stops only the processes whose pid files we wrote, ``status`` tells what runs.

    python3 -m deploy.local.stack up|down|status|env
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
SERVICES = ("enrollment", "matching", "sessions", "feedback", "metrics")
DATABASE = "mentoring"
# Connect/read timeouts for both Maven transports (Wagon up to 3.8, the resolver's own from 3.9), so an
# unreachable repository fails in seconds instead of the 30-minute default read timeout.
MAVEN_NETWORK_TIMEOUTS = (
    "-Dmaven.wagon.http.retryHandler.count=2",
    "-Dmaven.wagon.rto=60000",
    "-Daether.connector.connectTimeout=15000",
    "-Daether.connector.requestTimeout=60000",
)


class StackError(Exception):
    """A start-up failure with a message that says what to do."""


def say(message: str) -> None:
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie left by a parent that has not reaped it is not running
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


def _cmdline(pid: int) -> list[str]:
    """The process's arguments; empty when unreadable or gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").rstrip("\0").split("\0")


def _runs(pid: int, *expected: str) -> bool:
    """Whether every expected string is one of the process's arguments (or an argument's file name)."""
    args = _cmdline(pid)
    names = set(args) | {Path(a).name for a in args}
    return bool(args) and all(e in names for e in expected)


def _read_pid(path: Path, *expected: str) -> int | None:
    """The live pid in ``path`` if that process's arguments include every string in ``expected``.

    A pid file outlives its process, and the pid may since belong to something else (after a reboot,
    another user's job, another checkout's stack): only a process that is recognisably ours counts.
    """
    try:
        pid = int(path.read_text().strip().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not _alive(pid):
        return None
    if expected and not _runs(pid, *expected):
        say(f"{path} names pid {pid}, which is not ours (no {' '.join(expected)}): leaving it alone")
        return None
    return pid


def terminate(pid: int, grace_seconds: float) -> None:
    """SIGTERM, a grace period to shut down cleanly, then SIGKILL."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def _new_cluster_id() -> str:
    """16 random bytes in URL-safe base64, as Kafka's own ``random-uuid``, and like it never starting
    with ``-``: the storage tool's argument parser takes such an id for an option and refuses to format
    (one fresh clone in 64 failed ``make up`` so)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def kafka_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Send a real ApiVersions v0 request: an open port alone does not mean the broker is serving."""
    request = struct.pack(">hhih", 18, 0, 1, len("stack")) + b"stack"
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(request)) + request)
            header = s.recv(4)
            if len(header) < 4:
                return False
            size = struct.unpack(">i", header)[0]
            body = b""
            while len(body) < size:
                chunk = s.recv(size - len(body))
                if not chunk:
                    return False
                body += chunk
            correlation_id, error_code = struct.unpack(">ih", body[:6])
            return bool(correlation_id == 1 and error_code == 0)
    except OSError:
        return False


@dataclass(frozen=True)
class Endpoints:
    kafka_bootstrap: str
    admin_dsn: str
    service_dsn: dict[str, str]

    def env_lines(self) -> list[str]:
        lines = [f"KAFKA_BOOTSTRAP={self.kafka_bootstrap}", f"PG_DSN_ADMIN={self.admin_dsn}"]
        lines += [f"{name.upper()}_DATABASE_URL={dsn}" for name, dsn in self.service_dsn.items()]
        return lines


class Stack:
    def __init__(self, root: Path = ROOT) -> None:
        self.dir = Path(os.environ.get("STACK_DIR", root / ".stack")).resolve()
        self.host = "127.0.0.1"
        self.kafka_port = int(os.environ.get("STACK_KAFKA_PORT", "19092"))
        self.controller_port = self.kafka_port + 1
        self.pg_port = int(os.environ.get("STACK_PG_PORT", "15432"))
        self.kafka_dir = self.dir / "kafka"
        self.pg_dir = self.dir / "pg"

    # --- public API ---------------------------------------------------------------------------

    def endpoints(self) -> Endpoints:
        base = f"{self.host}:{self.pg_port}/{DATABASE}"
        return Endpoints(
            kafka_bootstrap=f"{self.host}:{self.kafka_port}",
            admin_dsn=f"postgresql://postgres@{base}",
            service_dsn={s: f"postgresql://{s}:{s}_dev@{base}" for s in SERVICES},
        )

    def up(self) -> Endpoints:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._postgres_up()
        self._kafka_up()
        return self.endpoints()

    def down(self) -> None:
        self._kafka_down()
        self._postgres_down()

    def status(self) -> dict[str, str]:
        lines = {}
        pid = self._kafka_pid()
        if pid and kafka_answers(self.host, self.kafka_port):
            startup = (
                (self.kafka_dir / "startup_seconds").read_text().strip()
                if (self.kafka_dir / "startup_seconds").exists()
                else "?"
            )
            rss = _rss_mib(pid)
            lines["kafka"] = (
                f"running pid={pid} addr={self.host}:{self.kafka_port} startup={startup}s "
                f"rss={rss:.0f}MiB data={self.kafka_dir / 'data'}"
            )
        else:
            lines["kafka"] = "stopped"
        pg_pid = self._pg_pid()
        if pg_pid and _port_open(self.host, self.pg_port):
            lines["postgres"] = f"running pid={pg_pid} addr={self.host}:{self.pg_port} data={self.pg_dir / 'data'}"
        else:
            lines["postgres"] = "stopped"
        return lines

    # --- Kafka --------------------------------------------------------------------------------

    def _kafka_pid(self) -> int | None:
        return _read_pid(self.kafka_dir / "kafka.pid", "kafka.Kafka", str(self.kafka_dir / "server.properties"))

    def _kafka_up(self) -> None:
        pid_file = self.kafka_dir / "kafka.pid"
        pid = self._kafka_pid()
        if pid and kafka_answers(self.host, self.kafka_port):
            say(f"kafka already running (pid {pid}) on {self.host}:{self.kafka_port}")
            return
        if pid:  # ours, but not answering: give it the benefit of a short wait, then restart
            if self._wait_kafka(pid, 20):
                return
            self._kafka_down()
        for port in (self.kafka_port, self.controller_port):
            if _port_open(self.host, port):
                raise StackError(f"port {port} is in use by another process; set STACK_KAFKA_PORT to move Kafka")
        if shutil.which("java") is None:
            raise StackError("Java is missing: install a JDK 17 (apt-get install -y openjdk-17-jre-headless)")
        libs = self._resolve_kafka()
        config = self._kafka_config()
        if not (self.kafka_dir / "data" / "meta.properties").exists():
            cluster_id = self._cluster_id()
            say("formatting KRaft storage")
            result = subprocess.run(
                ["java", "-cp", f"{libs}/*", f"-Dlog4j.configuration=file:{self._log4j()}",
                 "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise StackError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
        log = self.kafka_dir / "kafka.log"
        heap = os.environ.get("STACK_KAFKA_HEAP", "-Xms256m -Xmx512m").split()
        say(f"starting kafka on {self.host}:{self.kafka_port}")
        started = time.monotonic()
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["java", *heap, "-XX:+UseG1GC", "-Djava.awt.headless=true",
                 f"-Dlog4j.configuration=file:{self._log4j()}", "-cp", f"{libs}/*", "kafka.Kafka", str(config)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        pid_file.write_text(f"{proc.pid}\n")
        if not self._wait_kafka(proc.pid, float(os.environ.get("STACK_KAFKA_TIMEOUT", "90"))):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise StackError(f"kafka did not answer on {self.host}:{self.kafka_port}; last log lines:\n{tail}")
        seconds = time.monotonic() - started
        (self.kafka_dir / "startup_seconds").write_text(f"{seconds:.1f}\n")
        say(f"kafka up on {self.host}:{self.kafka_port} in {seconds:.1f} s")

    def _wait_kafka(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                return False
            if kafka_answers(self.host, self.kafka_port):
                return True
            time.sleep(0.3)
        return False

    def _resolve_kafka(self) -> Path:
        libs = self.kafka_dir / "libs"
        stamp = self.kafka_dir / "libs.stamp"
        digest = hashlib.sha256(POM.read_bytes()).hexdigest()
        if stamp.exists() and stamp.read_text().strip() == digest and any(libs.glob("kafka_2.13-*.jar")):
            return libs
        if shutil.which("mvn") is None:
            raise StackError("Maven is missing: install it (apt-get install -y maven) to fetch the Kafka jars")
        say("resolving Kafka jars from Maven Central with Maven (first run only)...")
        shutil.rmtree(libs, ignore_errors=True)
        timeout = float(os.environ.get("STACK_MAVEN_TIMEOUT", "600"))
        try:
            result = subprocess.run(
                ["mvn", "-B", "-q", "-f", str(POM), "dependency:copy-dependencies", "-DincludeScope=runtime",
                 f"-DoutputDirectory={libs}", *MAVEN_NETWORK_TIMEOUTS],
                capture_output=True, text=True, check=False, timeout=timeout, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise StackError(
                f"Maven did not resolve the Kafka jars within {timeout:.0f} s: is Maven Central (or your mirror in "
                "~/.m2/settings.xml) reachable? Offline, copy the jars to .stack/kafka/libs once from a machine "
                "that has them, or raise STACK_MAVEN_TIMEOUT."
            ) from exc
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise StackError(f"Maven could not resolve the Kafka jars (offline? no Maven Central?):\n{tail}")
        stamp.write_text(digest + "\n")
        return libs

    def _cluster_id(self) -> str:
        path = self.kafka_dir / "cluster.id"
        if not path.exists() or path.read_text().startswith("-"):
            path.write_text(_new_cluster_id() + "\n")
        return path.read_text().strip()

    def _kafka_config(self) -> Path:
        self.kafka_dir.mkdir(parents=True, exist_ok=True)
        h, p, c = self.host, self.kafka_port, self.controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{h}:{c}",
            "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "advertised.listeners": f"PLAINTEXT://{h}:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.kafka_dir / "data"),
            "num.partitions": "3",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        path = self.kafka_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        return path

    def _log4j(self) -> Path:
        path = self.kafka_dir / "log4j.properties"
        if not path.exists():
            path.write_text(
                "log4j.rootLogger=INFO, stdout\n"
                "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
                "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
                "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
                "log4j.logger.kafka=INFO\nlog4j.logger.org.apache.kafka=INFO\n"
                "log4j.logger.kafka.request.logger=WARN\nlog4j.logger.state.change.logger=WARN\n"
            )
        return path

    def _kafka_down(self) -> None:
        pid_file = self.kafka_dir / "kafka.pid"
        pid = self._kafka_pid()
        if pid is None:
            pid_file.unlink(missing_ok=True)
            say("kafka not running")
            return
        say(f"stopping kafka (pid {pid})")
        terminate(pid, grace_seconds=20)
        pid_file.unlink(missing_ok=True)

    # --- PostgreSQL ---------------------------------------------------------------------------

    def _pg_bin(self) -> Path:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
        if not candidates:
            if os.geteuid() != 0:
                raise StackError("PostgreSQL is missing: install it (sudo apt-get install -y postgresql)")
            say("PostgreSQL is missing: installing it from Debian's packages (apt-get install postgresql)...")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
                result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if result.returncode != 0:
                    raise StackError(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
            candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
            if not candidates:
                raise StackError("apt-get installed postgresql but no server binary was found")
        return candidates[-1].parent

    def _as_pg_user(self, cmd: list[str]) -> list[str]:
        """initdb and postgres refuse to run as root: run them as the 'postgres' system user then."""
        if os.geteuid() != 0:
            return cmd
        if subprocess.run(["id", "-u", "postgres"], capture_output=True, check=False).returncode != 0:
            subprocess.run(["useradd", "--system", "--home", "/var/lib/postgresql", "postgres"], check=True)
        return ["runuser", "-u", "postgres", "--", *cmd]

    def _pg_pid(self) -> int | None:
        data = self.pg_dir / "data"
        return _read_pid(data / "postmaster.pid", "postgres", str(data))

    def _postgres_up(self) -> None:
        data = self.pg_dir / "data"
        if self._pg_pid() and _port_open(self.host, self.pg_port):
            say(f"postgres already running on {self.host}:{self.pg_port}")
            self._create_databases()
            return
        if _port_open(self.host, self.pg_port):
            raise StackError(f"port {self.pg_port} is in use by another process; set STACK_PG_PORT to move PostgreSQL")
        bin_dir = self._pg_bin()
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._as_pg_user(["true"])  # makes sure the user exists
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.pg_dir)], check=True)
            for parent in [self.pg_dir, *self.pg_dir.parents]:  # the server must reach its data folder
                if parent == Path("/"):
                    break
                parent.chmod(parent.stat().st_mode | 0o001)
        if not (data / "PG_VERSION").exists():
            say("initialising a PostgreSQL cluster in .stack/pg/data")
            result = subprocess.run(
                self._as_pg_user([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                  "--encoding=UTF8", "--locale=C"]),
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise StackError(f"initdb failed:\n{result.stdout}{result.stderr}")
        # fsync off: a throw-away local cluster trades crash safety for speed; never do this in production.
        options = (
            f"-p {self.pg_port} -k {self.pg_dir} -c listen_addresses={self.host} -c max_connections=300 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB"
        )
        say(f"starting postgres on {self.host}:{self.pg_port}")
        result = subprocess.run(
            self._as_pg_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(self.pg_dir / "postgres.log"),
                              "-o", options, "-w", "-t", "60", "start"]),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            log = self.pg_dir / "postgres.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""
            raise StackError(f"postgres did not start:\n{result.stdout}{result.stderr}\n{tail}")
        self._create_databases()

    def _psql(self, sql: str, database: str = "postgres") -> str:
        psql = shutil.which("psql") or str(self._pg_bin() / "psql")
        result = subprocess.run(
            [psql, "-h", self.host, "-p", str(self.pg_port), "-U", "postgres", "-d", database, "-v",
             "ON_ERROR_STOP=1", "-qAt", "-c", sql],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"psql failed on {sql!r}: {result.stderr.strip()}")
        return result.stdout.strip()

    def _create_databases(self) -> None:
        if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
            self._psql(f"CREATE DATABASE {DATABASE}")
        statements = []
        for s in SERVICES:
            statements.append(
                f"DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{s}') THEN "
                f"CREATE ROLE {s} LOGIN PASSWORD '{s}_dev'; END IF; END$$;"
            )
            statements.append(f"CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {s};")
            statements.append(f"ALTER ROLE {s} SET search_path = {s};")
        self._psql(" ".join(statements), database=DATABASE)

    def _postgres_down(self) -> None:
        data = self.pg_dir / "data"
        if not self._pg_pid():
            say("postgres not running")
            return
        say("stopping postgres")
        subprocess.run(
            self._as_pg_user([str(self._pg_bin() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True, check=False,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "status"
    stack = Stack()
    try:
        if command == "up":
            stack.up()
            for name, line in stack.status().items():
                say(f"{name}: {line}")
        elif command == "down":
            stack.down()
        elif command == "status":
            lines = stack.status()
            for name, line in lines.items():
                print(f"{name:9} {line}")
            return 0 if all(v.startswith("running") for v in lines.values()) else 3
        elif command == "env":
            for line in stack.endpoints().env_lines():
                print(f"export {line}")
        else:
            print("usage: python3 -m deploy.local.stack up|down|status|env", file=sys.stderr)
            return 2
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
