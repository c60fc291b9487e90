"""On the real stack, with the service's own scheduled evaluation and a clock the test moves: a
relationship that stops meeting raises one alert (on Kafka, through the outbox), which clears when it
meets again; the risk score's parts add up to it."""

from __future__ import annotations

from datetime import datetime

import pytest

from conftest import TopicTail, eventually, unique
from contracts.envelope import from_kafka
from contracts.events import AlertClearedV2, AlertRaisedV2
from contracts.timestamps import rfc3339
from contracts.topics import ALERTS
from services.metrics.tests.conftest import Metrics
from services.metrics.tests.scenario import DAY, T0, Scenario

pytestmark = pytest.mark.stack


async def test_a_relationship_that_stops_meeting_raises_one_alert_cleared_when_it_meets(metrics: Metrics) -> None:
    s = Scenario(unique("fade")).build()
    async with TopicTail(metrics.bootstrap, ALERTS.name) as tail:
        await metrics.publish_and_wait(s.events)  # the clock stands at T0: nobody is matched yet, nothing fires
        metrics.clock.now = T0 + 30 * DAY  # the last pair was matched 26 days ago and never met (cadence 14)

        mine = lambda rec: rec.key == s.program_id.encode()  # noqa: E731
        records = await tail.collect(mine, count=1, timeout=30)
        raised = [from_kafka(r.headers, r.value).data for r in records]
        assert len(raised) == 1, "raised once, although the evaluation ran many times meanwhile"
        alert = raised[0]
        assert isinstance(alert, AlertRaisedV2)
        assert alert.kind.value == "no_recent_session" and alert.group_id == s.fading_group
        assert "26 days" in alert.detail

        risks = await metrics.get(f"/programs/{s.program_id}/risks")
        fading = next(r for r in risks if r["group_id"] == s.fading_group)
        assert fading == risks[0], "the riskiest relationship comes first"
        assert round(sum(fading["parts"].values()), 1) == fading["score"]
        assert fading["parts"]["overdue"] == pytest.approx(round((26 / 14 - 1) * 40, 1))
        assert alert.risk_score == fading["score"]
        [open_alert] = await metrics.get("/alerts", program_id=s.program_id)
        assert open_alert["alert_id"] == alert.alert_id and open_alert["cleared_at"] is None

        s.events.clear()
        s.held(9, T0 + 30 * DAY - DAY / 24, [s.pid("M6"), s.pid("m10")])  # the pair meets an hour before "now"
        await metrics.publish_and_wait(s.events)
        records = await tail.collect(mine, count=1, timeout=30)
        cleared = [from_kafka(r.headers, r.value).data for r in records]
        assert len(cleared) == 1 and isinstance(cleared[0], AlertClearedV2)
        assert cleared[0].alert_id == alert.alert_id

    assert await metrics.get("/alerts", program_id=s.program_id) == []
    [history] = await metrics.get("/alerts", program_id=s.program_id, status="all")
    assert history["alert_id"] == alert.alert_id and history["cleared_at"] is not None


async def test_an_evaluation_counted_after_a_change_has_judged_it(metrics: Metrics) -> None:
    """What a client waits for (the demo does): once ``evaluations`` has grown by two after its change,
    the alerts already take the change into account, with no further waiting."""
    s = Scenario(unique("judged")).build()
    await metrics.publish_and_wait(s.events)
    metrics.clock.now = T0 + 30 * DAY
    before = (await metrics.get("/alerts/evaluation"))["evaluations"]

    async def judged() -> bool:
        return bool((await metrics.get("/alerts/evaluation"))["evaluations"] >= before + 2)

    await eventually(judged, 30, "two evaluations after the clock moved")
    [alert] = await metrics.get("/alerts", program_id=s.program_id)
    assert alert["kind"] == "no_recent_session" and alert["group_id"] == s.fading_group
    last = await metrics.get("/alerts/evaluation")
    assert last["as_of"] == rfc3339(T0 + 30 * DAY)
    assert datetime.fromisoformat(last["started_at"]) <= datetime.fromisoformat(last["finished_at"])
