"""Key rotation: the re-encryption command moves every comment to the current key, after which the
old key can go and a second key alone decrypts them."""

from __future__ import annotations

import asyncio

import pytest

from conftest import unique
from contracts.policy import Role
from runtime.crypto import DEV_KEYS, KeyRing, Sealed, new_key
from services.feedback.cli import main
from services.feedback.handlers import comment_context
from services.feedback.tests.support import T0, Feedback, group_matched, session_held

pytestmark = pytest.mark.stack


async def test_reencrypt_moves_comments_to_the_new_key_which_then_reads_them_alone(
    feedback: Feedback, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fb = feedback
    markers = [unique("ROTATE-ME"), unique("ROTATE-ME")]
    group_id = unique("grp")
    people = {"E-a": Role.MENTOR, "E-b": Role.MENTEE}
    await fb.learn(group_matched(fb.program_id, group_id, people))
    for i, (person, marker) in enumerate(zip(people, markers, strict=True)):
        session_id = unique("ses")
        await fb.learn(session_held(fb.program_id, group_id, session_id, [person], T0))
        body = {
            "survey_id": "default-session", "survey_version": 1, "group_id": group_id, "session_id": session_id,
            "answers": [{"question_id": "rating", "score": 3 + i}], "comment": marker,
        }  # fmt: skip
        fb.clock.at(0.5)
        assert (await fb.http.post("/me/answers", json=body, headers=fb.participant(person))).status_code == 201
    assert {r[0] for r in await fb.pool.fetch("SELECT comment_key_id FROM answers")} == {"dev-1"}

    second = new_key("k2")
    monkeypatch.setenv("FEEDBACK_DATABASE_URL", fb.dsn)
    monkeypatch.setenv("FEEDBACK_DB_SCHEMA", fb.schema)
    monkeypatch.setenv("FEEDBACK_ENCRYPTION_KEYS", f"{DEV_KEYS},{second}")
    monkeypatch.setenv("FEEDBACK_ENCRYPTION_KEY_ID", "k2")
    assert await asyncio.to_thread(main, ["reencrypt"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == "2 comment(s) re-encrypted under key k2"
    assert not any(m in out for m in markers)
    assert await asyncio.to_thread(main, ["reencrypt"]) == 0
    assert capsys.readouterr().out.startswith("0 comment(s)")

    only_k2 = KeyRing.parse(second, "k2")
    rows = await fb.pool.fetch("SELECT feedback_id, comment_key_id, comment_blob FROM answers")
    assert {r["comment_key_id"] for r in rows} == {"k2"}
    opened = {
        only_k2.open(Sealed("k2", bytes(r["comment_blob"])), context=comment_context(r["feedback_id"])) for r in rows
    }
    assert opened == set(markers)

    # the service configured with the new key alone reads them; the old key alone no longer does
    fb.app.state.key_ring = only_k2
    r = await fb.http.get("/me/answers", headers=fb.participant("E-a"))
    assert r.json()["items"][0]["comment"] == markers[0]
    with pytest.raises(Exception, match="no key 'k2'"):
        KeyRing.parse(DEV_KEYS, "dev-1").open(Sealed("k2", bytes(rows[0]["comment_blob"])), context="x")
