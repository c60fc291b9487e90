"""Synthetic matching instances: an org tree and a program pool with about one mentor per four
mentees, capacities 2-6, departments, languages, time zones, levels, skills, goals and conflicts."""

from __future__ import annotations

import random

from bench.synthetic_org import GOALS, SKILLS, org_chart
from contracts.events import ParticipantProfile
from contracts.policy import Form, Role, default_policy
from services.matching.domain.model import MatchingInput


def instance(mentees: int, form: Form = Form.ONE_TO_ONE, seed: int = 1, conflicts: float = 0.01) -> MatchingInput:
    rng = random.Random(seed)
    mentors = max(1, mentees // 4)
    people = org_chart(int((mentees + mentors) * 1.3) + 10, seed=seed)
    managers = {p.employee_id: p.manager_id for p in people}
    seniors = [p for p in people[1:] if p.level >= 3]
    juniors = [p for p in people[1:] if p.level < 3]
    rng.shuffle(seniors)
    rng.shuffle(juniors)
    if form is Form.REVERSE:
        seniors, juniors = juniors, seniors
    chosen = [(p, Role.MENTOR) for p in seniors[:mentors]] + [(p, Role.MENTEE) for p in juniors[:mentees]]
    if len(chosen) < mentors + mentees:  # small trees: fill from whoever is left
        taken = {c.employee_id for c, _ in chosen}
        rest = [p for p in people[1:] if p.employee_id not in taken]
        chosen += [(p, Role.MENTEE) for p in rest[: mentees + mentors - len(chosen)]]
    ids = [p.employee_id for p, _ in chosen]
    profiles = []
    for p, role in chosen:
        chain: list[str] = []
        m = managers[p.employee_id]
        while m is not None and len(chain) < 20:
            chain.append(m)
            m = managers[m]
        peer = form is Form.PEER_GROUP
        profiles.append(
            ParticipantProfile(
                participant_id=p.employee_id,
                role=Role.PEER if peer else role,
                department=p.department,
                level=p.level,
                manager_id=p.manager_id,
                manager_chain=chain,
                location=p.location,
                utc_offset_minutes=p.utc_offset_minutes,
                languages=p.languages,
                skills_offered=rng.sample(SKILLS, rng.randint(1, 4)),
                skills_sought=rng.sample(SKILLS, rng.randint(1, 3)),
                goals=rng.sample(GOALS, rng.randint(1, 2)),
                capacity=rng.randint(2, 6) if role is Role.MENTOR and not peer else None,
                conflicts_with=[rng.choice(ids)] if rng.random() < conflicts else [],
                team_id=None,
            )
        )
    profiles = [p.model_copy(update={"conflicts_with": [c for c in p.conflicts_with if c != p.participant_id]})
                for p in profiles]  # fmt: skip
    return MatchingInput(
        program_id=f"bench-{form}-{mentees}", form=form, policy=default_policy(form), participants=profiles
    )
