"""Matching an administrator can trust, through the HTTP API on the real stack: a what-if that means
"this program, with these changes", a diff that counts real moves, explanations for everyone in a run,
overrides that say when they cannot take effect, a run an auditor can replay, a dry run published as
is, closed programs refused, and runs stopped with the service recorded as failed."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bench.synthetic_org import enrolments, org_chart
from conftest import StackEndpoints, eventually
from services.matching import cli, handlers
from services.matching.app import MatchingSettings
from services.matching.app import create as create_matching
from services.matching.domain import MatchingInput, MatchingResult, match
from tests.test_e2e_matching import Platform

pytestmark = pytest.mark.stack


async def _run(p: Platform, program_id: str, **body: Any) -> dict[str, Any]:
    r = await p.matching.post(f"/programs/{program_id}/runs", json={"wait": True, **body}, headers=p.admin)
    assert r.status_code == 200, r.text
    run: dict[str, Any] = r.json()
    assert run["status"] == "completed", run
    return run


async def _groups(p: Platform, run_id: str) -> list[dict[str, Any]]:
    r = await p.matching.get(f"/runs/{run_id}/groups", params={"limit": 5000}, headers=p.admin)
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def _rosters(groups: list[dict[str, Any]]) -> set[frozenset[str]]:
    return {frozenset(m["participant_id"] for m in g["members"]) for g in groups}


async def _facilitated_program(p: Platform, name: str, seed: int) -> str:
    """A facilitated-group program whose groups take 3-4 mentees, its pool complete in matching."""
    people = org_chart(160, seed=seed, prefix=f"F{seed}-")
    rows = enrolments(people, 100, seed=seed)
    for row in rows:
        if row["role"] == "mentor":
            row["capacity"] = 1
    policy = {"group_members_min": 3, "group_members_max": 4, "time_limit_seconds": 5}
    return await p.enrolled(people, {"name": name, "form": "facilitated_group", "policy": policy}, rows)


async def test_a_partial_what_if_keeps_the_programs_own_policy(platform: Platform) -> None:
    p = platform
    program_id = await _facilitated_program(p, "What-if", seed=31)
    what_if = await _run(p, program_id, dry_run=True, seed=5, policy={"weights": {"skill": 10}})
    groups = await _groups(p, what_if["run_id"])
    assert groups
    for g in groups:
        mentees = [m for m in g["members"] if m["role"] == "mentee"]
        assert 3 <= len(mentees) <= 4, "the program's group size still holds under a weights-only what-if"
    record = (await p.matching.get(f"/runs/{what_if['run_id']}/input", headers=p.admin)).json()
    assert record["policy"]["weights"]["skill"] == 10 and record["policy"]["group_members_min"] == 3


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"max_same_deparment": 1}, ["body", "policy", "max_same_deparment"]),
        ({"weights": {"skil": 3}}, ["body", "policy", "weights", "skil"]),
        ({"group_members_max": 3}, ["body", "policy", "group_members_max"]),
        ({"seniority_rule": "peers_within"}, ["body", "policy", "seniority_rule"]),
    ],
)
async def test_a_what_if_refuses_what_enrollment_refuses(
    platform: Platform, changes: dict[str, Any], loc: list[str]
) -> None:
    p = platform
    program_id, _ = await p.enrolled_program("Refused", org_size=60, org_seed=2, enrol=30, enrol_seed=2)
    r = await p.matching.post(
        f"/programs/{program_id}/runs", json={"wait": True, "dry_run": True, "policy": changes}, headers=p.admin
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc


async def test_a_closed_program_forms_no_groups(platform: Platform) -> None:
    p = platform
    program_id, _ = await p.enrolled_program("Closed", org_size=60, org_seed=3, enrol=30, enrol_seed=3)
    r = await p.enrollment.post(f"/programs/{program_id}/close", headers=p.admin)
    assert r.status_code == 200, r.text

    async def closed_in_matching() -> bool:
        r = await p.matching.post(f"/programs/{program_id}/runs", json={"dry_run": True}, headers=p.admin)
        return r.status_code == 409

    await eventually(closed_in_matching, 30, "matching to learn the program closed")
    r = await p.matching.post(f"/programs/{program_id}/runs", json={"wait": True}, headers=p.admin)
    assert r.status_code == 409 and "closed" in r.text
    runs = (await p.matching.get(f"/programs/{program_id}/runs", headers=p.admin)).json()
    assert [r for r in runs if not r["dry_run"]] == [], "nothing was published for the closed program"


async def test_the_diff_counts_real_moves_only_under_one_set_of_weights(platform: Platform) -> None:
    p = platform
    program_id, _ = await p.enrolled_program("Diff", org_size=200, org_seed=4, enrol=120, enrol_seed=4)
    published = await _run(p, program_id, seed=9)
    assert published["summary"]["placed"] > 0

    plain = (await _run(p, program_id, dry_run=True, seed=9))["summary"]["diff"]
    assert plain["no_longer_placed"] == [] and plain["people_moved"] == 0, "people in active groups did not move"

    same = (await _run(p, program_id, dry_run=True, against_last_run=True, seed=9))["summary"]["diff"]
    assert same["people_moved"] == 0 and same["placed_delta"] == 0
    assert same["total_fit_before"] == same["total_fit_after"], "the same groups have the same fit"

    reweighted = await _run(
        p, program_id, dry_run=True, against_last_run=True, seed=9, policy={"weights": {"cross_department": 0}}
    )
    diff = reweighted["summary"]["diff"]
    assert diff["fit_weights"]["cross_department"] == 0
    if diff["people_moved"] == 0:  # the same groups, weighed the same way on both sides
        assert diff["total_fit_before"] == diff["total_fit_after"]


async def test_everyone_in_a_run_is_explained_locks_included(platform: Platform) -> None:
    p = platform
    program_id, _ = await p.enrolled_program("Explain", org_size=200, org_seed=6, enrol=120, enrol_seed=6)
    first = await _run(p, program_id, dry_run=True, seed=2)
    groups = await _groups(p, first["run_id"])
    mentor_id, mentee_id = (m["participant_id"] for m in groups[0]["members"])
    r = await p.matching.post(
        f"/programs/{program_id}/overrides",
        json={"kind": "lock_pair", "participant_ids": [mentor_id, mentee_id], "reason": "asked for by both"},
        headers=p.admin,
    )
    assert r.status_code == 201, r.text
    await _override_published(p, program_id, r.json()["override_id"], [mentor_id, mentee_id])
    run = await _run(p, program_id, dry_run=True, seed=2)
    record = (await p.matching.get(f"/runs/{run['run_id']}/input", headers=p.admin)).json()
    for person in record["input"]["participants"]:
        r = await p.matching.get(f"/runs/{run['run_id']}/explanations/{person['participant_id']}", headers=p.admin)
        assert r.status_code == 200, (person["participant_id"], r.text)
        body = r.json()
        if person["role"] == "mentor":
            assert body["reason"] and body["capacity"] >= 1 and "load_after" in body
        if person["participant_id"] in (mentor_id, mentee_id):
            assert any(o["kind"] == "lock_pair" for o in body["overrides"]), body
            assert "asked for by both" not in json.dumps(body), "override reasons are in the admin-only list"


async def _override_published(p: Platform, program_id: str, override_id: int, pair: list[str]) -> None:
    """The override went out with matching's outbox as match.override.recorded: ids and kind, no reason."""
    conn = await asyncpg.connect(p.dsn)
    try:
        rows = await conn.fetch(f'SELECT headers, payload FROM "{p.matching_schema}".outbox WHERE key = $1', program_id)
    finally:
        await conn.close()
    found = [json.loads(r["payload"]) for r in rows if "match.override.recorded" in r["headers"]]
    assert [(e["override_id"], e["participant_ids"]) for e in found] == [(str(override_id), pair)]
    assert "asked for by both" not in json.dumps(found)


async def test_overrides_that_cannot_take_effect_are_refused(platform: Platform) -> None:
    p = platform
    program_id, _ = await p.enrolled_program("Refuse", org_size=120, org_seed=7, enrol=60, enrol_seed=7)
    run = await _run(p, program_id, seed=1)
    group = (await _groups(p, run["run_id"]))[0]
    mentor_id, mentee_id = (m["participant_id"] for m in group["members"])
    url = f"/programs/{program_id}/overrides"
    r = await p.matching.post(
        url, json={"kind": "exclude_pair", "participant_ids": [mentor_id, mentee_id], "reason": "conflict"},
        headers=p.admin,
    )  # fmt: skip
    assert r.status_code == 409 and group["group_id"] in r.json()["detail"][0]["msg"]
    other_mentor = next(
        pid
        for pid in (await p.matching.get(f"/runs/{run['run_id']}/input", headers=p.admin)).json()["input"][
            "participants"
        ]
        if pid["role"] == "mentor" and pid["participant_id"] != mentor_id
    )["participant_id"]
    r = await p.matching.post(
        url, json={"kind": "lock_pair", "participant_ids": [other_mentor, mentee_id], "reason": "move"},
        headers=p.admin,
    )  # fmt: skip
    assert r.status_code == 409 and mentee_id in r.json()["detail"][0]["msg"]
    assert (await p.matching.get(url, headers=p.admin)).json()["total"] == 0, "nothing was recorded"


async def test_an_auditor_replays_a_run_from_its_record(platform: Platform, tmp_path: Path) -> None:
    p = platform
    program_id, _ = await p.enrolled_program("Replay", org_size=200, org_seed=8, enrol=120, enrol_seed=8)
    run = await _run(p, program_id)
    r = await p.matching.get(f"/runs/{run['run_id']}/input", headers=p.admin)
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["requested_by"] == "admin-e2e" and record["code_version"].startswith("0.1.0+")
    assert record["seed"] == run["seed"] and record["started_at"].endswith("Z")
    path, out = tmp_path / "record.json", tmp_path / "result.json"
    path.write_text(json.dumps(record))
    assert await asyncio.to_thread(cli.main, ["match", str(path), "-o", str(out)]) == 0
    replayed = MatchingResult.model_validate_json(out.read_text())
    assert _rosters([g.model_dump(mode="json") for g in replayed.groups]) == _rosters(await _groups(p, run["run_id"]))
    assert handlers.digest(MatchingInput.model_validate(record["input"])) == run["input_digest"]


async def test_a_dry_run_is_published_as_rehearsed(platform: Platform) -> None:
    p = platform
    program_id, _ = await p.enrolled_program("Publish", org_size=200, org_seed=10, enrol=120, enrol_seed=10)
    dry = await _run(p, program_id, dry_run=True, seed=4, policy={"weights": {"goal": 9}})
    r = await p.matching.post(f"/runs/{dry['run_id']}/publish", headers=p.admin)
    assert r.status_code == 200, r.text
    published = r.json()
    assert published["dry_run"] is False and published["summary"]["published_from"] == dry["run_id"]
    assert _rosters(await _groups(p, published["run_id"])) == _rosters(await _groups(p, dry["run_id"]))
    r = await p.matching.post(f"/runs/{dry['run_id']}/publish", headers=p.admin)
    assert r.status_code == 409, "the same people cannot be published twice"
    r = await p.matching.post(f"/runs/{published['run_id']}/publish", headers=p.admin)
    assert r.status_code == 409, "only a dry run is published this way"


async def test_a_run_stopped_with_its_service_is_recorded_failed_and_published_nothing(
    platform: Platform, stack: StackEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = platform
    program_id, _ = await p.enrolled_program("Shutdown", org_size=80, org_seed=11, enrol=40, enrol_seed=11)
    solving, release = threading.Event(), threading.Event()

    def slow_solve(inp: MatchingInput, seed: int, progress: Any, stop: threading.Event) -> MatchingResult:
        """Stands for a solver still at work when the service stops (the real one is killed then)."""
        solving.set()
        release.wait(60)
        return match(inp, seed)

    monkeypatch.setattr("services.matching.handlers.solve_within_limit", slow_solve)
    replica = create_matching(
        MatchingSettings(
            database_url=stack.admin_dsn, kafka_bootstrap=stack.kafka_bootstrap, db_schema=p.matching_schema,
            consumer_offset_reset="latest", log_level="WARNING",
        )
    )  # fmt: skip
    try:
        async with replica.router.lifespan_context(replica):
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=replica), base_url="http://replica")
            async with client:
                r = await client.post(f"/programs/{program_id}/runs", json={"seed": 1}, headers=p.admin)
                assert r.status_code == 202, r.text
                run_id = r.json()["run_id"]
                assert await asyncio.to_thread(solving.wait, 30), "the run started solving"
        # the replica has stopped: its pool is closed, and the run said so before it closed
    finally:
        release.set()
    r = await p.matching.get(f"/runs/{run_id}", headers=p.admin)
    assert r.json()["status"] == "failed" and "stopped" in r.json()["error"]
    conn = await asyncpg.connect(p.dsn)
    try:
        schema = p.matching_schema
        assert await conn.fetchval(f'SELECT count(*) FROM "{schema}".groups WHERE run_id = $1', run_id) == 0
        outbox = await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".outbox WHERE payload::text LIKE $1', f"%{run_id}%"
        )
        assert outbox == 0
    finally:
        await conn.close()


async def test_a_capacity_cut_below_the_current_load_is_refused_with_the_groups(platform: Platform) -> None:
    p = platform
    program_id, _ = await p.enrolled_program("Cut", org_size=200, org_seed=12, enrol=120, enrol_seed=12)
    run = await _run(p, program_id, seed=3)
    groups = await _groups(p, run["run_id"])
    led: dict[str, list[str]] = {}
    for g in groups:
        led.setdefault(g["members"][0]["participant_id"], []).append(g["group_id"])
    mentor_id, theirs = max(led.items(), key=lambda item: len(item[1]))
    assert len(theirs) >= 2

    async def enrollment_knows_the_groups() -> bool:
        conn = await asyncpg.connect(p.dsn)
        try:
            table = f'"{p.enrollment_schema}".mentor_groups'
            known = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE program_id = $1", program_id)
            return bool(known == len(groups))
        finally:
            await conn.close()

    await eventually(enrollment_knows_the_groups, 30, "enrollment to learn the groups from group.matched")
    url = f"/programs/{program_id}/enrolments/{mentor_id}"
    r = await p.enrollment.patch(url, json={"capacity": 1}, headers=p.admin)
    assert r.status_code == 409, r.text
    error = r.json()["detail"][0]
    assert error["loc"] == ["body", "capacity"] and all(g in error["msg"] for g in theirs)
    assert (await p.enrollment.get(url, headers=p.admin)).json()["capacity"] != 1, "nothing was stored"
    r = await p.enrollment.patch(url, params={"on_over_capacity": "keep_groups"}, json={"capacity": 1}, headers=p.admin)
    assert r.status_code == 200 and r.json()["capacity"] == 1
