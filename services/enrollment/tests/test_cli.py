"""The bulk-enrolment CLI against a real enrollment server (HTTP over loopback, real database)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from bench.synthetic_org import enrolments, org_chart, to_csv
from conftest import StackEndpoints, unique
from services.enrollment.app import EnrollmentSettings, create
from services.enrollment.cli import _dev_token, main

pytestmark = pytest.mark.stack
ORG = ["employee_id", "manager_id", "department", "level", "location", "utc_offset_minutes", "languages"]
ENROL = ["participant_id", "role", "skills_offered", "skills_sought", "goals", "capacity"]


@pytest.fixture
def server(stack: StackEndpoints, scratch_schemas: list[str]) -> Iterator[str]:
    schema = unique("enrollment_cli")
    scratch_schemas.append(schema)
    settings = EnrollmentSettings(
        database_url=stack.admin_dsn, db_schema=schema, kafka_bootstrap=stack.kafka_bootstrap, log_level="WARNING",
        consumer_offset_reset="latest",  # the shared topics' history (other tests' groups) is not this test's
    )  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create(settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(15)


def test_cli_imports_and_enrols_with_progress_and_rejects_bad_files(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    people = org_chart(300, seed=9)
    org = tmp_path / "org.csv"
    org.write_text(to_csv([p.row() for p in people], ORG))
    assert main(["--url", server, "org-chart", str(org)]) == 0
    assert json.loads(capsys.readouterr().out)["imported"] == 300

    token = _dev_token()
    r = httpx.post(
        f"{server}/programs",
        json={"name": "cli", "form": "one_to_one", "starts_on": "2026-01-01"},
        headers={"Authorization": f"Bearer {token}"},
    )
    pid = r.json()["program_id"]

    rows = enrolments(people, 200, seed=2)
    good = tmp_path / "enrol.csv"
    good.write_text(to_csv(rows, ENROL))
    assert main(["--url", server, "enrol", pid, str(good)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == {"enrolled": 200}
    assert "uploading" in out.err and "checked" in out.err

    bad = tmp_path / "bad.csv"
    bad.write_text("participant_id,role,capacity\nE000001,mentor,lots\n")
    assert main(["--url", server, "enrol", pid, str(bad)]) == 1
    assert "row 2: capacity" in capsys.readouterr().err


def test_cli_prints_the_servers_row_errors(server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "org.csv"
    bad.write_text("employee_id,manager_id,department,level\nA,,HR,9\nB,Z,HR,5\n")
    assert main(["--url", server, "org-chart", str(bad)]) == 1
    assert "row 3: manager_id: unknown manager_id Z" in capsys.readouterr().err
