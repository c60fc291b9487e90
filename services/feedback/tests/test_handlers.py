"""The event handlers on the real database: what feedback learns from matching and sessions, in
whichever order the two topics deliver it, and that applying an event twice changes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conftest import unique
from contracts.events import ClosureReason, ParticipantWithdrawn
from contracts.policy import Role
from services.feedback.adapters import repository as repo
from services.feedback.tests.support import T0, Feedback, closed, group_matched, session_held

pytestmark = pytest.mark.stack


async def test_a_session_learnt_before_its_group_becomes_due_once_the_group_arrives(feedback: Feedback) -> None:
    fb = feedback
    group_id, session_id = unique("grp"), unique("ses")
    await fb.learn(session_held(fb.program_id, group_id, session_id, ["E1", "E2"], T0 + timedelta(days=1)))
    fb.clock.at(2)
    assert (await fb.http.get("/me/surveys/due", headers=fb.participant("E1"))).json()["items"] == []
    await fb.learn(group_matched(fb.program_id, group_id, {"E1": Role.MENTOR, "E2": Role.MENTEE}))
    (due,) = (await fb.http.get("/me/surveys/due", headers=fb.participant("E1"))).json()["items"]
    assert (due["session_id"], due["role"]) == (session_id, "mentor")


async def test_applying_events_twice_changes_nothing_and_a_new_matching_of_the_group_replaces_its_members(
    feedback: Feedback,
) -> None:
    fb = feedback
    group_id, session_id = unique("grp"), unique("ses")
    events = [
        group_matched(fb.program_id, group_id, {"E1": Role.MENTOR, "E2": Role.MENTEE}),
        session_held(fb.program_id, group_id, session_id, ["E1", "E2"], T0),
        closed(fb.program_id, group_id, T0 + timedelta(days=3)),
    ]
    await fb.learn(*events)
    tables = ("groups", "group_members", "sessions_held", "session_attendees", "closures")
    counts = [await fb.count(t) for t in tables]
    await fb.learn(*events)
    assert [await fb.count(t) for t in tables] == counts
    await fb.learn(group_matched(fb.program_id, group_id, {"E1": Role.MENTOR, "E3": Role.MENTEE}))
    async with fb.pool.acquire() as conn:
        assert await repo.membership(conn, group_id, "E2") is None
        member = await repo.membership(conn, group_id, "E3")
    assert member is not None and member.role is Role.MENTEE and member.closed_at == T0 + timedelta(days=3)


async def test_a_renewal_ends_nothing_and_the_first_final_closure_is_kept(feedback: Feedback) -> None:
    fb = feedback
    group_id = unique("grp")
    await fb.learn(
        group_matched(fb.program_id, group_id, {"E1": Role.PEER, "E2": Role.PEER}),
        closed(fb.program_id, group_id, T0 + timedelta(days=10), ClosureReason.RENEWED),
    )
    async with fb.pool.acquire() as conn:
        membership = await repo.membership(conn, group_id, "E1")
        assert membership is not None and membership.active
        await fb.learn(
            closed(fb.program_id, group_id, T0 + timedelta(days=20), ClosureReason.FADED),
            closed(fb.program_id, group_id, T0 + timedelta(days=30), ClosureReason.WITHDRAWN),
        )
        membership = await repo.membership(conn, group_id, "E1")
    assert membership is not None and membership.closed_at == T0 + timedelta(days=20)


async def test_a_member_who_leaves_the_program_gets_no_more_check_ins_but_the_program_survey(
    feedback: Feedback,
) -> None:
    fb = feedback
    group_id = unique("grp")
    members = {"E1": Role.MENTOR, "E2": Role.MENTEE, "E3": Role.MENTEE}
    left = ParticipantWithdrawn(program_id=fb.program_id, participant_id="E2", withdrawn_at=T0 + timedelta(days=40))
    earlier = ParticipantWithdrawn(program_id=fb.program_id, participant_id="E3", withdrawn_at=T0 - timedelta(days=9))
    await fb.learn(left, earlier, group_matched(fb.program_id, group_id, members))  # enrollment's topic came first
    fb.clock.at(41)

    async def kinds(person: str) -> list[tuple[str, int | None]]:
        items = (await fb.http.get("/me/surveys/due", headers=fb.participant(person))).json()["items"]
        return [(i["kind"], i["period"]) for i in items]

    assert await kinds("E1") == [("checkin", 1)]
    assert await kinds("E2") == [("program", None)], "left after being matched: their part has ended"
    assert await kinds("E3") == [("checkin", 1)], "a withdrawal before this matching (since re-enrolled) ends nothing"
