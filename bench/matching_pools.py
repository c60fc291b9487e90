"""The benchmark's synthetic programs (``bench/matching_bench.py``), each one row's pool: facilitated
families (capacity, tight, one-dept), peer groups, teams and one-to-one pairs, with the issue's time
limit for their size."""

from __future__ import annotations

import random

from bench.synthetic_pool import instance
from contracts.events import ParticipantProfile
from contracts.policy import Form, Role
from services.matching.domain import MatchingInput


def facilitated(mentees: int, family: str, variant: int = 0) -> MatchingInput:
    """``capacity``: a mentor per four mentees, one group each, groups of 2-4. ``tight``: 0.3 mentors
    per mentee, one group each, groups of 2-6, a third share a language, time zones within 3 h, one
    member of a department per group, a declared conflict per eight people. ``variant`` draws another
    pool of the same family and size (0: the table's)."""
    tight = family == "tight"
    conflicts = 0.125 if tight else 0.01
    shift = 1_000_003 * variant
    base = instance(mentees, Form.FACILITATED_GROUP, seed=mentees + (1 if tight else 0) + shift, conflicts=conflicts)
    rng = random.Random(mentees + shift)
    people = [p for p in base.participants if p.role is not Role.MENTOR]
    mentors = [p for p in base.participants if p.role is Role.MENTOR]
    want = int(mentees * 0.3) if tight else mentees // 4
    if len(mentors) < want:  # promote the most senior mentees (reporting lines stay as they are)
        extra = sorted(people, key=lambda p: (-p.level, p.participant_id))[: want - len(mentors)]
        mentors += [p.model_copy(update={"role": Role.MENTOR}) for p in extra]
        taken = {p.participant_id for p in extra}
        people = [p for p in people if p.participant_id not in taken]
    out: list[ParticipantProfile] = []
    for p in [*mentors[:want], *people]:
        update: dict[str, object] = {"capacity": 1 if p.role is Role.MENTOR else None}
        if tight and len(p.languages) > 1 and rng.random() > 1 / 3:
            update["languages"] = [lang for lang in p.languages if lang != "en"]
        out.append(p.model_copy(update=update))
    changes: dict[str, object] = {
        "group_members_min": 2, "group_members_max": 6 if tight else 4,
        "time_limit_seconds": _limit(mentees),
    }  # fmt: skip
    if tight:
        changes.update({"max_timezone_distance_hours": 3.0, "max_same_department": 1})
    policy = base.policy.model_copy(update=changes)
    name = f"bench-fac-{family}-{mentees}"
    return base.model_copy(update={"participants": out, "policy": policy, "program_id": name})


def one_department(inp: MatchingInput, seed: int, share: float = 0.8) -> MatchingInput:
    """The pool with about ``share`` of its people moved into one department (Engineering)."""
    rng = random.Random(seed)
    people = [
        p.model_copy(update={"department": "Engineering"}) if rng.random() < share else p for p in inp.participants
    ]
    return inp.model_copy(update={"participants": people})


def facilitated_one_department(mentees: int) -> MatchingInput:
    """The outside-in probe's pool ``fac one-dept dept2 s16`` (``bench/probes/group_probe.py``): the default
    rules (groups of 3-8, capacities 2-6), at most 2 of a department per group, 80 % of the people in one
    department. The department bound and the group minimum bind together: a group holds at most two of
    that department (one beside a mentor of theirs) and needs people of the others to reach three."""
    inp = instance(mentees, Form.FACILITATED_GROUP, seed=16, conflicts=0.01)
    policy = inp.policy.model_copy(update={"max_same_department": 2, "time_limit_seconds": _limit(mentees)})
    return one_department(inp.model_copy(update={"policy": policy}), 16)


def facilitated_family(family: str, mentees: int) -> MatchingInput:
    """A facilitated pool by its family's name (``one-dept``, ``capacity`` or ``tight``), as the offline
    bound scripts take it on their command line."""
    return facilitated_one_department(mentees) if family == "one-dept" else facilitated(mentees, family)


def peers(size: int) -> MatchingInput:
    inp = instance(size * 4 // 5, Form.PEER_GROUP, seed=size)
    return inp.model_copy(update={"policy": inp.policy.model_copy(update={"time_limit_seconds": _limit(size)})})


def teams(count: int) -> MatchingInput:
    """``count`` teams of 3-7 members (by department and site), a mentor per two teams, 2 per team."""
    rng = random.Random(count)
    inp = instance(count * 5, Form.TEAM, seed=count)
    members = [p for p in inp.participants if p.role is not Role.MENTOR]
    mentors = [p for p in inp.participants if p.role is Role.MENTOR][: max(2, count // 2)]
    out: list[ParticipantProfile] = list(mentors)
    t = 0
    while members and t < count:
        size = rng.randint(3, 7)
        out += [p.model_copy(update={"team_id": f"T{t:05d}"}) for p in members[:size]]
        members = members[size:]
        t += 1
    policy = inp.policy.model_copy(update={"time_limit_seconds": _limit(len(out))})
    return inp.model_copy(update={"participants": out, "policy": policy, "program_id": f"bench-team-{count}"})


def pairs(mentees: int) -> MatchingInput:
    return instance(mentees, Form.ONE_TO_ONE, seed=mentees)


def _limit(people: int) -> float:
    """The issue's targets: 1,000 in 3 s, 5,000 in 10 s, 20,000 in 60 s, 50,000 in 120 s."""
    for size, limit in ((1_000, 3.0), (5_000, 10.0), (20_000, 60.0)):
        if people <= size:
            return limit
    return 120.0
