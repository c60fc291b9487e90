"""The feedback API on the real database: surveys, due surveys, answers, comments, who may do what,
and bad input refused naming the field with nothing stored."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from conftest import StackEndpoints, unique
from contracts.events import ClosureReason, SurveyKind
from contracts.policy import Role
from runtime.db import create_pool, migrate
from services.feedback.app import MIGRATIONS
from services.feedback.tests.support import T0, Feedback, closed, group_matched, session_held

pytestmark = pytest.mark.stack

MENTOR, MENTEE, OUTSIDER = "E-mentor", "E-mentee", "E-outsider"


async def one_session(fb: Feedback, *, attendees: list[str] | None = None) -> tuple[str, str]:
    group_id, session_id = unique("grp"), unique("ses")
    await fb.learn(
        group_matched(fb.program_id, group_id, {MENTOR: Role.MENTOR, MENTEE: Role.MENTEE}),
        session_held(fb.program_id, group_id, session_id, attendees or [MENTOR, MENTEE], T0 + _days(1)),
    )
    fb.clock.at(1.1)
    return group_id, session_id


def _days(n: float) -> Any:
    from datetime import timedelta

    return timedelta(days=n)


def rating(group_id: str, session_id: str, score: int = 4, **extra: Any) -> dict[str, Any]:
    return {
        "survey_id": "default-session",
        "survey_version": 1,
        "group_id": group_id,
        "session_id": session_id,
        "answers": [{"question_id": "rating", "score": score}],
        **extra,
    }


async def test_default_surveys_are_installed_once_even_by_two_replicas_starting_together(
    stack: StackEndpoints, scratch_schemas: list[str]
) -> None:
    schema = unique("feedback_twice")
    scratch_schemas.append(schema)
    pools = [await create_pool(stack.admin_dsn, schema) for _ in range(2)]
    try:
        await asyncio.gather(*(migrate(p, schema, {"feedback": MIGRATIONS}) for p in pools))
        rows = await pools[0].fetch("SELECT survey_id, version FROM surveys ORDER BY survey_id")
    finally:
        for p in pools:
            await p.close()
    assert [(r["survey_id"], r["version"]) for r in rows] == [
        ("default-checkin", 1),
        ("default-program", 1),
        ("default-session", 1),
    ]


async def test_admins_list_create_and_version_surveys(feedback: Feedback) -> None:
    fb = feedback
    admin = fb.token("hr", "admin")
    r = await fb.http.get("/surveys", headers=admin)
    assert r.status_code == 200
    defaults = {s["survey_id"]: s for s in r.json()}
    assert set(defaults) == {"default-session", "default-checkin", "default-program"}
    checkin = defaults["default-checkin"]
    assert checkin["every_days"] == 30
    assert {q["measure"]: q["asked_of"] for q in checkin["questions"]} == {
        "mentor_helps": ["mentee"],
        "mentee_engaged": ["mentor"],
        "pairing_fit": ["mentor", "mentee", "peer"],
    }
    assert defaults["default-program"]["questions"][0]["scale_max"] == 10
    assert (await fb.http.get("/surveys", headers=fb.token("bi", "integration"))).status_code == 200
    assert (await fb.http.get("/surveys", headers=fb.participant(MENTEE))).status_code == 403

    spec = {
        "name": "Workshop",
        "kind": "session",
        "questions": [
            {"question_id": "useful", "text": "Useful?", "measure": "session_rating", "scale_min": 1, "scale_max": 5}
        ],
    }
    r = await fb.http.post("/surveys", json=spec, headers=admin)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["version"] == 1 and created["created_by"] == "hr"
    sid = created["survey_id"]
    assert (await fb.http.post("/surveys", json=spec, headers=fb.participant(MENTEE))).status_code == 403

    spec["name"] = "Workshop (shorter)"
    r = await fb.http.put(f"/surveys/{sid}", json=spec, headers=admin)
    assert r.status_code == 200 and r.json()["version"] == 2
    r = await fb.http.get(f"/surveys/{sid}", params={"version": 1}, headers=fb.participant(MENTEE))
    assert r.status_code == 200 and r.json()["name"] == "Workshop"
    r = await fb.http.get(f"/surveys/{sid}", headers=admin)
    assert r.json()["version"] == 2

    r = await fb.http.put(f"/surveys/{sid}", json={**spec, "kind": "program"}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "kind"]
    r = await fb.http.put("/surveys/nope", json=spec, headers=admin)
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["path", "survey_id"]
    r = await fb.http.get(f"/surveys/{sid}", params={"version": 9}, headers=admin)
    assert r.status_code == 404

    retired = {**spec, "active": False}
    assert (await fb.http.put(f"/surveys/{sid}", json=retired, headers=admin)).json()["version"] == 3
    assert sid not in {s["survey_id"] for s in (await fb.http.get("/surveys", headers=admin)).json()}
    r = await fb.http.get("/surveys", params={"include_retired": True}, headers=admin)
    assert sid in {s["survey_id"] for s in r.json()}


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"kind": "weekly"}, ["body", "kind"]),
        ({"questions": []}, ["body", "questions"]),
        ({"every_days": 7}, ["body"]),
        ({"questions": [{"question_id": "q", "text": "t", "measure": "vibes", "scale_min": 1, "scale_max": 5}]},
         ["body", "questions", 0, "measure"]),
        ({"questions": [{"question_id": "q", "text": "t", "measure": "other", "scale_min": 5, "scale_max": 1}]},
         ["body", "questions", 0]),
        ({"colour": "red"}, ["body", "colour"]),
    ],
)  # fmt: skip
async def test_a_bad_survey_is_refused_naming_the_field_and_nothing_is_stored(
    feedback: Feedback, change: dict[str, Any], loc: list[Any]
) -> None:
    fb = feedback
    spec = {
        "name": "x",
        "kind": "session",
        "questions": [{"question_id": "q", "text": "t", "measure": "other", "scale_min": 1, "scale_max": 5}],
        **change,
    }
    r = await fb.http.post("/surveys", json=spec, headers=fb.token("hr", "admin"))
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc
    assert set(r.json()["detail"][0]) == {"loc", "msg", "type"}
    assert await fb.count("surveys") == 3


async def test_a_member_sees_what_is_due_answers_once_and_a_second_answer_replaces_the_first(
    feedback: Feedback,
) -> None:
    fb = feedback
    group_id, session_id = await one_session(fb)
    mentee = fb.participant(MENTEE)
    r = await fb.http.get("/me/surveys/due", headers=mentee)
    assert r.status_code == 200
    (due,) = r.json()["items"]
    assert (due["survey_id"], due["kind"], due["group_id"], due["session_id"], due["role"]) == (
        "default-session", "session", group_id, session_id, "mentee",
    )  # fmt: skip
    assert [q["question_id"] for q in due["questions"]] == ["rating"]

    r = await fb.http.post("/me/answers", json=rating(group_id, session_id, 2, comment="too short"), headers=mentee)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["revision"] == 1 and first["scores"][0]["score"] == 2 and first["comment"] == "too short"
    assert (await fb.http.get("/me/surveys/due", headers=mentee)).json()["items"] == []

    r = await fb.http.post("/me/answers", json=rating(group_id, session_id, 5), headers=mentee)
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["feedback_id"] == first["feedback_id"] and second["revision"] == 2
    (mine,) = (await fb.http.get("/me/answers", headers=mentee)).json()["items"]
    assert mine["revision"] == 2 and mine["scores"][0]["score"] == 5 and mine["comment"] is None
    assert await fb.count("answers") == 1
    assert await fb.count("outbox") == 2, "one feedback.given per answer, the replacement included"

    # the mentor still has theirs to give; the check-in comes after 30 days, for each their question
    assert len((await fb.http.get("/me/surveys/due", headers=fb.participant(MENTOR))).json()["items"]) == 1
    fb.clock.at(31)
    items = (await fb.http.get("/me/surveys/due", headers=fb.participant(MENTOR))).json()["items"]
    assert [(i["kind"], i["period"]) for i in items] == [("checkin", 1)]
    assert [q["question_id"] for q in items[0]["questions"]] == ["mentee-engaged", "pairing-fit"]
    body = {
        "survey_id": "default-checkin", "survey_version": 1, "group_id": group_id, "period": 1,
        "answers": [{"question_id": "mentee-engaged", "score": 4}, {"question_id": "pairing-fit", "score": 5}],
    }  # fmt: skip
    r = await fb.http.post("/me/answers", json=body, headers=fb.participant(MENTOR))
    assert r.status_code == 201, r.text
    assert {s["measure"] for s in r.json()["scores"]} == {"mentee_engaged", "pairing_fit"}


async def test_the_program_survey_is_due_when_the_relationship_closes_but_not_on_renewal(feedback: Feedback) -> None:
    fb = feedback
    group_id, _ = await one_session(fb)
    await fb.learn(closed(fb.program_id, group_id, T0 + _days(2), ClosureReason.RENEWED))
    fb.clock.at(3)
    kinds = {i["kind"] for i in (await fb.http.get("/me/surveys/due", headers=fb.participant(MENTEE))).json()["items"]}
    assert kinds == {"session"}
    await fb.learn(closed(fb.program_id, group_id, T0 + _days(3)))
    fb.clock.at(4)
    items = (await fb.http.get("/me/surveys/due", headers=fb.participant(MENTEE))).json()["items"]
    assert {i["kind"] for i in items} == {"session", "program"}
    body = {
        "survey_id": "default-program", "survey_version": 1, "group_id": group_id,
        "answers": [{"question_id": "recommend", "score": 9}],
    }  # fmt: skip
    r = await fb.http.post("/me/answers", json=body, headers=fb.participant(MENTEE))
    assert r.status_code == 201 and r.json()["kind"] == SurveyKind.PROGRAM.value


async def _nothing_stored(fb: Feedback) -> None:
    assert await fb.count("answers") == 0
    assert await fb.count("outbox") == 0


@pytest.mark.parametrize(
    ("who", "change", "status", "loc"),
    [
        (OUTSIDER, {}, 403, ["body", "group_id"]),
        (MENTOR, {}, 403, ["body", "session_id"]),
        (MENTEE, {"survey_id": "nope"}, 422, ["body", "survey_id"]),
        (MENTEE, {"survey_version": 7}, 422, ["body", "survey_version"]),
        (MENTEE, {"session_id": "ses-unknown"}, 422, ["body", "session_id"]),
        (MENTEE, {"answers": [{"question_id": "rating", "score": 6}]}, 422, ["body", "answers", 0, "score"]),
        (MENTEE, {"answers": [{"question_id": "rating", "score": 0}]}, 422, ["body", "answers", 0, "score"]),
        (MENTEE, {"answers": [{"question_id": "vibes", "score": 3}]}, 422, ["body", "answers", 0, "question_id"]),
        (MENTEE, {"answers": [{"question_id": "rating", "score": "high"}]}, 422, ["body", "answers", 0, "score"]),
        (MENTEE, {"answers": []}, 422, ["body", "answers"]),
        (MENTEE, {"period": 1}, 422, ["body", "period"]),
        (MENTEE, {"comment": "x" * 4001}, 422, ["body", "comment"]),
        (MENTEE, {"survey_id": "default-program"}, 422, ["body", "session_id"]),
    ],
)
async def test_a_refused_answer_names_the_field_and_stores_nothing(
    feedback: Feedback, who: str, change: dict[str, Any], status: int, loc: list[Any]
) -> None:
    fb = feedback
    group_id, session_id = await one_session(fb, attendees=[MENTEE])
    r = await fb.http.post("/me/answers", json={**rating(group_id, session_id), **change}, headers=fb.participant(who))
    assert r.status_code == status, r.text
    (error,) = r.json()["detail"]
    assert error["loc"] == loc and set(error) == {"loc", "msg", "type"}
    await _nothing_stored(fb)


async def test_a_rejected_body_is_never_echoed(feedback: Feedback) -> None:
    fb = feedback
    group_id, session_id = await one_session(fb)
    marker = unique("SECRET-COMMENT")
    for body in (
        {**rating(group_id, session_id), "coment": marker},  # a misspelt field
        {**rating(group_id, session_id), "comment": {"text": marker}},  # not a string
        [marker],  # not an object
    ):
        r = await fb.http.post("/me/answers", json=body, headers=fb.participant(MENTEE))
        assert r.status_code == 422 and marker not in r.text, r.text
    await _nothing_stored(fb)


async def test_who_reads_what(feedback: Feedback) -> None:
    fb = feedback
    group_id, session_id = await one_session(fb)
    marker = unique("COMMENT")
    r = await fb.http.post(
        "/me/answers", json=rating(group_id, session_id, comment=marker), headers=fb.participant(MENTEE)
    )
    assert r.status_code == 201
    comments = f"/programs/{fb.program_id}/comments"

    # the author reads their own answer and comment; the other member and an outsider read none of it
    assert (await fb.http.get("/me/answers", headers=fb.participant(MENTEE))).json()["items"][0]["comment"] == marker
    for other in (MENTOR, OUTSIDER):
        r = await fb.http.get("/me/answers", headers=fb.participant(other))
        assert r.status_code == 200 and r.json()["items"] == [] and marker not in r.text
        assert (await fb.http.get(comments, headers=fb.participant(other))).status_code == 403

    # neither a plain admin, nor integration (with the permission or not) reads comments or answers
    for headers in (
        fb.token("hr", "admin"),
        fb.token("bi", "integration"),
        fb.token("bi", "integration", permissions=["feedback:read-text"]),
    ):
        for url in (comments, "/me/answers"):
            r = await fb.http.get(url, headers=headers)
            assert r.status_code == 403 and marker not in r.text, (url, r.text)
    # the permission without the admin role reads no one else's comment
    r = await fb.http.get(comments, headers=fb.token(MENTOR, "participant", permissions=["feedback:read-text"]))
    assert r.status_code == 403 and marker not in r.text
    assert (await fb.http.get(comments)).status_code == 401

    # an admin holding feedback:read-text reads it, without the respondent's id
    r = await fb.http.get(comments, headers=fb.token("hr-lead", "admin", permissions=["feedback:read-text"]))
    assert r.status_code == 200
    (item,) = r.json()["items"]
    assert item["comment"] == marker and item["respondent_role"] == "mentee" and MENTEE not in r.text
    r = await fb.http.get(
        f"/programs/{unique('prg')}/comments", headers=fb.token("x", "admin", permissions=["feedback:read-text"])
    )
    assert r.json()["items"] == []

    # what is stored is ciphertext under a key id, bound to its row
    row = await fb.pool.fetchrow("SELECT * FROM answers")
    assert row["comment_key_id"] == "dev-1" and marker.encode() not in bytes(row["comment_blob"])
    assert marker not in str(dict(row))


async def test_two_answers_at_once_make_one_answer_and_two_revisions(feedback: Feedback) -> None:
    fb = feedback
    group_id, session_id = await one_session(fb)
    posts = [
        fb.http.post("/me/answers", json=rating(group_id, session_id, score), headers=fb.participant(MENTEE))
        for score in (1, 5)
    ]
    responses = await asyncio.gather(*posts)
    assert sorted(r.status_code for r in responses) == [200, 201]
    assert {r.json()["feedback_id"] for r in responses} == {responses[0].json()["feedback_id"]}
    assert sorted(r.json()["revision"] for r in responses) == [1, 2]
    assert await fb.count("answers") == 1 and await fb.count("outbox") == 2


async def test_two_edits_at_once_make_two_versions(feedback: Feedback) -> None:
    fb = feedback
    admin = fb.token("hr", "admin")
    current = (await fb.http.get("/surveys/default-session", headers=admin)).json()
    spec = {k: current[k] for k in ("name", "kind", "questions")}
    edits = [fb.http.put("/surveys/default-session", json={**spec, "name": n}, headers=admin) for n in ("a", "b")]
    responses = await asyncio.gather(*edits)
    assert sorted(r.json()["version"] for r in responses) == [2, 3]


async def test_answers_name_the_version_they_answered_and_retired_surveys_take_none(feedback: Feedback) -> None:
    fb = feedback
    group_id, session_id = await one_session(fb)
    admin = fb.token("hr", "admin")
    v1 = (await fb.http.get("/surveys/default-session", headers=admin)).json()
    extra = {
        "question_id": "prepared",
        "text": "Was the agenda clear?",
        "measure": "other",
        "scale_min": 1,
        "scale_max": 3,
    }
    spec = {"name": v1["name"], "kind": "session", "questions": [*v1["questions"], extra]}
    assert (await fb.http.put("/surveys/default-session", json=spec, headers=admin)).json()["version"] == 2

    (due,) = (await fb.http.get("/me/surveys/due", headers=fb.participant(MENTEE))).json()["items"]
    assert due["survey_version"] == 2 and [q["question_id"] for q in due["questions"]] == ["rating", "prepared"]
    # a form loaded before the edit is still accepted, against the questions of its version
    r = await fb.http.post("/me/answers", json=rating(group_id, session_id), headers=fb.participant(MENTEE))
    assert r.status_code == 201 and r.json()["survey_version"] == 1
    both = {**rating(group_id, session_id), "survey_version": 2}
    r = await fb.http.post("/me/answers", json=both, headers=fb.participant(MENTOR))
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "unanswered question(s): prepared"
    both["answers"] = [{"question_id": "rating", "score": 5}, {"question_id": "prepared", "score": 3}]
    assert (await fb.http.post("/me/answers", json=both, headers=fb.participant(MENTOR))).status_code == 201

    assert (
        await fb.http.put("/surveys/default-session", json={**spec, "active": False}, headers=admin)
    ).status_code == 200
    r = await fb.http.post("/me/answers", json=rating(group_id, session_id), headers=fb.participant(MENTEE))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "survey_id"]
    assert (await fb.http.get("/me/surveys/due", headers=fb.participant(MENTOR))).json()["items"] == []
