"""Checks a solution against every hard rule without the solver: tests pass every output through it,
and an auditor can run it on a published run."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

from contracts.events import ParticipantProfile
from contracts.policy import Form, Role, SeniorityRule
from services.matching.domain.model import MatchingInput, MatchingResult, OverrideKind
from services.matching.domain.rules import in_reporting_line


def _apart_problems(
    a: ParticipantProfile, b: ParticipantProfile, inp: MatchingInput, *, reporting_lines: bool = True
) -> list[str]:
    """Rules that keep two people out of one group whatever their roles (co-facilitators included)."""
    pol = inp.policy
    out = []
    names = f"{a.participant_id}/{b.participant_id}"
    if reporting_lines and in_reporting_line(a, b, pol.reporting_line_depth):
        out.append(f"{names}: reporting line within depth {pol.reporting_line_depth}")
    if b.participant_id in a.conflicts_with or a.participant_id in b.conflicts_with:
        out.append(f"{names}: declared conflict")
    if frozenset((a.participant_id, b.participant_id)) in {
        frozenset(o.participant_ids) for o in inp.overrides if o.kind is OverrideKind.EXCLUDE_PAIR
    }:
        out.append(f"{names}: excluded by an override")
    return out


def _pair_problems(a: ParticipantProfile, b: ParticipantProfile, inp: MatchingInput, *, mentor_pair: bool) -> list[str]:
    pol = inp.policy
    out = _apart_problems(a, b, inp)
    names = f"{a.participant_id}/{b.participant_id}"
    if mentor_pair or inp.form is Form.PEER_GROUP:
        if pol.require_shared_language and not set(a.languages) & set(b.languages):
            out.append(f"{names}: no shared language")
        hours = pol.max_timezone_distance_hours
        if hours is not None and abs(a.utc_offset_minutes - b.utc_offset_minutes) > hours * 60:
            out.append(f"{names}: time zones too far apart")
    if mentor_pair:
        mentor, mentee = (a, b) if a.role is Role.MENTOR else (b, a)
        if pol.seniority_rule is SeniorityRule.MENTOR_ABOVE and mentor.level < mentee.level + pol.min_level_gap:
            out.append(f"{names}: mentor not senior enough")
        if pol.seniority_rule is SeniorityRule.MENTOR_BELOW and mentor.level + pol.min_level_gap > mentee.level:
            out.append(f"{names}: reverse mentor not junior enough")
    elif pol.seniority_rule is SeniorityRule.PEERS_WITHIN and abs(a.level - b.level) > pol.max_peer_level_spread:
        out.append(f"{names}: peer levels too far apart")
    return out


def _team_department_problems(
    mentors: list[str], members: list[str], by_id: dict[str, ParticipantProfile], inp: MatchingInput
) -> list[str]:
    """An intact team often fills its own department beyond any bound, so for teams the bound of one
    per department speaks of the mentors only: none may come from a department of the team's members.
    Larger bounds do not apply to teams (docs/matching.md)."""
    if inp.policy.max_same_department != 1:
        return []
    departments = {by_id[x].department for x in members}
    return [
        f"mentor {m} is from {by_id[m].department}, a department of the team (max 1 per department)"
        for m in mentors
        if by_id[m].department in departments
    ]


def validate(inp: MatchingInput, result: MatchingResult) -> list[str]:
    """Every violated rule, as a sentence; an empty list means the solution is valid."""
    pol = inp.policy
    by_id = {p.participant_id: p for p in inp.participants}
    problems: list[str] = []
    seen: Counter[str] = Counter()
    new_load: Counter[str] = Counter()
    for g in result.groups:
        mentors = [m.participant_id for m in g.members if m.role is Role.MENTOR]
        members = [m.participant_id for m in g.members if m.role is not Role.MENTOR]
        for pid in mentors + members:
            if pid not in by_id:
                problems.append(f"{g.group_id}: {pid} is not in the pool")
                return problems
        for pid in members:
            seen[pid] += 1
        for pid in mentors:
            new_load[pid] += 1
            if by_id[pid].role is not Role.MENTOR:
                problems.append(f"{g.group_id}: {pid} placed as mentor but enrolled as {by_id[pid].role}")
        if len(mentors) != pol.mentors_per_group:
            problems.append(f"{g.group_id}: {len(mentors)} mentors, policy wants {pol.mentors_per_group}")
        if inp.form is Form.TEAM:
            teams = {by_id[x].team_id for x in members}
            whole = {p.participant_id for p in inp.participants if p.team_id in teams and p.role is not Role.MENTOR}
            if len(teams) != 1 or set(members) != whole:
                problems.append(f"{g.group_id}: a team must be placed whole and alone")
        elif not pol.group_members_min <= len(members) <= pol.group_members_max:
            problems.append(
                f"{g.group_id}: {len(members)} members outside {pol.group_members_min}..{pol.group_members_max}"
            )
        if inp.form is Form.TEAM:
            problems += [f"{g.group_id}: {p}" for p in _team_department_problems(mentors, members, by_id, inp)]
        elif pol.max_same_department is not None:
            for dept, n in Counter(by_id[x].department for x in mentors + members).items():
                if n > pol.max_same_department:
                    problems.append(f"{g.group_id}: {n} members from {dept} (max {pol.max_same_department})")
        for m in mentors:
            for x in members:
                problems += [f"{g.group_id}: {p}" for p in _pair_problems(by_id[m], by_id[x], inp, mentor_pair=True)]
        for x, y in combinations(mentors, 2):
            problems += [f"{g.group_id}: {p}" for p in _apart_problems(by_id[x], by_id[y], inp)]
        for x, y in combinations(members, 2):
            if inp.form is Form.TEAM:  # an intact team's own reporting lines are expected; conflicts are not
                found = _apart_problems(by_id[x], by_id[y], inp, reporting_lines=False)
            else:
                found = _pair_problems(by_id[x], by_id[y], inp, mentor_pair=False)
            problems += [f"{g.group_id}: {p}" for p in found]
        if inp.form is Form.PEER_GROUP and pol.require_shared_language and members:
            spoken = set.intersection(*(set(by_id[x].languages) for x in members))
            if not spoken:  # a language for each pair is not enough: the group meets in one
                problems.append(f"{g.group_id}: no language all its members speak")
        if pol.max_timezone_distance_hours is not None and inp.form is not Form.PEER_GROUP and not mentors:
            problems.append(f"{g.group_id}: no mentor")
    problems += [f"{pid} placed in {n} groups" for pid, n in seen.items() if n > 1]
    for pid, n in new_load.items():
        capacity = by_id[pid].capacity or 0
        if inp.existing_load.get(pid, 0) + n > capacity:
            problems.append(f"mentor {pid}: load {inp.existing_load.get(pid, 0) + n} exceeds capacity {capacity}")
    placed = set(seen)
    for u in result.unplaced:
        if u.participant_id in placed:
            problems.append(f"{u.participant_id} is both placed and unplaced")
    return problems
