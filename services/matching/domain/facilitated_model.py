"""The facilitated-group CP-SAT model: its variables in one container, each rule one named function.

Groups are anchored on a lead mentor's numbered slots (a mentor with capacity c leads up to c groups,
opened in order to break symmetry); a mentee joins at most one slot of its candidate mentors; with
``mentors_per_group`` above 1, each open slot also takes co-facilitators. Each ``add_*`` function adds
one family of constraints and is tested alone (fix a few variables, expect FEASIBLE or INFEASIBLE), as
the CP-SAT primer does (``services/matching/tests/test_facilitated_model.py``).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from services.matching.domain.rules import BoolArray, IntArray

Slot = tuple[int, int]
"""(lead mentor position, slot number): one possible group."""


@dataclass
class FacilitatedModel:
    model: cp_model.CpModel = field(default_factory=cp_model.CpModel)
    slots: dict[int, list[cp_model.IntVar]] = field(default_factory=dict)
    """Lead mentor position -> its group slots, open in order."""
    co: dict[Slot, list[tuple[int, cp_model.IntVar]]] = field(default_factory=dict)
    """Slot -> (mentor position, "co-facilitates this group") for its co-facilitator options."""
    x: dict[tuple[str, int, int], cp_model.IntVar] = field(default_factory=dict)
    x_of: dict[str, dict[Slot, cp_model.IntVar]] = field(default_factory=lambda: defaultdict(dict))
    placed: dict[str, cp_model.IntVar] = field(default_factory=dict)
    members_of: dict[Slot, list[tuple[str, cp_model.IntVar]]] = field(default_factory=lambda: defaultdict(list))
    opened: dict[str, list[cp_model.IntVar]] = field(default_factory=dict)
    """Mentor id -> its groups in this run (led or co-facilitated), ordered: the load levels' terms."""
    fit_terms: list[cp_model.LinearExprT] = field(default_factory=list)
    hint: dict[cp_model.IntVar, int] = field(default_factory=dict)


def add_slots(fm: FacilitatedModel, demand: Mapping[int, int], free: IntArray, size_min: int,
              may_lead: Callable[[int], bool] = lambda _k: True) -> None:  # fmt: skip
    """Each mentor with candidate mentees gets min(free capacity, candidates // group minimum) slots;
    slot s+1 opens only after slot s (symmetry, and what makes the load terms linear)."""
    for k, n in sorted(demand.items()):
        count = min(int(free[k]), n // max(1, size_min)) if may_lead(k) else 0
        if count > 0:
            fm.slots[k] = [fm.model.new_bool_var(f"open_{k}_{s}") for s in range(count)]
            for s in range(count - 1):
                fm.model.add(fm.slots[k][s] >= fm.slots[k][s + 1])


def add_co_facilitators(
    fm: FacilitatedModel, options: Mapping[int, list[int]], count: int, apart: set[tuple[int, int]]
) -> None:
    """An open slot takes exactly ``count`` co-facilitators from its lead's options, no two apart."""
    for k, ys in fm.slots.items():
        for s, y in enumerate(ys):
            helpers = [(j, fm.model.new_bool_var(f"co_{k}_{s}_{j}")) for j in options[k]]
            fm.model.add(sum(v for _, v in helpers) == count * y)
            fm.co[(k, s)] = helpers
            for (j1, v1), (j2, v2) in itertools.combinations(helpers, 2):
                if (min(j1, j2), max(j1, j2)) in apart:
                    fm.model.add_bool_or([~v1, ~v2])


def add_assignment(fm: FacilitatedModel, candidates: Mapping[str, list[tuple[int, int]]]) -> None:
    """Each mentee sits in at most one open slot of its candidate mentors (``placed`` says whether);
    its fit with the lead counts when it does."""
    for pid, options in candidates.items():
        mine = []
        for k, f in options:
            for s, y in enumerate(fm.slots.get(k, [])):
                var = fm.model.new_bool_var(f"x_{pid}_{k}_{s}")
                fm.model.add_implication(var, y)
                fm.x[(pid, k, s)] = var
                fm.x_of[pid][(k, s)] = var
                fm.members_of[(k, s)].append((pid, var))
                mine.append(var)
                if f:
                    fm.fit_terms.append(var * f)
        fm.placed[pid] = fm.model.new_bool_var(f"placed_{pid}")
        fm.model.add(sum(mine) == fm.placed[pid])


def add_group_size(fm: FacilitatedModel, size_min: int, size_max: int) -> None:
    """An open slot has between the policy's minimum and maximum members; a closed one none."""
    for (k, s), members in fm.members_of.items():
        y = fm.slots[k][s]
        fm.model.add(sum(v for _, v in members) >= size_min * y)
        fm.model.add(sum(v for _, v in members) <= size_max * y)


def add_co_eligibility(
    fm: FacilitatedModel, eligible_of: Mapping[str, BoolArray], fit_of: Mapping[str, IntArray]
) -> None:
    """A co-facilitator must be eligible for every member of its group; its fit with each counts
    (``both`` is exactly member AND co-facilitator, so every solution carries its true fit)."""
    for (k, s), members in fm.members_of.items():
        for j, c in fm.co.get((k, s), []):
            for pid, v in members:
                if not eligible_of[pid][j]:
                    fm.model.add_bool_or([~v, ~c])
                elif fit_of[pid][j] > 0:
                    both = fm.model.new_bool_var(f"cofit_{pid}_{k}_{s}_{j}")
                    fm.model.add_implication(both, v)
                    fm.model.add_implication(both, c)
                    fm.model.add_bool_or([~v, ~c, both])
                    fm.fit_terms.append(both * int(fit_of[pid][j]))


def add_department_bound(
    fm: FacilitatedModel, limit: int, dept_of: Mapping[str, str], mentor_dept: Sequence[str]
) -> None:
    """At most ``limit`` members of one department per group, its mentors included."""
    for (k, s), members in fm.members_of.items():
        by_dept: dict[str, list[cp_model.IntVar]] = defaultdict(list)
        for pid, v in members:
            by_dept[dept_of[pid]].append(v)
        for j, c in fm.co.get((k, s), []):
            by_dept[mentor_dept[j]].append(c)
        for dept, vs in by_dept.items():
            room_left = limit - (1 if dept == mentor_dept[k] else 0)
            fm.model.add(sum(vs) <= max(0, room_left))


def add_apart(fm: FacilitatedModel, pairs: Iterable[tuple[str, str]]) -> None:
    """Two mentees apart (reporting line, declared conflict, exclude override) never share a slot."""
    for a, b in pairs:
        for slot, va in fm.x_of.get(a, {}).items():
            vb = fm.x_of.get(b, {}).get(slot)
            if vb is not None:
                fm.model.add_bool_or([~va, ~vb])


def add_locks(
    fm: FacilitatedModel, locks: Iterable[tuple[str, str]], mentor_pos: Mapping[str, int]
) -> tuple[int, list[str]]:
    """A mentor and a mentee: the mentee sits in one of that mentor's slots. Two mentees: in one group
    together, or neither placed. Returns how many locks were applied and a note per lock that could not
    be (not an eligible pair with room). Locks between two mentors are the caller's to note."""
    applied, notes = 0, []
    for a, b in locks:
        if (a in fm.placed) != (b in fm.placed):
            mentee, mentor = (a, b) if a in fm.placed else (b, a)
            k = mentor_pos.get(mentor, -1)
            options = [v for (kk, _s), v in fm.x_of[mentee].items() if kk == k]
            if options:
                fm.model.add(sum(options) == 1)
                applied += 1
            else:
                notes.append(f"lock {mentor}/{mentee} not applied: not an eligible pair with room")
        elif a in fm.placed and b in fm.placed:
            for slot in set(fm.x_of[a]) | set(fm.x_of[b]):
                va, vb = fm.x_of[a].get(slot), fm.x_of[b].get(slot)
                if va is not None and vb is not None:
                    fm.model.add(va == vb)
                elif va is not None:
                    fm.model.add(va == 0)
                elif vb is not None:
                    fm.model.add(vb == 0)
            fm.model.add(fm.placed[a] == fm.placed[b])
            applied += 1
    return applied, notes


def add_load_slots(fm: FacilitatedModel, free: IntArray, mentor_ids: Sequence[str], co_facilitated: bool) -> None:
    """Each mentor's groups in this run, led or co-facilitated, within its free capacity, as ordered
    slots (``opened``): the terms of the load levels (max load ratio, mentors used)."""
    taken: dict[int, list[cp_model.IntVar]] = defaultdict(list)
    for k, ys in fm.slots.items():
        taken[k] += ys
    for helpers in fm.co.values():
        for j, c in helpers:
            taken[j].append(c)
    for k, vs in sorted(taken.items()):
        if not co_facilitated:
            fm.opened[mentor_ids[k]] = vs  # lead slots are already ordered
            continue
        fm.model.add(sum(vs) <= int(free[k]))
        count = min(len(vs), int(free[k]))
        ys = [fm.model.new_bool_var(f"load_{k}_{s}") for s in range(count)]
        for s in range(count - 1):
            fm.model.add(ys[s] >= ys[s + 1])
        fm.model.add(sum(ys) == sum(vs))
        fm.opened[mentor_ids[k]] = ys


def hint_from_greedy(fm: FacilitatedModel, greedy: Iterable[tuple[list[int], list[str]]]) -> None:
    """The greedy's groups (mentor positions, lead first; members) as the first solve's hint: each
    lead's groups take its slots in order; everything else 0."""
    fm.hint = {v: 0 for v in fm.placed.values()}
    fm.hint.update({v: 0 for v in fm.x.values()})
    fm.hint.update({y: 0 for ys in fm.slots.values() for y in ys})
    fm.hint.update({c: 0 for helpers in fm.co.values() for _, c in helpers})
    next_slot: dict[int, int] = defaultdict(int)
    for ms, members in greedy:
        k = ms[0]
        s = next_slot[k]
        next_slot[k] += 1
        if s >= len(fm.slots.get(k, [])):
            continue
        fm.hint[fm.slots[k][s]] = 1
        for pid in members:
            if (pid, k, s) in fm.x:
                fm.hint[fm.x[(pid, k, s)]] = 1
                fm.hint[fm.placed[pid]] = 1
        for j, c in fm.co.get((k, s), []):
            fm.hint[c] = int(j in ms[1:])
