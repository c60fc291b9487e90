"""Deployment files stay in step with the code (no Docker engine or helm binary here to run them)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from deploy.local.services import PORTS, available

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "mentoring"


def test_compose_runs_kafka_postgres_and_every_built_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:3.9")
    assert services["postgres"]["image"].startswith("postgres:")
    for name in available():
        svc = services[name]
        env = svc["environment"]
        prefix = name.upper()
        assert env[f"{prefix}_DATABASE_URL"].startswith(f"postgresql://{name}:")
        assert env[f"{prefix}_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert f"services.{name}.app:app" in svc["command"]
        assert svc["ports"] == [f"127.0.0.1:{PORTS[name]}:8080"]
        assert "healthcheck" in svc


def test_postgres_init_creates_the_roles_the_local_stack_creates() -> None:
    sql = (ROOT / "deploy" / "docker" / "init.sql").read_text()
    for name in PORTS:
        assert f"CREATE SCHEMA {name} AUTHORIZATION {name};" in sql


def test_helm_values_enable_every_built_service_with_resources() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for name in available():
        svc = values["services"][name]
        assert svc["enabled"] and svc["resources"]["requests"]
        assert svc["replicas"] <= 6, "more consumers than partitions would sit idle"


def test_helm_templates_are_balanced() -> None:
    for path in (CHART / "templates").glob("*"):
        text = path.read_text()
        assert text.count("{{") == text.count("}}"), path
        opened = len(re.findall(r"{{-?\s*(?:if|range|define|with)\b", text))
        closed = len(re.findall(r"{{-?\s*end\b", text))
        assert opened == closed, f"{path.name}: {opened} blocks opened, {closed} closed"
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    assert "/health/live" in deployment and "/health/ready" in deployment
    assert "secretKeyRef" in deployment and "app.kubernetes.io" in (CHART / "templates" / "_helpers.tpl").read_text()
