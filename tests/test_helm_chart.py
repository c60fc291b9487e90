"""The Helm chart as operations meet it: it lints, it refuses to render without credentials (there is no
default secret), and what it renders is valid Kubernetes (checked against the Kubernetes API schemas)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy.tools import ensure

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "mentoring"
KUBERNETES_VERSION = "1.30.0"
SERVICES = ("enrollment", "matching", "sessions", "feedback", "metrics")


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure("helm")


def _credentials() -> list[str]:
    values = ["secrets.jwtSecret=test-jwt-secret-0123456789", "encryptionKeyId=k1",
              "secrets.encryptionKeys=k1:" + "A" * 43 + "="]  # fmt: skip
    values += [f"secrets.passwords.{name}={name}-password" for name in SERVICES]
    return [arg for value in values for arg in ("--set", value)]


def _helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, check=False, timeout=120)


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def test_the_chart_lints(helm: Path) -> None:
    result = _helm(helm, "lint", "--strict", str(CHART), *_credentials())
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_a_jwt_secret_the_chart_does_not_render(helm: Path) -> None:
    result = _helm(helm, "template", "m", str(CHART))
    assert result.returncode != 0
    assert "secrets.jwtSecret is required" in result.stderr


def test_an_existing_secret_replaces_the_charts_own(helm: Path) -> None:
    settings = ("--set", "existingSecret=ops-managed", "--set", "encryptionKeyId=k1")
    result = _helm(helm, "template", "m", str(CHART), *settings)
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in _documents(result.stdout)]
    assert "Secret" not in kinds
    assert "ops-managed" in result.stdout


def test_what_the_chart_renders_is_valid_kubernetes(helm: Path) -> None:
    result = _helm(helm, "template", "m", str(CHART), *_credentials())
    assert result.returncode == 0, result.stderr
    documents = _documents(result.stdout)
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "ConfigMap", "Secret"} <= kinds
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    for deployment in (d for d in documents if d["kind"] == "Deployment"):
        labels = deployment["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "mentoring" and labels["app.kubernetes.io/name"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["resources"]["requests"], deployment["metadata"]["name"]
