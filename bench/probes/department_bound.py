"""How many a facilitated run places when one department dominates, next to a plain construction.

    python -m bench.probes.department_bound [--mentees 1000] [--seed 16] [--share 0.8]

The pool is the probe's (``group_probe.one_department``: 80 % of people in one department, at most 2
of a department per group, groups of 3-8). The construction ignores the lottery and fit: mentors
outside the dominant department first, each opens groups while it has capacity, each group takes the
first eligible unplaced mentees (dominant department first) that keep every rule up to the group
minimum; then everyone left joins the first group with room that keeps every rule. Its groups go
through ``validate``, so the count it prints is a placement the product could have returned.

It also prints an upper bound computed here, independently of the product (``lp_bound``): a linear
programme over (mentor, department) counts whose eligibility comes from ``validate``'s own pair rules.
Each mentor opens ``y`` groups (at most its free groups), holds ``x[d]`` people of department ``d`` (at
most the eligible ones of ``d``, and the bound's room less its own department, per group), between the
group minimum and maximum per group; each department places at most its people. Every grouping the
product may return is a point of it, so its optimum bounds placed.

And a second, finer one (``class_bound``), the same counts by *class* of people and *type* of mentors:
people of one department with the same languages, time zone and level form a class, which may join a
mentor type (mentors of one department with the same languages, time zone and level, their free groups
summed) when one of its people is eligible for one of the type's mentors; a class places at most its
people, a type at most the people of a department eligible for one of its mentors, and the room and size
rows are the first LP's per type. A grouping's counts by class and type are a point of it (each member is
eligible for its mentor, so its class may join the mentor's type), so it bounds placed too; it sees that
the people of a small department eligible for several mentors are not there for each of them (1,000 pool:
474 by department, 471 by class). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter

from ortools.linear_solver import pywraplp

from bench.probes.group_probe import fac, group_ok, one_department
from contracts.events import GroupMember, ParticipantProfile
from contracts.policy import Role
from services.matching.domain import MatchingInput, MatchingResult, match, validate
from services.matching.domain.model import Group
from services.matching.domain.validate import _pair_problems


def construct(inp: MatchingInput, dominant: str) -> list[tuple[str, list[str]]]:
    pol = inp.policy
    partial = inp.model_copy(update={"policy": pol.model_copy(update={"group_members_min": 1})})
    by_id = {p.participant_id: p for p in inp.participants}
    mentors = sorted(
        (p for p in inp.participants if p.role is Role.MENTOR),
        key=lambda m: (m.department == dominant, m.participant_id),
    )
    waiting = sorted(
        (p.participant_id for p in inp.participants if p.role is not Role.MENTOR),
        key=lambda x: (by_id[x].department != dominant, x),
    )
    left = set(waiting)
    groups: list[tuple[str, list[str]]] = []
    for m in mentors:
        for _ in range((m.capacity or 0) - inp.existing_load.get(m.participant_id, 0)):
            group = _open(partial, by_id, m, [x for x in waiting if x in left], pol.group_members_min)
            if len(group) < pol.group_members_min:
                break
            groups.append((m.participant_id, group))
            left -= set(group)
    for x in [x for x in waiting if x in left]:
        for lead, group in groups:
            if len(group) < pol.group_members_max and group_ok(inp, by_id, [lead], [*group, x]):
                group.append(x)
                left.discard(x)
                break
    return groups


def _open(
    partial: MatchingInput,
    by_id: dict[str, ParticipantProfile],
    mentor: ParticipantProfile,
    waiting: list[str],
    size: int,
) -> list[str]:
    group: list[str] = []
    for x in waiting:
        if len(group) == size:
            break
        eligible = not _pair_problems(mentor, by_id[x], partial, mentor_pair=True)
        if eligible and group_ok(partial, by_id, [mentor.participant_id], [*group, x]):
            group.append(x)
    return group


def _eligible(inp: MatchingInput, m: ParticipantProfile, seekers: list[ParticipantProfile]) -> list[ParticipantProfile]:
    """The seekers ``validate``'s pair rules (and the exclude overrides) let mentor ``m`` lead."""
    excluded = {frozenset(o.participant_ids) for o in inp.overrides if o.kind.value == "exclude_pair"}
    return [
        x
        for x in seekers
        if frozenset((m.participant_id, x.participant_id)) not in excluded
        and not _pair_problems(m, x, inp, mentor_pair=True)
    ]


def lp_bound(inp: MatchingInput) -> int | None:
    """The LP's optimum (see the module doc), rounded down; None without a department bound."""
    pol = inp.policy
    limit = pol.max_same_department
    if limit is None:
        return None
    mentors = [p for p in inp.participants if p.role is Role.MENTOR]
    seekers = [p for p in inp.participants if p.role is not Role.MENTOR]
    people = Counter(p.department for p in seekers)
    solver = pywraplp.Solver.CreateSolver("GLOP")
    inf = solver.infinity()
    rows = {d: solver.Constraint(-inf, float(n)) for d, n in people.items()}
    objective = solver.Objective()
    for m in mentors:
        free = (m.capacity or 0) - inp.existing_load.get(m.participant_id, 0)
        eligible = Counter(x.department for x in _eligible(inp, m, seekers))
        if free <= 0 or not eligible:
            continue
        y = solver.NumVar(0.0, float(free), "")
        most, least = solver.Constraint(-inf, 0.0), solver.Constraint(-inf, 0.0)
        most.SetCoefficient(y, -float(pol.group_members_max))
        least.SetCoefficient(y, float(pol.group_members_min))
        for d, n in eligible.items():
            room = limit - (d == m.department)
            if room <= 0:
                continue
            x_d = solver.NumVar(0.0, float(n), "")
            per_group = solver.Constraint(-inf, 0.0)
            per_group.SetCoefficient(x_d, 1.0)
            per_group.SetCoefficient(y, -float(room))
            for row, coef in ((most, 1.0), (least, -1.0), (rows[d], 1.0)):
                row.SetCoefficient(x_d, coef)
            objective.SetCoefficient(x_d, 1.0)
    objective.SetMaximization()
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return None
    return math.floor(float(objective.Value()) + 1e-3)  # a float optimum a hair below an integer


def _profile(p: ParticipantProfile) -> tuple[str, tuple[str, ...], int, int]:
    return p.department, tuple(sorted(p.languages)), p.utc_offset_minutes, p.level


def class_bound(inp: MatchingInput) -> int | None:
    """The class LP's optimum (see the module doc), rounded down; None without a department bound."""
    pol = inp.policy
    limit = pol.max_same_department
    if limit is None:
        return None
    seekers = [p for p in inp.participants if p.role is not Role.MENTOR]
    size_of = Counter(_profile(x) for x in seekers)
    types: dict[tuple[str, tuple[str, ...], int, int], tuple[int, set[str]]] = {}
    for m in (p for p in inp.participants if p.role is Role.MENTOR):
        free = (m.capacity or 0) - inp.existing_load.get(m.participant_id, 0)
        if free > 0:
            groups, reached = types.get(_profile(m), (0, set()))
            types[_profile(m)] = (groups + free, reached | {x.participant_id for x in _eligible(inp, m, seekers)})
    by_id = {x.participant_id: x for x in seekers}
    solver = pywraplp.Solver.CreateSolver("GLOP")
    inf = solver.infinity()
    of_class = {c: solver.Constraint(-inf, float(n)) for c, n in size_of.items()}
    objective = solver.Objective()
    for key, (groups, reached) in types.items():
        y = solver.NumVar(0.0, float(groups), "")
        most, least = solver.Constraint(-inf, 0.0), solver.Constraint(-inf, 0.0)
        most.SetCoefficient(y, -float(pol.group_members_max))
        least.SetCoefficient(y, float(pol.group_members_min))
        classes = {_profile(by_id[x]) for x in reached}
        for d in {c[0] for c in classes}:
            room = limit - (d == key[0])
            if room <= 0:
                continue
            per_group = solver.Constraint(-inf, 0.0)
            per_group.SetCoefficient(y, -float(room))
            reach = solver.Constraint(-inf, float(sum(by_id[x].department == d for x in reached)))
            for c in sorted(c for c in classes if c[0] == d):
                x_c = solver.NumVar(0.0, float(size_of[c]), "")
                for row, coef in ((most, 1.0), (least, -1.0), (per_group, 1.0), (reach, 1.0), (of_class[c], 1.0)):
                    row.SetCoefficient(x_c, coef)
                objective.SetCoefficient(x_c, 1.0)
    objective.SetMaximization()
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return None
    return math.floor(float(objective.Value()) + 1e-3)


def as_result(template: MatchingResult, groups: list[tuple[str, list[str]]]) -> MatchingResult:
    built = [
        Group(
            group_id=f"c{k}",
            members=[GroupMember(participant_id=lead, role=Role.MENTOR)]
            + [GroupMember(participant_id=x, role=Role.MENTEE) for x in members],
            fit=0,
            explanation=[],
        )
        for k, (lead, members) in enumerate(groups)
    ]
    return template.model_copy(update={"groups": built, "unplaced": []})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mentees", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--share", type=float, default=0.8)
    args = parser.parse_args()
    inp = one_department(fac(args.mentees, args.seed, max_same_department=2), args.seed, args.share)
    started, cpu = time.perf_counter(), time.process_time()
    result = match(inp, 4242)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"product: placed {result.stats.placed_count} (bound {result.stats.placed_bound}) in {len(result.groups)} "
        f"groups, {wall:.1f} s wall, {cpu:.1f} s CPU (limit {inp.policy.time_limit_seconds:g} s), "
        f"violations {len(validate(inp, result))}"
    )
    started = time.perf_counter()
    groups = construct(inp, "Engineering")
    built = as_result(result, groups)
    print(
        f"construction: placed {sum(len(g) for _, g in groups)} in {len(groups)} groups "
        f"({time.perf_counter() - started:.1f} s), violations {len(validate(inp, built))}"
    )
    started = time.perf_counter()
    print(f"independent LP bound (department bound and group minimum): {lp_bound(inp)} "
          f"({time.perf_counter() - started:.1f} s)")  # fmt: skip
    started = time.perf_counter()
    print(f"independent class LP bound (who may join whom, by class and type): {class_bound(inp)} "
          f"({time.perf_counter() - started:.1f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
