"""Small hand-made pools for rule tests."""

from __future__ import annotations

from typing import Any

from contracts.events import ParticipantProfile
from contracts.policy import Form, MatchingPolicy, Role, default_policy
from services.matching.domain.model import MatchingInput, Override


def person(pid: str, role: Role = Role.MENTEE, **kw: Any) -> ParticipantProfile:
    defaults: dict[str, Any] = {
        "department": "Finance",
        "level": 2 if role is not Role.MENTOR else 6,
        "languages": ["en"],
        "utc_offset_minutes": 60,
        "capacity": 2 if role is Role.MENTOR else None,
    }
    defaults.update(kw)
    return ParticipantProfile(participant_id=pid, role=role, **defaults)


def mentor(pid: str, **kw: Any) -> ParticipantProfile:
    return person(pid, Role.MENTOR, **kw)


def pool(
    people: list[ParticipantProfile],
    form: Form = Form.ONE_TO_ONE,
    overrides: list[Override] | None = None,
    load: dict[str, int] | None = None,
    **policy: Any,
) -> MatchingInput:
    base = default_policy(form).model_dump()
    base.update(policy)
    return MatchingInput(
        program_id="prg-test",
        form=form,
        policy=MatchingPolicy.model_validate(base),
        participants=people,
        overrides=overrides or [],
        existing_load=load or {},
    )
