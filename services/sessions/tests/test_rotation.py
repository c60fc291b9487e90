"""Key rotation: ``python -m services.sessions.cli reencrypt`` moves every stored text to the current key,
after which a service holding only the new key reads them all, and a second run rewrites nothing."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from conftest import ROOT, StackEndpoints
from contracts.policy import Role
from runtime.crypto import new_key
from services.sessions.app import SessionsSettings, create
from services.sessions.tests.conftest import KEY_1, Svc

pytestmark = pytest.mark.stack


async def _reencrypt(stack: StackEndpoints, schema: str, keys: str, current: str) -> str:
    env = {
        **os.environ,
        "SESSIONS_DATABASE_URL": stack.admin_dsn,
        "SESSIONS_DB_SCHEMA": schema,
        "SESSIONS_ENCRYPTION_KEYS": keys,
        "SESSIONS_ENCRYPTION_KEY_ID": current,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.sessions.cli",
        "reencrypt",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_a_second_key_reads_every_text_after_rotation(svc: Svc, stack: StackEndpoints) -> None:
    program_id = await svc.program()
    group_id = await svc.group(program_id, ("M1", Role.MENTOR), ("e1", Role.MENTEE))
    mentor, mentee = svc.as_("M1"), svc.as_("e1")
    when = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    r = await svc.client.post(
        f"/relationships/{group_id}/sessions", json={"scheduled_for": when, "topic": "T"}, headers=mentor
    )
    session_id = r.json()["session_id"]
    await svc.client.post(
        f"/sessions/{session_id}/reschedule", json={"scheduled_for": when, "reason": "R"}, headers=mentor
    )
    note = (await svc.client.post(f"/sessions/{session_id}/notes", json={"text": "N"}, headers=mentee)).json()
    await svc.client.post(
        f"/relationships/{group_id}/goals",
        json={"category": "other", "wording": "G", "steps": ["S1", "S2"]},
        headers=mentee,
    )
    await svc.client.put(
        f"/relationships/{group_id}/expectations",
        json={"format": "video", "agenda_template": "A", "boundaries": "B"},
        headers=mentor,
    )

    key_2 = new_key("k2")
    out = await _reencrypt(stack, svc.schema, f"{KEY_1},{key_2}", "k2")
    assert "total: 8 re-encrypted" in out, out
    again = await _reencrypt(stack, svc.schema, f"{KEY_1},{key_2}", "k2")
    assert "total: 0 re-encrypted" in again

    for table, column in (("notes", "text"), ("goals", "wording"), ("goal_steps", "wording")):
        keys = await svc.pool.fetch(f"SELECT DISTINCT {column}_key AS k FROM {table}")
        assert [r["k"] for r in keys] == ["k2"]

    only_new = create(
        SessionsSettings(
            database_url=stack.admin_dsn,
            db_schema=svc.schema,
            kafka_bootstrap=stack.kafka_bootstrap,
            log_level="WARNING",
            consumer_offset_reset="latest",
            encryption_keys=SecretStr(key_2),
            encryption_key_id="k2",
        )
    )
    async with only_new.router.lifespan_context(only_new):
        transport = httpx.ASGITransport(app=only_new)
        async with httpx.AsyncClient(transport=transport, base_url="http://sessions") as client:
            notes = (await client.get(f"/sessions/{session_id}/notes", headers=mentee)).json()
            assert [(n["note_id"], n["text"]) for n in notes] == [(note["note_id"], "N")]
            goal = (await client.get(f"/relationships/{group_id}/goals", headers=mentee)).json()[0]
            assert (goal["wording"], [s["wording"] for s in goal["steps"]]) == ("G", ["S1", "S2"])
            expectations = (await client.get(f"/relationships/{group_id}/expectations", headers=mentee)).json()
            assert (expectations["agenda_template"], expectations["boundaries"]) == ("A", "B")
            session = (await client.get(f"/sessions/{session_id}", headers=mentor)).json()
            assert (session["topic"], session["reason"]) == ("T", "R")
