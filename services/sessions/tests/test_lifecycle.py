"""The consumer handlers on the real database: relationships follow matching and enrollment, and every
end publishes exactly one relationship.closed, also when events arrive twice or out of order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import ParticipantEnrolled, ParticipantProfile, ParticipantWithdrawn, ProgramUpdated
from contracts.policy import Form, Role, default_policy
from services.sessions.tests.conftest import Svc

pytestmark = pytest.mark.stack

MENTOR, MENTEE = Role.MENTOR, Role.MENTEE


def withdrawn(program_id: str, participant_id: str) -> ParticipantWithdrawn:
    return ParticipantWithdrawn(program_id=program_id, participant_id=participant_id, withdrawn_at=datetime.now(UTC))


async def closures(svc: Svc) -> list[tuple[str, str, int]]:
    return [
        (e["group_id"], e["reason"], e["term"])
        for e in await svc.outbox()
        if e["type"] == "org.mentoring.relationship.closed.v1"
    ]


async def status(svc: Svc, group_id: str) -> tuple[str, str | None]:
    row = await svc.pool.fetchrow("SELECT status, outcome FROM relationships WHERE group_id = $1", group_id)
    return row["status"], row["outcome"]


async def test_a_mentor_withdrawing_closes_the_pair_once_and_cancels_what_was_scheduled(svc: Svc) -> None:
    program_id = await svc.program()
    group_id = await svc.group(program_id, ("M1", MENTOR), ("e1", MENTEE))
    other = await svc.group(program_id, ("M2", MENTOR), ("e2", MENTEE))
    when = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    r = await svc.client.post(
        f"/relationships/{group_id}/sessions", json={"scheduled_for": when}, headers=svc.as_("e1")
    )
    assert r.status_code == 201

    event = withdrawn(program_id, "M1")
    await svc.apply(event)
    assert await status(svc, group_id) == ("closed", "withdrawn")
    assert await status(svc, other) == ("open", None)
    assert await closures(svc) == [(group_id, "withdrawn", 1)]
    sessions = (await svc.client.get(f"/relationships/{group_id}/sessions", headers=svc.as_("e1"))).json()
    assert [s["status"] for s in sessions] == ["cancelled"]

    before = await svc.outbox()
    await svc.apply(event, event_id="another-delivery")
    assert await svc.outbox() == before, "a second delivery of the withdrawal changes nothing"

    mine = (await svc.client.get("/me/relationships", headers=svc.as_("e1"))).json()
    assert [(m["status"], m["outcome"]) for m in mine] == [("closed", "withdrawn")]


async def test_a_group_goes_on_while_it_keeps_its_minimum_then_closes(svc: Svc) -> None:
    program_id = await svc.program(Form.FACILITATED_GROUP, group_members_min=3)
    members = [("M1", MENTOR), *((f"e{i}", MENTEE) for i in range(4))]
    group_id = await svc.group(program_id, *members, form=Form.FACILITATED_GROUP)

    await svc.apply(withdrawn(program_id, "e0"))
    assert await status(svc, group_id) == ("open", None) and await closures(svc) == []
    r = await svc.client.get(f"/relationships/{group_id}", headers=svc.as_("e0"))
    assert r.status_code == 404, "a member whose part ended no longer reads the group"
    r = await svc.client.get(f"/relationships/{group_id}", headers=svc.as_("M1"))
    assert {m["participant_id"]: m["active"] for m in r.json()["members"]}["e0"] is False

    await svc.apply(withdrawn(program_id, "e1"))
    assert await status(svc, group_id) == ("closed", "withdrawn")
    assert await closures(svc) == [(group_id, "withdrawn", 1)]


async def test_a_peer_group_below_its_minimum_closes(svc: Svc) -> None:
    program_id = await svc.program(Form.PEER_GROUP)
    group_id = await svc.group(program_id, *((f"p{i}", Role.PEER) for i in range(3)), form=Form.PEER_GROUP)
    await svc.apply(withdrawn(program_id, "p1"))
    assert await closures(svc) == [(group_id, "withdrawn", 1)]


async def test_a_group_arriving_after_its_mentors_withdrawal_closes_at_once(svc: Svc) -> None:
    program_id = await svc.program()
    await svc.apply(withdrawn(program_id, "M1"))
    group_id = await svc.group(program_id, ("M1", MENTOR), ("e1", MENTEE))
    assert await status(svc, group_id) == ("closed", "withdrawn")
    assert await closures(svc) == [(group_id, "withdrawn", 1)]


async def test_enrolling_again_after_a_withdrawal_lets_a_later_group_hold_the_person(svc: Svc) -> None:
    program_id = await svc.program()
    await svc.apply(withdrawn(program_id, "M1"))
    profile = ParticipantProfile(participant_id="M1", role=MENTOR, department="ops", level=5, capacity=2)
    await svc.apply(ParticipantEnrolled(program_id=program_id, profile=profile, enrolled_at=datetime.now(UTC)))
    group_id = await svc.group(program_id, ("M1", MENTOR), ("e1", MENTEE))
    assert await status(svc, group_id) == ("open", None)


async def test_a_group_matched_twice_is_one_relationship(svc: Svc) -> None:
    program_id = await svc.program()
    event = svc.matched(program_id, ("M1", MENTOR), ("e1", MENTEE))
    await svc.apply(event)
    await svc.apply(event, event_id="redelivered-under-another-id")
    assert await svc.pool.fetchval("SELECT count(*) FROM members WHERE group_id = $1", event.group_id) == 2
    mine = (await svc.client.get("/me/relationships", headers=svc.as_("M1"))).json()
    assert len(mine) == 1 and mine[0]["members"] == [{"participant_id": "e1", "role": "mentee", "active": True}]


async def test_closing_the_program_closes_its_open_relationships_once(svc: Svc) -> None:
    program_id = await svc.program(cadence_days=10)
    open_ids = [await svc.group(program_id, (f"M{i}", MENTOR), (f"e{i}", MENTEE)) for i in range(3)]
    r = await svc.client.post(f"/relationships/{open_ids[0]}/close", json={"outcome": "faded"}, headers=svc.admin)
    assert r.status_code == 200
    update = ProgramUpdated(
        program_id=program_id,
        name="Leaders",
        form=Form.ONE_TO_ONE,
        cadence_days=10,
        starts_on=datetime(2026, 1, 1, tzinfo=UTC).date(),
        policy=default_policy(Form.ONE_TO_ONE),
        opened_at=datetime.now(UTC),
        status="closed",
    )
    await svc.apply(update)
    await svc.apply(update, event_id="again")
    assert sorted(await closures(svc)) == sorted(
        [(open_ids[0], "faded", 1), (open_ids[1], "completed", 1), (open_ids[2], "completed", 1)]
    )
    late = await svc.group(program_id, ("M9", MENTOR), ("e9", MENTEE))
    assert await status(svc, late) == ("closed", "completed"), "a group of a closed program ends as it arrives"


async def test_open_groups_follow_the_programs_cadence_until_they_agree_their_own(svc: Svc) -> None:
    program_id = await svc.program(cadence_days=14)
    own = await svc.group(program_id, ("M1", MENTOR), ("e1", MENTEE))
    follows = await svc.group(program_id, ("M2", MENTOR), ("e2", MENTEE))
    r = await svc.client.put(f"/relationships/{own}/expectations", json={"format": "phone"}, headers=svc.as_("M1"))
    assert r.json()["cadence_days"] == 14
    await svc.apply(
        ProgramUpdated(
            program_id=program_id,
            name="Leaders",
            form=Form.ONE_TO_ONE,
            cadence_days=30,
            starts_on=datetime(2026, 1, 1, tzinfo=UTC).date(),
            policy=default_policy(Form.ONE_TO_ONE),
            opened_at=datetime.now(UTC),
        )
    )
    page = (await svc.client.get(f"/programs/{program_id}/relationships", headers=svc.admin)).json()
    assert {r["group_id"]: r["cadence_days"] for r in page["items"]} == {own: 14, follows: 30}


async def test_a_programs_relationships_come_in_pages(svc: Svc) -> None:
    program_id = await svc.program()
    ids = sorted([await svc.group(program_id, (f"M{i}", MENTOR), (f"e{i}", MENTEE)) for i in range(3)])
    url = f"/programs/{program_id}/relationships"
    first = (await svc.client.get(url, params={"limit": 2}, headers=svc.integration)).json()
    assert [r["group_id"] for r in first["items"]] == ids[:2] and first["next_after"] == ids[1]
    rest = (await svc.client.get(url, params={"limit": 2, "after": ids[1]}, headers=svc.integration)).json()
    assert [r["group_id"] for r in rest["items"]] == ids[2:] and rest["next_after"] is None
    r = await svc.client.get(url, params={"limit": 0}, headers=svc.admin)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]
    r = await svc.client.get("/programs/prg-unknown/relationships", headers=svc.admin)
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["path", "program_id"]


async def test_a_member_and_an_admin_closing_at_once_close_it_once(svc: Svc) -> None:
    program_id = await svc.program()
    group_id = await svc.group(program_id, ("M1", MENTOR), ("e1", MENTEE))
    url = f"/relationships/{group_id}/close"
    first, second = await asyncio.gather(
        svc.client.post(url, json={"outcome": "completed"}, headers=svc.as_("e1")),
        svc.client.post(url, json={"outcome": "faded"}, headers=svc.admin),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    winner = "completed" if first.status_code == 200 else "faded"
    assert await closures(svc) == [(group_id, winner, 1)]
    await svc.apply(withdrawn(program_id, "M1"))
    assert await closures(svc) == [(group_id, winner, 1)], "a closed group does not close again"
