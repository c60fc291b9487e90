"""On the real stack: a scripted program's events give the KPIs worked out by hand, a redelivery of
every event changes nothing, and a rebuild from offset zero into a fresh schema gives the same numbers."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from conftest import StackEndpoints, unique
from services.metrics.app import MetricsSettings
from services.metrics.cli import NotFresh, rebuild
from services.metrics.tests.conftest import Metrics
from services.metrics.tests.scenario import CADENCE, DAY, T0, Scenario

pytestmark = pytest.mark.stack

AS_OF = T0 + 30 * DAY


def kpi(report: dict[str, Any], key: str) -> dict[str, Any]:
    for s in report["sections"]:
        for k in s["kpis"]:
            if k["key"] == key:
                return k["figure"]  # type: ignore[no-any-return]
        for b in s["breakdowns"]:
            if b["key"] == key:
                return b["cells"]  # type: ignore[no-any-return]
    raise KeyError(key)


async def snapshot(m: Metrics, program_id: str) -> dict[str, Any]:
    out = {}
    for window in ("week", "month", "program_to_date"):
        out[window] = await m.get(f"/programs/{program_id}/kpis", window=window, as_of=AS_OF.isoformat())
    out["fairness"] = await m.get(f"/programs/{program_id}/fairness", as_of=AS_OF.isoformat())
    out["scorecard"] = await m.get(f"/programs/{program_id}/scorecard", as_of=AS_OF.isoformat())
    return out


async def test_scripted_program_kpis_equal_the_hand_computed_values(
    metrics: Metrics, stack: StackEndpoints, scratch_schemas: list[str]
) -> None:
    s = Scenario(unique("kpi")).build()
    await metrics.publish_and_wait(s.events)
    r = await metrics.get(f"/programs/{s.program_id}/kpis", window="program_to_date", as_of=AS_OF.isoformat())

    assert kpi(r, "placed_share")["value"] == pytest.approx(10 / 12)
    assert kpi(r, "time_to_match_median_days")["value"] == 2.0  # six after 2 days, four after 4
    assert kpi(r, "time_to_match_p90_days")["value"] == 4.0  # nearest rank: the 9th of 10
    # loads [2, 2, 2, 2, 1, 1]: pairwise |x_i - x_j| = 16, / (2 * 6^2 * 10/6)
    assert kpi(r, "mentor_load_gini")["value"] == pytest.approx(16 / 120)
    assert kpi(r, "mentor_max_load_ratio")["value"] == pytest.approx(2 / 3)
    # expected: six groups open 28 days, four open 26 days, cadence 14; nine sessions held
    assert kpi(r, "sessions_vs_cadence")["value"] == pytest.approx(9 / ((6 * 28 + 4 * 26) / CADENCE))
    assert kpi(r, "attendance_rate")["value"] == pytest.approx(17 / 18)
    # would_recommend 10 10 9 9 8 7 6 5 10 3 (the first answer's revision 2 replaced its 2): 5 promoters, 3 detractors
    assert kpi(r, "nps")["value"] == pytest.approx(100 * (5 - 3) / 10)
    assert kpi(r, "nps")["n"] == 10
    assert kpi(r, "mean_session_rating")["value"] == pytest.approx(4.0)
    assert kpi(r, "mean_fit")["value"] == pytest.approx(sum(range(1, 11)) / 10)
    assert kpi(r, "overrides")["value"] == 0, "no override recorded"
    unplaced = kpi(r, "unplaced_by_reason")
    assert unplaced["lost_lottery"]["display"] == "< 5" and unplaced["lost_lottery"]["n"] is None
    assert kpi(r, "reschedules")["value"] is None, "one slip in one pair: fewer than 5 people"

    # the week before AS_OF holds no session, no answer: flows are empty, stocks are as at its end
    week = await metrics.get(f"/programs/{s.program_id}/kpis", window="week", as_of=AS_OF.isoformat())
    assert kpi(week, "sessions_held")["value"] == 0 and kpi(week, "sessions_held")["n"] == 0
    assert kpi(week, "placed_share")["value"] == pytest.approx(10 / 12)

    # the organisation and the program's form contain the program (other tests' programs may be there too)
    for path in ("/kpis", "/forms/one_to_one/kpis"):
        wider = await metrics.get(path, window="program_to_date", as_of=AS_OF.isoformat())
        assert kpi(wider, "active_participants")["value"] >= 18

    before = await snapshot(metrics, s.program_id)

    # redelivery of every event (same ids) changes nothing
    await metrics.publish(s.events)
    tail = Scenario(unique("kpi-marker")).build().events[:1]
    await metrics.publish_and_wait(tail)  # same partitions' order: the redelivered ones were consumed first
    assert await snapshot(metrics, s.program_id) == before

    # a rebuild from offset zero into a fresh schema yields the same numbers
    fresh = unique("metrics_rebuild")
    scratch_schemas.append(fresh)
    settings = MetricsSettings(database_url=stack.admin_dsn, kafka_bootstrap=stack.kafka_bootstrap, db_schema=fresh)
    result = await rebuild(settings, timeout=600)
    assert result.events >= len(s.events)
    assert await metrics.applied(s.events, schema=fresh) == len(s.events)
    rebuilt = await _snapshot_of_schema(metrics, stack, fresh, s.program_id)
    assert rebuilt == before
    with pytest.raises(NotFresh):
        await rebuild(settings, timeout=60)


async def _snapshot_of_schema(m: Metrics, stack: StackEndpoints, schema: str, program_id: str) -> dict[str, Any]:
    """The same reads through a second service instance pointed at the rebuilt schema."""
    from contextlib import AsyncExitStack

    import httpx

    from services.metrics.app import create

    settings = MetricsSettings(
        database_url=stack.admin_dsn,
        kafka_bootstrap=stack.kafka_bootstrap,
        db_schema=schema,
        log_level="WARNING",
        evaluate_every_seconds=3600,
    )
    app = create(settings, clock=m.clock)
    async with AsyncExitStack() as s:
        await s.enter_async_context(app.router.lifespan_context(app))
        http = await s.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rebuilt", timeout=60)
        )
        other = Metrics(
            http, app, m.admin, m.integration, m.participant, schema, m.dsn, m.bootstrap, m.clock, m.producer
        )
        return await snapshot(other, program_id)


async def test_suppressed_cells_cannot_be_recovered_in_api_and_csv(metrics: Metrics) -> None:
    s = Scenario(unique("supp")).build()
    await metrics.publish_and_wait(s.events)
    fairness = await metrics.get(f"/programs/{s.program_id}/fairness", as_of=AS_OF.isoformat())
    dept = next(d for d in fairness["dimensions"] if d["dimension"] == "department")
    # Eng 6, Ops 5, HR 1: HR is hidden, and Ops with it, or 12 - 6 - 5 would give HR away
    assert dept["cells"]["Eng"]["people"] == {"value": 6.0, "n": 6, "suppressed": False, "display": "6"}
    for cell in ("HR", "Ops"):
        people = dept["cells"][cell]["people"]
        assert people == {"value": None, "n": None, "suppressed": True, "display": "< 5"}
        assert all(f["suppressed"] and f["value"] is None for f in dept["cells"][cell]["measures"].values())
    assert dept["gaps"]["match_rate"]["value"] is None, "one visible cell: no gap that could reveal a hidden one"

    r = await metrics.http.get(
        "/kpis.csv",
        params={"program_id": s.program_id, "window": "program_to_date", "as_of": AS_OF.isoformat()},
        headers=metrics.integration,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    by = {(x["section"], x["kpi"], x["cell"], x["measure"]): x for x in rows}
    for cell in ("HR", "Ops"):
        assert by[("fairness", "department", cell, "people")]["value"] == "< 5"
        assert by[("fairness", "department", cell, "people")]["people"] == ""
    assert by[("fairness", "department", "Eng", "people")]["value"] == "6"
    assert by[("matching", "placed_share", "", "")]["people"] == "12"
    people_ids = (s.pid("m"), s.pid("M"))  # every participant id of the scenario starts with one of these
    assert not any(p in r.text for p in people_ids), "no participant id in the CSV"
    exposition = (await metrics.http.get("/metrics")).text
    assert not any(p in exposition for p in people_ids), "nor in the Prometheus metrics"


async def test_access_and_errors(metrics: Metrics) -> None:
    assert (await metrics.http.get("/kpis")).status_code == 401
    assert (await metrics.http.get("/kpis", headers=metrics.participant)).status_code == 403
    assert (await metrics.http.get("/kpis", headers=metrics.integration)).status_code == 200
    put = await metrics.http.put("/programs/p1/thresholds", json={"fade_factor": 2}, headers=metrics.integration)
    assert put.status_code == 403, "integration is read-only"
    r = await metrics.http.get("/programs/nope/kpis", headers=metrics.admin)
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["path", "program_id"]
    r = await metrics.http.get("/kpis", params={"window": "year"}, headers=metrics.admin)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "window"]
    r = await metrics.http.put("/programs/p1/thresholds", json={"fade_factor": 2}, headers=metrics.admin)
    assert r.status_code == 200
    got = (await metrics.http.get("/programs/p1/thresholds", headers=metrics.integration)).json()
    assert got["fade_factor"] == 2 and got["reschedules"] == 3, "what is not named keeps its default"
    r = await metrics.http.put("/programs/p1/thresholds", json={"fade_factor": -1}, headers=metrics.admin)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "fade_factor"]
