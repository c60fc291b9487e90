"""The alert rules and the Grafana dashboard as operations load them: ``promtool`` accepts the rules,
their unit tests pass (each alert fires on its trouble and stays quiet otherwise), and neither the rules
nor the dashboard name a metric that no service exposes (an alert on a misspelt name never fires).

``promtool`` is built from its Go module into the git-ignored ``.tools/bin`` (``python -m deploy.tools``),
once per machine, like ``helm`` for the chart's test."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conftest import StackEndpoints, eventually, unique
from contracts.topics import ENROLLMENT, SESSIONS
from deploy.tools import ensure
from services.matching.app import MatchingSettings
from services.matching.app import create as create_matching

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "mentoring-operations.json"
SERVICES = ("enrollment", "matching", "sessions", "feedback", "metrics")

_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
}


@pytest.fixture(scope="module")
def promtool() -> Path:
    return ensure("promtool", timeout=3600)  # the first build on a busy 2-core machine takes a while


def _promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, check=False, timeout=120)


def test_promtool_accepts_the_rules(promtool: Path) -> None:
    result = _promtool(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_each_alert_fires_on_its_trouble_and_not_otherwise(promtool: Path) -> None:
    result = _promtool(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_a_severity_and_a_runbook() -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    for rule in rules:
        assert rule["alert"] in tested, f"{rule['alert']} has no unit test in {RULE_TESTS.name}"
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["runbook"].strip(), rule["alert"]


# What the services expose ------------------------------------------------------------------------------


def _sample_names(registry: CollectorRegistry) -> Iterator[str]:
    """The series names a scrape shows, including those of labelled metrics with no child yet."""
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            yield family.name + suffix


@pytest.fixture(scope="module")
def exposed() -> dict[str, set[str]]:
    """Each service's series names, from the very app it runs (built in-process: its registry is filled
    when the app is created; nothing connects until the app starts)."""
    names: dict[str, set[str]] = {}
    for service in SERVICES:
        app_module: Any = importlib.import_module(f"services.{service}.app")
        settings = app_module.settings_class()(database_url="postgresql://nobody@127.0.0.1:1/none")
        app = app_module.create(settings)
        names[service] = set(_sample_names(app.state.metrics.registry))
    return names


# What the rules and the dashboard reference -----------------------------------------------------------

_KEYWORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_NAME_REGEX = re.compile(r'__name__\s*=~\s*"([^"]*)"')
_ALTERNATION = re.compile(r"^\(([a-z|]+)\)(_[a-z_]+)$")


def _bare_metric_names(expr: str) -> set[str]:
    """Metric names written as such in a PromQL expression: what is left once strings, label matchers,
    ranges, grouping clauses and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text):
        name = match.group(1)
        if name not in _KEYWORDS and not name.startswith("__"):
            names.add(name)
    return names


def _names_by_regex(expr: str) -> set[str]:
    """``{__name__=~"(enrollment|matching)_ready"}`` → enrollment_ready, matching_ready."""
    names: set[str] = set()
    for pattern in _NAME_REGEX.findall(expr):
        parts = _ALTERNATION.match(pattern)
        assert parts is not None, f"write a metric-name regex as (service|service)_suffix: {pattern}"
        services, suffix = parts.groups()
        assert set(services.split("|")) == set(SERVICES), f"{pattern} should cover every service"
        names.update(f"{service}{suffix}" for service in services.split("|"))
    return names


def _rule_exprs() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _dashboard_exprs() -> Iterator[str]:
    """Every panel query, once per value of the ``service`` variable."""
    dashboard = _dashboard()
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "service"]
    services = [option["value"] for option in variable["options"]]
    assert sorted(services) == sorted(SERVICES)
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for service in services if "${service}" in target["expr"] else [None]:
                yield target["expr"].replace("${service}", service) if service else target["expr"]


def _referenced(exprs: Iterator[str] | list[str]) -> set[str]:
    names: set[str] = set()
    for expr in exprs:
        names |= _bare_metric_names(expr) | _names_by_regex(expr)
    return names


def test_the_reference_extraction_reads_promql_as_intended() -> None:
    expr = (
        'sum by (job, route) (rate({__name__=~"(enrollment|matching|sessions|feedback|metrics)_http_requests_total",'
        ' status=~"5.."}[5m])) / on (job) histogram_quantile(0.99, sum by (le) (rate(matching_x_bucket{a="b"}[1h])))'
        " and absent(metrics_ready)"
    )
    assert _bare_metric_names(expr) == {"matching_x_bucket", "metrics_ready"}
    assert _names_by_regex(expr) == {f"{s}_http_requests_total" for s in SERVICES}


def test_the_rules_name_only_metrics_the_services_expose(exposed: dict[str, set[str]]) -> None:
    everything = set().union(*exposed.values())
    unknown = _referenced(_rule_exprs()) - everything
    assert not unknown, f"alerts.yml names metrics no service exposes: {sorted(unknown)}"


def test_the_dashboard_names_only_metrics_the_services_expose(exposed: dict[str, set[str]]) -> None:
    everything = set().union(*exposed.values())
    unknown = _referenced(list(_dashboard_exprs())) - everything
    assert not unknown, f"the dashboard names metrics no service exposes: {sorted(unknown)}"


def test_the_dashboard_shows_every_metric_a_service_exposes(exposed: dict[str, set[str]]) -> None:
    """A metric added to the runtime or to matching gets a panel (histograms: any of their series)."""
    shown = _referenced(list(_dashboard_exprs()))
    for service, names in exposed.items():
        families = {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}
        missing = {f for f in families if not any(n == f or n.startswith(f"{f}_") for n in shown)}
        assert not missing, f"no panel shows {sorted(missing)} of {service}"


def test_the_dashboard_is_importable_grafana_json() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}" and target["refId"]


@pytest.mark.stack
async def test_a_running_service_exposes_every_series_the_dashboard_shows_for_it(
    stack: StackEndpoints, scratch_schemas: list[str], exposed: dict[str, set[str]]
) -> None:
    """The in-process registries are what a live scrape shows: matching, started on the real stack,
    serves every metric family the checks above rely on, and its consumer's lag per partition."""
    schema = unique("matching_prom")
    scratch_schemas.append(schema)
    settings = MatchingSettings(
        database_url=stack.admin_dsn, kafka_bootstrap=stack.kafka_bootstrap, db_schema=schema,
        consumer_offset_reset="latest", log_level="WARNING",
    )  # fmt: skip
    app = create_matching(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://m") as client:

        async def scrape() -> dict[str, list[Any]]:
            text = (await client.get("/metrics")).text
            return {f.name: f.samples for f in text_string_to_metric_families(text)}

        async def lag_per_partition() -> bool:
            lag = (await scrape()).get("matching_consumer_lag_events", [])
            return {s.labels["topic"] for s in lag} == {ENROLLMENT.name, SESSIONS.name}

        await eventually(lag_per_partition, 60, "matching's consumer lag for both of its topics")
        families = await scrape()
        series = {s.name for samples in families.values() for s in samples} | set(families)
        for name in exposed["matching"]:
            family = re.sub(r"_(bucket|count|sum|total)$", "", name)
            assert name in series or family in families, f"{name} is not in matching's live /metrics"
        assert families["matching_ready"][0].value == 1
        lag = families["matching_consumer_lag_events"]
        assert len(lag) == ENROLLMENT.partitions + SESSIONS.partitions
        assert all(s.labels["consumer"] == f"{schema}-pools" and s.value >= 0 for s in lag)
