"""The platform's main job, end to end on the local stack (``make demo``).

Starts Kafka, PostgreSQL and the services; imports an org chart of a few thousand people into
enrollment; opens a one-to-one program and enrols people in bulk; waits until matching has built the
pool from the events; runs a matching and prints what an administrator needs: placed, unplaced by
reason, mean fit, load spread, the solver's status and gap, and how to read one group's explanation.
Then the program lives on: once the sessions service has the groups from ``group.matched``, a sample
of them plays twelve weeks of meetings, goals and session surveys through the sessions and feedback
APIs (``deploy/local/simulate.py``), and the demo prints sessions held, goals set and the mean rating.
Everything goes through the public HTTP APIs and Kafka, as a real administrator's tools would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.synthetic_org import enrolments, org_chart, to_csv
from deploy.local import services, simulate
from deploy.local.stack import Stack
from runtime.auth import issue_token, jwt_config_from_env

ORG_COLUMNS = ["employee_id", "manager_id", "department", "level", "location", "utc_offset_minutes", "languages"]
DEMO_NAME = "Demo mentoring"
ENROL_COLUMNS = ["participant_id", "role", "skills_offered", "skills_sought", "goals", "capacity"]


class Client:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json", missing: Any = ...
    ) -> Any:
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": content_type},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and missing is not ...:
                return missing
            raise SystemExit(f"{method} {path} failed with {exc.code}: {exc.read().decode()[:2000]}") from exc
        return json.loads(raw) if raw else None


def step(message: str) -> None:
    print(f"\n== {message}", flush=True)


def wait(what: str, check: Callable[[], bool], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def live_weeks(urls: dict[str, str], token: str, pid: str, run_id: str, args: argparse.Namespace) -> None:
    """A sample of the groups lives twelve weeks through the sessions and feedback APIs."""
    sessions = Client(urls["sessions"], token)
    groups = Client(urls["matching"], token).call("GET", f"/runs/{run_id}/groups?limit={args.live_groups}")["items"]
    if not groups:
        return
    step(f"waiting for the sessions service to open the relationships (group.matched), then {len(groups)} "
         "groups live twelve weeks")  # fmt: skip
    wanted = {g["group_id"] for g in groups}

    def relationships_open() -> bool:
        page = sessions.call("GET", f"/programs/{pid}/relationships?limit=5000", missing={"items": []})
        return wanted <= {r["group_id"] for r in page["items"]}

    wait("the relationships", relationships_open, timeout=300)
    jwt = jwt_config_from_env("sessions")
    simulation = simulate.Simulation(urls["sessions"], urls["feedback"], jwt, seed=args.seed)

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            print(f"  {done} of {total} groups played", flush=True)

    summary = simulation.run(groups, progress)
    step("twelve weeks later")
    scripts = ", ".join(f"{n} {name}" for name, n in sorted(summary.groups.items()))
    print(f"groups            {sum(summary.groups.values())} played ({scripts})")
    print(f"sessions held     {summary.sessions_held:,} ({summary.reschedules} rescheduled first)")
    print(f"goals set         {summary.goals_set:,}, steps ticked off {summary.steps_done:,}")
    print(f"mean rating       {summary.mean_rating} of 5 ({len(summary.ratings):,} session surveys answered)")
    print(
        f"closed            {summary.closed} completed, {len(summary.recommend)} end-of-relationship surveys answered"
    )
    if "metrics" in urls:
        program_health(
            Client(urls["metrics"], token), urls["metrics"], pid, len(summary.ratings), len(summary.recommend)
        )


EVALUATE_EVERY_SECONDS = 5
"""How often the demo's metrics service evaluates the safety nets."""

HEADLINES = (
    "placed_share", "time_to_match_median_days", "mentor_load_gini", "sessions_vs_cadence", "attendance_rate",
    "mean_session_rating", "nps", "goals_progressed",
)  # fmt: skip


def _kpis(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k["key"]: k for section in report["sections"] for k in section["kpis"]}


def program_health(metrics: Client, url: str, pid: str, answers: int, recommends: int) -> None:
    """What the administrator opens every week: the headline KPIs, the open alerts, the dashboard.

    The figures are read once the metrics service has projected every survey answer the simulation
    gave (``answers`` session ratings, ``recommends`` recommend scores: the last events of the twelve
    weeks), and the alerts once an evaluation that started after that has committed (an evaluation
    of a large read model takes seconds)."""
    step("waiting for the metrics service to project the twelve weeks, then the program's health")
    report: dict[str, Any] = {}

    def caught_up() -> bool:
        nonlocal report
        report = metrics.call("GET", f"/programs/{pid}/kpis?window=program_to_date", missing={"sections": []})
        kpis = _kpis(report)
        rated = kpis.get("mean_session_rating", {}).get("figure", {}).get("n") or 0
        recommended = kpis.get("nps", {}).get("figure", {}).get("n") or 0
        return bool(report["sections"]) and rated >= answers and recommended >= recommends

    wait("the KPIs", caught_up, timeout=300)
    kpis = _kpis(report)
    for key in HEADLINES:
        if key in kpis:
            k = kpis[key]
            print(f"  {k['label']:<40} {k['figure']['display']}")
    # the evaluation running now may have started before the last answer was projected: the one after it
    # judges every answer, and its alerts are visible as soon as it is counted
    wanted = metrics.call("GET", "/alerts/evaluation")["evaluations"] + 2
    wait(
        "the safety nets' evaluation",
        lambda: metrics.call("GET", "/alerts/evaluation")["evaluations"] >= wanted,
        timeout=EVALUATE_EVERY_SECONDS * 2 + 120,
    )
    evaluated = metrics.call("GET", f"/alerts?status=open&program_id={pid}")
    risks = metrics.call("GET", f"/programs/{pid}/risks")
    kinds = Counter(a["kind"] for a in evaluated)
    print(f"open alerts       {len(evaluated)}: " + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()))
    for kind in kinds:
        alert = next(a for a in evaluated if a["kind"] == kind)
        print(f"  e.g. [{alert['severity']}] {kind}: {alert['detail']}")
    for risk in risks[:3]:
        parts = ", ".join(f"{name} {value:g}" for name, value in risk["parts"].items())
        print(f"  risk {risk['score']:g} for {risk['group_id']} ({parts})")
    print(f"dashboard         {url}/dashboard/login?token=$(.venv/bin/python -m runtime.auth --role admin "
          "--service metrics)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=4000, help="size of the organisation")
    parser.add_argument("--enrol", type=int, default=2500, help="how many of them enrol")
    parser.add_argument("--seed", type=int, default=2026, help="the published lottery seed")
    parser.add_argument("--live-groups", type=int, default=40, help="groups whose twelve weeks are played")
    args = parser.parse_args()

    step("starting the local stack and the services")
    os.environ.setdefault("METRICS_EVALUATE_EVERY_SECONDS", str(EVALUATE_EVERY_SECONDS))  # answers within the demo
    urls = services.up()
    jwt = jwt_config_from_env("enrollment")  # the services run with the same settings
    token = issue_token(jwt, "demo-admin", ["admin"])
    enrollment, matching = Client(urls["enrollment"], token), Client(urls["matching"], token)

    # Capacity is a person's across programs: on a database that kept an earlier demo, its mentors still
    # carry their groups. Each demo therefore brings its own people (D1-000001, then D2-000001, ...).
    earlier = sum(1 for p in enrollment.call("GET", "/programs") if p["name"].startswith(DEMO_NAME))
    prefix = f"D{earlier + 1}-"  # never the tests' E000001...: they share the local topics
    step(f"importing an org chart of {args.people:,} people (CSV, as an HRIS export; ids {prefix}000000...)")
    people = org_chart(args.people, seed=args.seed, prefix=prefix)
    result = enrollment.call("POST", "/org-chart", to_csv([p.row() for p in people], ORG_COLUMNS), "text/csv")
    print(f"imported {result['imported']:,} people")

    step("opening a one-to-one program with the default policy")
    program = enrollment.call(
        "POST", "/programs",
        {"name": f"{DEMO_NAME} {time.strftime('%Y-%m-%d %H:%M')}", "form": "one_to_one", "starts_on": "2026-01-12"},
    )  # fmt: skip
    pid = program["program_id"]
    policy = program["policy"]
    print(f"program {pid}: reporting-line depth {policy['reporting_line_depth']}, shared language "
          f"{policy['require_shared_language']}, max time-zone distance {policy['max_timezone_distance_hours']} h, "
          f"seniority {policy['seniority_rule']}, weights {policy['weights']}")  # fmt: skip

    step(f"enrolling {args.enrol:,} people in bulk (one CSV upload, all or nothing)")
    rows = enrolments(people, args.enrol, seed=args.seed)
    started = time.perf_counter()
    result = enrollment.call("POST", f"/programs/{pid}/enrolments/bulk", to_csv(rows, ENROL_COLUMNS), "text/csv")
    mentors = sum(1 for r in rows if r["role"] == "mentor")
    print(f"enrolled {result['enrolled']:,} ({mentors:,} mentors, {len(rows) - mentors:,} mentees) "
          f"in {time.perf_counter() - started:.1f} s")  # fmt: skip

    step("waiting for matching to build the pool from participant.enrolled events")
    seen = [-1]

    def pool_complete() -> bool:
        known = matching.call("GET", f"/programs/{pid}/pool", missing={"participants": 0})["participants"]
        if known != seen[0]:
            seen[0] = known
            print(f"  matching knows {known:,} of {len(rows):,}", flush=True)
        return bool(known == len(rows))

    wait("the pool", pool_complete, timeout=900)
    print(f"matching knows all {len(rows):,} participants")

    step(f"running the matching (seed {args.seed})")
    run = matching.call("POST", f"/programs/{pid}/runs", {"seed": args.seed})
    run_id = run["run_id"]
    last = ""
    while run["status"] == "running":
        if run.get("progress") and run["progress"] != last:
            last = run["progress"]
            print(f"  {last}", flush=True)
        time.sleep(0.5)
        run = matching.call("GET", f"/runs/{run_id}")
    if run["status"] != "completed":
        raise SystemExit(f"run {run_id} {run['status']}: {run.get('error')}")
    s = run["summary"]

    step("summary")
    print(f"run               {run_id} (input {run['input_digest']})")
    total = s["placed"] + s["unplaced"]
    print(f"placed            {s['placed']:,} of {total:,} mentees (proven bound {s['placed_bound']:,})")
    print(f"unplaced          {s['unplaced']:,} by reason: {json.dumps(s['unplaced_by_reason'])}")
    print(f"groups            {s['groups']:,}, mean fit {s['mean_fit']}, total fit {s['total_fit']:,.0f}")
    spread = s["load_spread"]
    print(
        f"mentor load       max ratio {s['max_load_ratio']}, median {spread.get('median_ratio')}, "
        f"min {spread.get('min_ratio')}, idle mentors {spread.get('idle_mentors')} of {spread.get('mentors')}"
    )
    print(f"solver            {s['method']} {s['status']}, gap {s['gap']}, "
          f"fit lost to capacity and fairness {s['relaxed_gap']}, {s['wall_time_seconds']} s")  # fmt: skip
    for note in s["notes"]:
        print(f"note              {note}")

    groups = matching.call("GET", f"/runs/{run_id}/groups?limit=1")["items"]
    if groups:
        g = groups[0]
        step(f"one group's explanation ({g['group_id']}, fit {g['fit']:g})")
        for c in g["explanation"]:
            print(f"  +{c['points']:g} {c['criterion']}: {c['detail']}")
        mentee = next(m["participant_id"] for m in g["members"] if m["role"] == "mentee")
        print("\nRead any person's explanation (their group and fit, or why they were not placed):")
        print("  TOKEN=$(.venv/bin/python -m runtime.auth --role admin --sub you)")
        print(f'  curl -H "Authorization: Bearer $TOKEN" {urls["matching"]}/runs/{run_id}/explanations/{mentee}')
    unplaced = matching.call("GET", f"/runs/{run_id}/unplaced")["items"]
    if unplaced:
        print(f"\nan unplaced person: {unplaced[0]['participant_id']}: {unplaced[0]['reason']}")
    live_weeks(urls, token, pid, run_id, args)
    docs = " ".join(f"{url}/docs" for url in urls.values())
    kafka = Stack().endpoints().kafka_bootstrap
    print(f"\nThe services keep running (make status / make down). Events: mentoring.*.v1 on {kafka}; "
          f"API docs: {docs}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
