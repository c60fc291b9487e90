"""The sessions API against the real database: a pair's life through the API, who reads what (the
authorization matrix), bad input (one error naming the field, nothing stored), texts sealed at rest."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.policy import Form, Role
from services.sessions.tests.conftest import Svc

pytestmark = pytest.mark.stack

MENTOR, MENTEE = (Role.MENTOR, Role.MENTEE)


def soon(days: float = 2) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def ago(days: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


async def test_a_pair_agrees_meets_sets_goals_and_keeps_notes(svc: Svc) -> None:
    program_id = await svc.program(cadence_days=21)
    group_id = await svc.group(program_id, ("M1", MENTOR), ("e1", MENTEE))
    mentor, mentee = svc.as_("M1"), svc.as_("e1")

    r = await svc.client.get("/me/relationships", headers=mentee)
    assert r.status_code == 200, r.text
    (mine,) = r.json()
    assert mine["my_role"] == "mentee" and mine["members"] == [
        {"participant_id": "M1", "role": "mentor", "active": True}
    ]
    assert (mine["term"], mine["status"], mine["cadence_days"]) == (1, "open", 21)

    r = await svc.client.get(f"/relationships/{group_id}/expectations", headers=mentee)
    assert r.json()["agreed"] is False and r.json()["cadence_days"] == 21, "the program's cadence by default"
    body = {"format": "video", "agenda_template": "wins, blockers, next steps", "boundaries": "no HR cases"}
    r = await svc.client.put(f"/relationships/{group_id}/expectations", json=body, headers=mentor)
    assert r.status_code == 200, r.text
    assert r.json() | body == r.json() and r.json()["cadence_days"] == 21
    r = await svc.client.put(
        f"/relationships/{group_id}/expectations", json={**body, "boundaries": "x"}, headers=mentor
    )
    assert r.json()["boundaries"] == "x"

    r = await svc.client.post(
        f"/relationships/{group_id}/sessions",
        json={"scheduled_for": ago(1), "duration_minutes": 45, "topic": "negotiation", "guest_id": "G9"},
        headers=mentee,
    )
    assert r.status_code == 201, r.text
    session_id = r.json()["session_id"]
    r = await svc.client.post(
        f"/sessions/{session_id}/held", json={"duration_minutes": 50, "attendees": ["M1", "e1", "G9"]}, headers=mentor
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "held" and r.json()["attendees"] == ["M1", "e1", "G9"]

    r = await svc.client.post(f"/relationships/{group_id}/sessions", json={"scheduled_for": soon()}, headers=mentor)
    later = r.json()["session_id"]
    r = await svc.client.post(
        f"/sessions/{later}/reschedule", json={"scheduled_for": soon(9), "reason": "travel"}, headers=mentee
    )
    assert r.status_code == 200 and r.json()["reschedules"] == 1 and r.json()["reason"] == "travel"
    r = await svc.client.post(f"/sessions/{later}/cancel", json={"reason": "ill"}, headers=mentee)
    assert r.json()["status"] == "cancelled"

    goal = {"category": "leadership", "wording": "lead the Q3 review", "steps": ["draft", "rehearse", "present"]}
    r = await svc.client.post(f"/relationships/{group_id}/goals", json=goal, headers=mentee)
    assert r.status_code == 201, r.text
    goal_id = r.json()["goal_id"]
    r = await svc.client.post(f"/goals/{goal_id}/steps/2/done", headers=mentee)
    assert r.status_code == 200 and r.json()["steps_done"] == 1
    assert [s["done"] for s in r.json()["steps"]] == [False, True, False]

    r = await svc.client.post(f"/sessions/{session_id}/notes", json={"text": "mine only"}, headers=mentee)
    assert r.status_code == 201 and r.json()["shared"] is False
    r = await svc.client.post(
        f"/sessions/{session_id}/notes",
        json={"kind": "action_item", "text": "send slides", "shared": True},
        headers=mentor,
    )
    item = r.json()["note_id"]
    r = await svc.client.get(f"/sessions/{session_id}/notes", headers=mentee)
    assert [n["text"] for n in r.json()] == ["mine only", "send slides"]
    r = await svc.client.get(f"/sessions/{session_id}/notes", headers=mentor)
    assert [n["text"] for n in r.json()] == ["send slides"]
    r = await svc.client.patch(f"/notes/{item}", json={"done": True}, headers=mentor)
    assert r.json()["done"] is True

    events = await svc.outbox()
    assert [e["type"].split(".")[2:4] for e in events] == [
        ["expectations", "agreed"],
        ["session", "scheduled"],
        ["session", "held"],
        ["session", "scheduled"],
        ["session", "cancelled"],
        ["session", "cancelled"],
        ["goal", "set"],
        ["goal", "progressed"],
    ], "a change of boundaries alone publishes nothing; notes publish nothing"
    assert events[0]["cadence_days"] == 21 and events[0]["format"] == "video"
    assert events[2]["attendees"] == ["M1", "e1", "G9"] and events[2]["duration_minutes"] == 50
    assert events[4]["kind"] == "rescheduled" and events[5]["kind"] == "cancelled"
    assert events[6]["category"] == "leadership" and events[6]["steps_total"] == 3
    assert (events[7]["steps_done"], events[7]["steps_total"]) == (1, 3)
    assert all(e["group_id"] == group_id and e["program_id"] == program_id for e in events)
    published = repr(events)
    for text in ("wins, blockers", "no HR cases", "negotiation", "travel", "ill", "Q3 review", "rehearse", "mine only"):
        assert text not in published


async def test_close_and_renew(svc: Svc) -> None:
    program_id = await svc.program()
    group_id = await svc.group(program_id, ("M1", MENTOR), ("e1", MENTEE))
    await svc.client.post(f"/relationships/{group_id}/sessions", json={"scheduled_for": soon()}, headers=svc.as_("M1"))

    r = await svc.client.post(f"/relationships/{group_id}/close", json={"outcome": "renewed"}, headers=svc.as_("e1"))
    assert r.status_code == 200, r.text
    assert (r.json()["term"], r.json()["status"]) == (2, "open")
    r = await svc.client.post(f"/relationships/{group_id}/close", json={"outcome": "completed"}, headers=svc.admin)
    assert (r.json()["term"], r.json()["status"], r.json()["outcome"]) == (2, "closed", "completed")
    r = await svc.client.post(f"/relationships/{group_id}/close", json={"outcome": "faded"}, headers=svc.admin)
    assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["path", "group_id"]
    r = await svc.client.post(
        f"/relationships/{group_id}/goals",
        json={"category": "other", "wording": "w", "steps": ["s"]},
        headers=svc.as_("e1"),
    )
    assert r.status_code == 409

    closed = [e for e in await svc.outbox() if e["type"].endswith("relationship.closed.v1")]
    assert [(e["reason"], e["term"]) for e in closed] == [("renewed", 1), ("completed", 2)]
    cancelled = [e for e in await svc.outbox() if e["type"].endswith("session.cancelled.v1")]
    assert len(cancelled) == 1, "closing cancels the sessions still scheduled (a renewal keeps them)"


# --- the authorization matrix ---------------------------------------------------------------------

ROLES = ("mentor", "mentee", "outsider", "guest", "admin", "integration")


async def _scenario(svc: Svc) -> dict[str, Any]:
    program_id = await svc.program()
    group_id = await svc.group(program_id, ("M1", MENTOR), ("e1", MENTEE))
    await svc.group(program_id, ("M2", MENTOR), ("e2", MENTEE))
    mentor, mentee = svc.as_("M1"), svc.as_("e1")
    r = await svc.client.post(
        f"/relationships/{group_id}/sessions",
        json={"scheduled_for": soon(), "topic": "t-secret", "guest_id": "G1"},
        headers=mentor,
    )
    session_id = r.json()["session_id"]
    r = await svc.client.post(
        f"/relationships/{group_id}/goals",
        json={"category": "other", "wording": "w-secret", "steps": ["a", "b"]},
        headers=mentee,
    )
    goal_id = r.json()["goal_id"]
    r = await svc.client.post(f"/sessions/{session_id}/notes", json={"text": "n-secret"}, headers=mentee)
    note_id = r.json()["note_id"]
    await svc.client.put(
        f"/relationships/{group_id}/expectations", json={"format": "phone", "boundaries": "b-secret"}, headers=mentor
    )
    headers = {
        "mentor": mentor,
        "mentee": mentee,
        "outsider": svc.as_("e2"),
        "guest": svc.as_("G1"),
        "admin": svc.admin,
        "integration": svc.integration,
    }
    return {
        "program": program_id,
        "group": group_id,
        "session": session_id,
        "goal": goal_id,
        "note": note_id,
        "headers": headers,
    }


# (method, path, body): expected status per caller, in ROLES order
MATRIX: list[tuple[str, str, dict[str, Any] | None, tuple[int, ...]]] = [
    ("GET", "/me/relationships", None, (200, 200, 200, 200, 403, 403)),
    ("GET", "/programs/{program}/relationships", None, (403, 403, 403, 403, 200, 200)),
    ("GET", "/relationships/{group}", None, (200, 200, 404, 404, 200, 200)),
    ("GET", "/relationships/{group}/expectations", None, (200, 200, 404, 404, 403, 403)),
    ("PUT", "/relationships/{group}/expectations", {"format": "video"}, (200, 403, 404, 404, 403, 403)),
    ("GET", "/relationships/{group}/sessions", None, (200, 200, 404, 404, 200, 200)),
    ("GET", "/sessions/{session}", None, (200, 200, 404, 200, 200, 200)),
    ("GET", "/relationships/{group}/goals", None, (200, 200, 404, 404, 200, 200)),
    ("POST", "/goals/{goal}/steps/1/done", None, (403, 200, 404, 404, 403, 403)),
    ("GET", "/sessions/{session}/notes", None, (200, 200, 404, 404, 403, 403)),
    ("PATCH", "/notes/{note}", {"shared": False}, (404, 200, 404, 404, 403, 403)),
    ("POST", "/relationships/{group}/sessions", {"scheduled_for": "SOON"}, (201, 201, 404, 404, 403, 403)),
    ("POST", "/relationships/{group}/close", {"outcome": "renewed"}, (200, 200, 404, 404, 200, 403)),
]


async def test_authorization_matrix(svc: Svc) -> None:
    s = await _scenario(svc)
    failures = []
    for method, template, body, expected in MATRIX:
        path = template.format(**s)
        for role, status in zip(ROLES, expected, strict=True):
            payload = {k: soon() if v == "SOON" else v for k, v in body.items()} if body else None
            r = await svc.client.request(method, path, json=payload, headers=s["headers"][role])
            if r.status_code != status:
                failures.append(f"{method} {template} as {role}: {r.status_code} (expected {status}) {r.text[:120]}")
            elif status in (403, 404) and isinstance(r.json()["detail"], list):
                assert r.json()["detail"][0]["type"] in {"forbidden", "not_found"}
    assert not failures, "\n".join(failures)


async def test_staff_and_guests_read_no_text_and_nobody_reads_another_persons_note(svc: Svc) -> None:
    s = await _scenario(svc)
    h = s["headers"]
    for role in ("admin", "integration"):
        sessions = (await svc.client.get(f"/relationships/{s['group']}/sessions", headers=h[role])).json()
        goals = (await svc.client.get(f"/relationships/{s['group']}/goals", headers=h[role])).json()
        assert sessions[0]["topic"] is None and sessions[0]["guest_id"] == "G1"
        assert goals[0]["wording"] is None and [x["wording"] for x in goals[0]["steps"]] == [None, None]
        assert goals[0]["steps_total"] == 2
    guest_view = (await svc.client.get(f"/sessions/{s['session']}", headers=h["guest"])).json()
    assert guest_view["topic"] == "t-secret"
    member_view = (await svc.client.get(f"/relationships/{s['group']}/goals", headers=h["mentor"])).json()
    assert member_view[0]["wording"] == "w-secret", "a goal's wording is private to the member and their group"
    everything = ""
    for role in ("mentor", "outsider", "guest", "admin", "integration"):
        for path in (
            "/me/relationships",
            f"/relationships/{s['group']}",
            f"/relationships/{s['group']}/sessions",
            f"/relationships/{s['group']}/goals",
            f"/sessions/{s['session']}",
            f"/sessions/{s['session']}/notes",
            f"/relationships/{s['group']}/expectations",
            f"/programs/{s['program']}/relationships",
        ):
            everything += (await svc.client.get(path, headers=h[role])).text
    assert "n-secret" not in everything, "a private note is its author's only"
    assert "b-secret" in everything, "members read the boundaries"
    staff = ""
    for role in ("admin", "integration", "guest", "outsider"):
        for path in (f"/relationships/{s['group']}/sessions", f"/relationships/{s['group']}/goals"):
            staff += (await svc.client.get(path, headers=h[role])).text
    for secret in ("n-secret", "b-secret", "w-secret"):
        assert secret not in staff


# --- bad input --------------------------------------------------------------------------------------


async def _counts(svc: Svc) -> tuple[int, ...]:
    tables = ("sessions", "goals", "goal_steps", "notes", "expectations", "outbox")
    return tuple([int(await svc.pool.fetchval(f"SELECT count(*) FROM {t}")) for t in tables])


async def test_bad_input_is_one_error_naming_the_field_and_stores_nothing(svc: Svc) -> None:
    s = await _scenario(svc)
    mentor, mentee = s["headers"]["mentor"], s["headers"]["mentee"]
    secret = f"secret-{uuid.uuid4().hex}"
    cases: list[tuple[str, str, dict[str, Any], int, list[Any]]] = [
        ("POST", "/relationships/{group}/sessions", {"scheduled_for": ago(120)}, 422, ["body", "scheduled_for"]),
        ("POST", "/relationships/{group}/sessions", {"scheduled_for": soon(400)}, 422, ["body", "scheduled_for"]),
        (
            "POST",
            "/relationships/{group}/sessions",
            {"scheduled_for": "2026-07-01T10:00:00"},
            422,
            ["body", "scheduled_for"],
        ),
        (
            "POST",
            "/relationships/{group}/sessions",
            {"scheduled_for": soon(), "guest_id": "e1"},
            422,
            ["body", "guest_id"],
        ),
        (
            "POST",
            "/relationships/{group}/sessions",
            {"scheduled_for": soon(), "duration_minutes": 0},
            422,
            ["body", "duration_minutes"],
        ),
        (
            "POST",
            "/relationships/{group}/sessions",
            {"scheduled_for": soon(), "topic": secret * 20},
            422,
            ["body", "topic"],
        ),
        (
            "POST",
            "/relationships/{group}/sessions",
            {"scheduled_for": soon(), "colour": "red"},
            422,
            ["body", "colour"],
        ),
        (
            "POST",
            "/sessions/{session}/held",
            {"held_at": ago(0.1), "duration_minutes": 9, "attendees": ["M1", "e2"]},
            422,
            ["body", "attendees", 1],
        ),
        (
            "POST",
            "/sessions/{session}/held",
            {"held_at": soon(1), "duration_minutes": 30, "attendees": ["M1"]},
            422,
            ["body", "held_at"],
        ),
        (
            "POST",
            "/sessions/{session}/held",
            {"held_at": ago(100), "duration_minutes": 30, "attendees": ["M1"]},
            422,
            ["body", "held_at"],
        ),
        ("POST", "/sessions/{session}/held", {"duration_minutes": 30, "attendees": []}, 422, ["body", "attendees"]),
        ("POST", "/sessions/{session}/held", {"duration_minutes": 30, "attendees": ["M1"]}, 422, ["body", "held_at"]),
        ("POST", "/sessions/{session}/cancel", {"reason": "   "}, 422, ["body", "reason"]),
        (
            "POST",
            "/sessions/{session}/reschedule",
            {"scheduled_for": soon(500), "reason": secret},
            422,
            ["body", "scheduled_for"],
        ),
        (
            "POST",
            "/relationships/{group}/goals",
            {"category": "fame", "wording": secret, "steps": ["a"]},
            422,
            ["body", "category"],
        ),
        (
            "POST",
            "/relationships/{group}/goals",
            {"category": "other", "wording": secret, "steps": []},
            422,
            ["body", "steps"],
        ),
        (
            "POST",
            "/relationships/{group}/goals",
            {"category": "other", "wording": secret, "steps": ["a"] * 101},
            422,
            ["body", "steps"],
        ),
        (
            "POST",
            "/relationships/{group}/goals",
            {"category": "other", "wording": secret * 20, "steps": ["a"]},
            422,
            ["body", "wording"],
        ),
        ("POST", "/goals/{goal}/steps/3/done", {}, 404, ["path", "step"]),
        ("POST", "/goals/{goal}/steps/0/done", {}, 422, ["path", "step"]),
        ("POST", "/sessions/{session}/notes", {"text": secret * 1000}, 422, ["body", "text"]),
        ("POST", "/sessions/{session}/notes", {"text": secret, "kind": "diary"}, 422, ["body", "kind"]),
        (
            "PUT",
            "/relationships/{group}/expectations",
            {"format": "telepathy", "boundaries": secret},
            422,
            ["body", "format"],
        ),
        (
            "PUT",
            "/relationships/{group}/expectations",
            {"format": "video", "cadence_days": 0},
            422,
            ["body", "cadence_days"],
        ),
        ("POST", "/relationships/{group}/close", {"outcome": "exploded"}, 422, ["body", "outcome"]),
        ("POST", "/relationships/grp-nope/sessions", {"scheduled_for": soon()}, 404, ["path", "group_id"]),
        ("POST", "/sessions/ses-nope/held", {"duration_minutes": 30, "attendees": ["M1"]}, 404, ["path", "session_id"]),
    ]
    before = await _counts(svc)
    for method, template, body, status, loc in cases:
        who = mentee if "goals" in template or "notes" in template else mentor
        r = await svc.client.request(method, template.format(**s), json=body, headers=who)
        assert r.status_code == status, (template, body, r.text)
        detail = r.json()["detail"]
        assert len(detail) == 1 and detail[0]["loc"] == loc, (template, detail)
        assert set(detail[0]) == {"loc", "msg", "type"}
        assert secret not in r.text, "an error never repeats the text it refused"
    assert await _counts(svc) == before


async def test_a_held_session_is_not_logged_or_moved_again(svc: Svc) -> None:
    s = await _scenario(svc)
    mentor = s["headers"]["mentor"]
    r = await svc.client.post(f"/relationships/{s['group']}/sessions", json={"scheduled_for": ago(2)}, headers=mentor)
    session_id = r.json()["session_id"]
    held = {"duration_minutes": 30, "attendees": ["M1"]}
    assert (await svc.client.post(f"/sessions/{session_id}/held", json=held, headers=mentor)).status_code == 200
    r = await svc.client.post(f"/sessions/{session_id}/held", json=held, headers=mentor)
    assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["path", "session_id"]
    r = await svc.client.post(f"/sessions/{session_id}/cancel", json={"reason": "x"}, headers=mentor)
    assert r.status_code == 409


async def test_texts_are_sealed_at_rest(svc: Svc) -> None:
    s = await _scenario(svc)
    h = s["headers"]
    marker = f"mk-{uuid.uuid4().hex}"
    await svc.client.post(f"/sessions/{s['session']}/notes", json={"text": marker}, headers=h["mentee"])
    await svc.client.post(
        f"/relationships/{s['group']}/goals",
        json={"category": "other", "wording": marker, "steps": [marker]},
        headers=h["mentee"],
    )
    await svc.client.put(
        f"/relationships/{s['group']}/expectations",
        json={"format": "video", "agenda_template": marker, "boundaries": marker},
        headers=h["mentor"],
    )
    await svc.client.post(
        f"/sessions/{s['session']}/reschedule", json={"scheduled_for": soon(3), "reason": marker}, headers=h["mentor"]
    )
    raw = await svc.raw_tables()
    for secret in (marker, "n-secret", "w-secret", "b-secret", "t-secret"):
        assert secret not in raw
        assert secret.encode().hex() not in raw
    keys = await svc.pool.fetch("SELECT DISTINCT text_key FROM notes")
    assert [r["text_key"] for r in keys] == ["k1"]


async def test_a_peer_group_member_sets_expectations(svc: Svc) -> None:
    program_id = await svc.program(Form.PEER_GROUP)
    peers = [(f"p{i}", Role.PEER) for i in range(3)]
    group_id = await svc.group(program_id, *peers, form=Form.PEER_GROUP)
    r = await svc.client.put(
        f"/relationships/{group_id}/expectations",
        json={"format": "in_person", "cadence_days": 7},
        headers=svc.as_("p2"),
    )
    assert r.status_code == 200 and r.json()["cadence_days"] == 7
    r = await svc.client.get(f"/relationships/{group_id}", headers=svc.as_("p0"))
    assert r.json()["cadence_days"] == 7
