"""HTTP probe of group matching (issue 13): a probe, not a test (outside the suite's folders, no ``test_``
file name), run through pytest for the stack and the services in-process::

    STACK_DIR=/work/main/.stack .venv/bin/python -m bench.probes.http_groups

Peer-group, team and facilitated programs of forms and policies the end-to-end tests do not use, through
enrollment and matching in-process (``tests/test_e2e_matching.py``'s ``platform``): prints each dry run's summary,
``validate`` on the groups the API returns, whether a replay with the same seed gives the same groups,
and whether a lock_pair recorded through the API holds in the next run. Prints figures; asserts only
that the calls succeed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.synthetic_org import enrolments, org_chart
from contracts.events import GroupMember, UnmatchedReason
from services.matching.domain import MatchingInput, validate
from services.matching.domain.model import Group, MatchingResult, Stats, Unplaced
from tests.test_e2e_matching import Platform, platform  # noqa: F401

pytestmark = pytest.mark.stack


async def _program(p: Platform, name: str, form: str, policy: dict[str, Any], size: int, seed: int,
                   team_size: int = 0) -> tuple[str, list[dict[str, Any]]]:  # fmt: skip
    people = org_chart(size * 2, seed=seed, prefix=f"H{seed}-")
    rows = enrolments(people, size, seed=seed)
    for k, row in enumerate(rows):
        if form == "peer_group":
            row["role"] = "peer"
            row.pop("capacity", None)
        elif team_size and row["role"] == "mentee":
            row["team_id"] = f"T{k // team_size:03d}"
    program_id = await p.enrolled(people, {"name": name, "form": form, "policy": policy}, rows)
    return program_id, rows


async def _check(p: Platform, program_id: str, label: str, seed: int) -> None:
    started = time.perf_counter()
    r = await p.matching.post(f"/programs/{program_id}/runs", json={"wait": True, "dry_run": True, "seed": seed},
                              headers=p.admin)  # fmt: skip
    wall = time.perf_counter() - started
    assert r.status_code == 200, r.text
    run = r.json()
    print(f"\n{label}: status {run['status']} error {run.get('error')} wall {wall:.2f} s")
    if run["status"] != "completed":
        return
    record = (await p.matching.get(f"/runs/{run['run_id']}/input", headers=p.admin)).json()
    inp = MatchingInput.model_validate(record.get("input", record))
    out = Path("/tmp/probe13")
    out.mkdir(exist_ok=True)
    (out / f"http_{label.split()[0]}_{label.split()[1]}.json").write_text(json.dumps(record))
    groups = (await p.matching.get(f"/runs/{run['run_id']}/groups", params={"limit": 5000}, headers=p.admin)).json()
    unplaced = (await p.matching.get(f"/runs/{run['run_id']}/unplaced", headers=p.admin)).json()
    result = MatchingResult(
        program_id=program_id, form=inp.form, seed=seed,
        groups=[Group(group_id=g["group_id"], members=[GroupMember.model_validate(m) for m in g["members"]],
                      fit=g.get("fit", 0), explanation=[]) for g in groups["items"]],
        unplaced=[Unplaced(participant_id=u["participant_id"], reason_code=UnmatchedReason(u["reason_code"]),
                           reason=u["reason"]) for u in unplaced["items"]],
        lottery={}, stats=Stats(method="x", status="x", seed=seed, placed_count=0, unplaced_count=0, placed_bound=0,
                                total_fit=0, max_load_ratio=0, load={}, wall_time_seconds=0),
    )  # fmt: skip
    problems = validate(inp, result)
    sizes = sorted({sum(m["role"] != "mentor" for m in g["members"]) for g in groups["items"]})
    summary = run["summary"]
    print(f"  summary {summary}"[:900])
    print(f"  groups {len(groups['items'])} sizes {sizes} unplaced {len(unplaced['items'])} violations {len(problems)} "
          f"{problems[:3]} policy group {inp.policy.group_members_min}-{inp.policy.group_members_max}")  # fmt: skip
    started = time.perf_counter()
    again = await p.matching.post(f"/programs/{program_id}/runs", json={"wait": True, "dry_run": True, "seed": seed},
                                  headers=p.admin)  # fmt: skip
    wall2 = time.perf_counter() - started
    groups2 = (await p.matching.get(f"/runs/{again.json()['run_id']}/groups", params={"limit": 5000},
                                    headers=p.admin)).json()  # fmt: skip

    def rosters(gs: dict[str, Any]) -> set[frozenset[str]]:
        return {frozenset(m["participant_id"] for m in g["members"]) for g in gs["items"]}

    print(f"  replay same seed: wall {wall2:.2f} s, same groups {rosters(groups) == rosters(groups2)}")
    for u in unplaced["items"][:4]:
        print(f"  unplaced {u['participant_id']}: {u['reason_code']}: {u['reason']}")


async def test_probe_peer_and_team_programs(platform: Platform) -> None:  # noqa: F811
    p = platform
    tight = {"group_members_min": 4, "group_members_max": 5, "max_timezone_distance_hours": 2,
             "max_same_department": 1, "time_limit_seconds": 2}  # fmt: skip
    program_id, rows = await _program(p, "Peer15", "peer_group", {"time_limit_seconds": 30}, 15, seed=901)
    await _check(p, program_id, f"peer 15, defaults ({len(rows)} enrolled)", 11)
    loose = {"group_members_min": 2, "group_members_max": 6, "require_shared_language": False,
             "max_timezone_distance_hours": None, "seniority_rule": "none", "max_same_department": None,
             "reporting_line_depth": 0}  # fmt: skip
    program_id, rows = await _program(p, "Peer15Loose", "peer_group", loose, 15, seed=905)
    await _check(p, program_id, f"peer 15, loose rules, groups of 2-6, default limit ({len(rows)} enrolled)", 14)
    program_id, rows = await _program(p, "PeerTight", "peer_group", tight, 120, seed=902)
    await _check(p, program_id, f"peer 120 tight 4-5 ({len(rows)} enrolled)", 12)
    team = {"mentors_per_group": 1, "time_limit_seconds": 3}
    program_id, rows = await _program(p, "Teams", "team", team, 150, seed=903, team_size=5)
    await _check(p, program_id, f"team 1 mentor, teams of 5 ({len(rows)} enrolled)", 13)


async def test_probe_facilitated_lock_through_the_api(platform: Platform) -> None:  # noqa: F811
    """An administrator 'moves' a mentee to an eligible mentor (a lock_pair), then dry-runs again."""
    from services.matching.domain.validate import _pair_problems

    p = platform
    policy = {"group_members_min": 2, "group_members_max": 4, "time_limit_seconds": 3}
    program_id, rows = await _program(p, "FacLock", "facilitated_group", policy, 1200, seed=904)
    r = await p.matching.post(f"/programs/{program_id}/runs", json={"wait": True, "dry_run": True, "seed": 5},
                              headers=p.admin)  # fmt: skip
    run = r.json()
    record = (await p.matching.get(f"/runs/{run['run_id']}/input", headers=p.admin)).json()
    inp = MatchingInput.model_validate(record.get("input", record))
    groups = (await p.matching.get(f"/runs/{run['run_id']}/groups", params={"limit": 5000}, headers=p.admin)).json()
    where = {m["participant_id"]: g["group_id"] for g in groups["items"] for m in g["members"]}
    summary = run["summary"]
    print(f"\nfacilitated {len(rows)} enrolled: placed {summary['placed']} of bound {summary['placed_bound']}, "
          f"{summary['groups']} groups, status {summary['status']}")  # fmt: skip
    mentors = [x for x in inp.participants if x.role.value == "mentor"]
    mentees = [x for x in inp.participants if x.role.value == "mentee" and x.participant_id in where]
    pair = next(
        (m, e) for m in mentors for e in mentees
        if m.participant_id in where and where[m.participant_id] != where[e.participant_id]
        and not _pair_problems(m, e, inp, mentor_pair=True)
    )  # fmt: skip
    body = {"kind": "lock_pair", "participant_ids": [pair[0].participant_id, pair[1].participant_id],
            "reason": "probe: move this mentee to this mentor"}  # fmt: skip
    r = await p.matching.post(f"/programs/{program_id}/overrides", json=body, headers=p.admin)
    print(f"  lock {body['participant_ids']}: HTTP {r.status_code} {r.text[:200]}")
    r = await p.matching.post(f"/programs/{program_id}/runs", json={"wait": True, "dry_run": True, "seed": 5},
                              headers=p.admin)  # fmt: skip
    again = r.json()
    groups = (await p.matching.get(f"/runs/{again['run_id']}/groups", params={"limit": 5000}, headers=p.admin)).json()
    where = {m["participant_id"]: g["group_id"] for g in groups["items"] for m in g["members"]}
    a, b = body["participant_ids"]
    print(f"  after the lock: status {again['status']}, overrides_applied {again['summary']['overrides_applied']}, "
          f"together {where.get(a) == where.get(b) and a in where}, notes {again['summary']['notes']}")  # fmt: skip


async def test_probe_tight_peer_pool_through_the_api(platform: Platform) -> None:  # noqa: F811
    """The probe's tight 200-peer pool (groups of 3-5, 2 h, one per department, equal levels), enrolled
    through the API as it is (org chart, then each person's skills, goals, languages and conflicts)."""
    from bench.probes.group_probe import TIGHT_PEER, peer

    p = platform
    pool = peer(200, 32, group_members_min=3, group_members_max=5, **TIGHT_PEER)
    people = org_chart(270, seed=32)  # the chart synthetic_pool.instance(160, peer_group, seed=32) draws from
    policy = pool.policy.model_dump(mode="json", include={*TIGHT_PEER, "group_members_min", "group_members_max",
                                                          "time_limit_seconds"})  # fmt: skip
    rows = [{"participant_id": x.participant_id, "role": "peer", "skills_offered": x.skills_offered,
             "skills_sought": x.skills_sought, "goals": x.goals, "languages": x.languages,
             "conflicts_with": x.conflicts_with} for x in pool.participants]  # fmt: skip
    program_id = await p.enrolled(people, {"name": "PeerTight200", "form": "peer_group", "policy": policy}, rows)
    for attempt in range(2):
        started = time.perf_counter()
        r = await p.matching.post(f"/programs/{program_id}/runs", json={"wait": True, "seed": 4242}, headers=p.admin)
        run = r.json()
        summary = run.get("summary") or {}
        wall = time.perf_counter() - started
        print(f"\npeer 200 tight, published run {attempt + 1}: HTTP {r.status_code}, status {run.get('status')}, "
              f"error {run.get('error')}, placed {summary.get('placed')}, wall {wall:.1f} s")  # fmt: skip
        if run.get("status") == "completed":
            break


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-s", "-p", "no:cacheprovider"]))
