"""An outside reader generates a typed Python client from each published OpenAPI document, and it type-checks.

``openapi-python-client`` (pinned in the dev extras) writes one package per service into a temporary folder,
with ``--fail-on-warning``: a response without a schema, an unsupported construct or a dangling ``$ref``
fails here, not in an integration team's build. The packages are then checked together with ``mypy --strict``.
Three allowances are the generator's (0.29.1) limits, not the documents', and are stated here:

- an upload's body is offered as JSON rows or as CSV text; the generator types a body offered in two media
  types wrongly (``isinstance(body, list[OrgPerson])``, an undefined ``Unset``), so the client is generated
  from a copy of the document in which such a body keeps its JSON form only (every other byte is the same);
- its fixed ``client.py`` template forwards ``__exit__(*args: object)`` to httpx, which ``--strict`` refuses
  as ``arg-type``: that one code is switched off for the ``client`` modules only;
- ``ignore_missing_imports``: the generated code imports ``dateutil``, whose stubs (``types-python-dateutil``)
  an integration team adds to its own build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.openapi import OUT, SERVICES

GENERATOR_CONFIG = "package_name_override: {name}_client\n"
MYPY_CONFIG = f"""[mypy]
strict = True
ignore_missing_imports = True

[mypy-{",".join(f"{name}_client.client" for name in SERVICES)}]
disable_error_code = arg-type
"""


def json_bodies_only(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with every request body that offers JSON reduced to its JSON form (see the docstring)."""
    for operations in doc["paths"].values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content and len(content) > 1:
                operation["requestBody"]["content"] = {"application/json": content["application/json"]}
    return doc


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)  # the generator formats its output with the venv's ruff
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clients")
    for name in SERVICES:
        config = root / f"{name}.yaml"
        config.write_text(GENERATOR_CONFIG.format(name=name))
        document = root / f"{name}.json"
        document.write_text(json.dumps(json_bodies_only(json.loads((OUT / f"{name}.json").read_text()))))
        generator = [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(document)]
        options = ["--meta", "none", "--config", str(config), "--output-path", str(root / f"{name}_client")]
        result = _run([*generator, *options, "--fail-on-warning"], cwd=root)
        assert result.returncode == 0, f"{name}: the generator warned or failed:\n{result.stdout}\n{result.stderr}"
    (root / "mypy.ini").write_text(MYPY_CONFIG)
    return root


def test_a_client_is_generated_for_every_service_with_typed_responses(clients: Path) -> None:
    for name in SERVICES:
        package = clients / f"{name}_client"
        assert (package / "client.py").exists(), f"no client for {name}"
        models = {p.stem for p in (package / "models").glob("*.py")}
        assert "error_out" in models, f"{name}: the one error shape is not a model of the client"
    matching = clients / "matching_client"
    run_matching = (matching / "api" / "runs" / "run_matching_programs_program_id_runs_post.py").read_text()
    assert "RunOut" in run_matching and "ErrorOut" in run_matching, "a run's 200/202 and errors are typed"


def test_the_generated_clients_type_check_strictly(clients: Path) -> None:
    packages = [f"{name}_client" for name in SERVICES]
    args = [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--no-incremental", *packages]
    result = _run(args, cwd=clients)
    assert result.returncode == 0, f"mypy --strict on the generated clients:\n{result.stdout}\n{result.stderr}"
