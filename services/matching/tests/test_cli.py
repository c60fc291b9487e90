"""The offline rehearsal an administrator runs on an export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.matching.cli import main

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "matching_input.json"


def test_cli_matches_the_documented_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    assert main(["match", str(EXAMPLE), "--seed", "7", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["seed"] == 7
    assert result["stats"]["placed_count"] == 3
    assert all(g["explanation"] for g in result["groups"])
    assert "placed 3" in capsys.readouterr().err


def test_cli_rejects_a_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"program_id": "p"}')
    assert main(["match", str(bad)]) == 2
